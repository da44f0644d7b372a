import { EventEmitter } from 'node:events'
import type { X509Certificate } from 'node:crypto'

import { WardError, checkObservation, withArticle } from '@ward/core'

import { auditEventTypes, type AuditEventInput } from './audit/index.js'
import type { OperationContext } from './context.js'
import {
  assignDevice,
  cancelOpenCommands,
  checkWipeConfirmation,
  createDevice,
  createDeviceModel,
  createEnrollmentToken,
  deliverCommands,
  findCommand,
  findDevice,
  findWipeCertificate,
  findDeviceModel,
  listDeviceModels,
  listDevices,
  listWipeCertificates,
  openCommands,
  queueWipe,
  recordWipeCertificate,
  redeemEnrollmentToken,
  setDeviceStatus,
  type Device,
  type DeviceCommand,
  type DeviceModel,
  type WipeCertificate,
} from './devices/index.js'
import {
  issueDeviceCertificate,
  listManufacturerAuthorities,
  registerManufacturerAuthority,
  reinstateDeviceCertificates,
  uploadManufacturerCrl,
  revokeDeviceCertificates,
  suspendDeviceCertificates,
  supersedeDeviceCertificates,
  verifyFactoryIdentity,
  certificateRequestDer,
  type FactoryIdentity,
  type ManufacturerAuthority,
  type ManufacturerCrlUpload,
} from './identity/index.js'
import { RefusedEntry, type EntryOutcome } from './ingest/batch.js'
import { rewrapDataKeys, rotateKeyEncryptionKey, type RewrapResult } from './keys/index.js'
import {
  createPatient,
  findPatient,
  findPatientByPseudonym,
  insertObservations,
  listPatients,
  maxObservationBytes,
  type FhirObservation,
  type Patient,
  type PatientIdentity,
} from './records/index.js'
import { CommitGroup, type Transaction } from './store/index.js'
import { findOrganization, findOrganizationById, type Organization } from './tenancy/index.js'
import type { Ward } from './ward.js'

/** What a device enrollment hands back to the device. */
export interface Enrollment {
  readonly deviceId: string
  /** PEM: the device certificate, then the issuing CA. */
  readonly certificateChain: string
  readonly notAfter: string
}

/** How a device proves it may enroll: a one-time token, or its factory identity. */
export type EnrollmentProof =
  | { readonly token: string }
  | { readonly factoryCertificate: string; readonly factorySignature: string }

/**
 * The device fleet's operations — device models, devices, patients, enrollment, suspension and
 * revocation, readings — each run as one transaction with its audit event in the
 * organization's log. The CLI calls these today and the access-controlled API will tomorrow,
 * so none of this lives in either.
 */
export class Fleet {
  readonly #ward: Ward
  /** Emits `trust-changed` (organization id, device id) when a device's certificates change. */
  readonly events = new EventEmitter<{ 'trust-changed': [string, string] }>()

  constructor(ward: Ward) {
    this.#ward = ward
  }

  /** Registers a device model in organization `slug`. */
  async createDeviceModel(
    context: OperationContext,
    slug: string,
    input: { name: string; manufacturer: string; policy: unknown },
  ): Promise<DeviceModel> {
    return this.#act(context, slug, async (tx, organization) => {
      const model = await createDeviceModel(tx, { organizationId: organization.id, ...input })
      return [model, configurationChange('device-model.create', 'C', 'DeviceDefinition', model.id)]
    })
  }

  /** The organization's device models. */
  async listDeviceModels(slug: string): Promise<DeviceModel[]> {
    const organization = await findOrganization(this.#ward.store.db, slug)
    return listDeviceModels(this.#ward.store.db, organization.id)
  }

  /** Registers a device of `model` (name or id) with `serial`. */
  async createDevice(
    context: OperationContext,
    slug: string,
    input: { serial: string; model: string },
  ): Promise<Device> {
    return this.#act(context, slug, async (tx, organization) => {
      const model = await findDeviceModel(tx, organization.id, input.model)
      const device = await createDevice(tx, {
        organizationId: organization.id,
        serial: input.serial,
        modelId: model.id,
      })
      return [device, configurationChange('device.create', 'C', 'Device', device.id)]
    })
  }

  /** The organization's devices. */
  async listDevices(slug: string): Promise<Device[]> {
    const organization = await findOrganization(this.#ward.store.db, slug)
    return listDevices(this.#ward.store.db, organization.id)
  }

  /**
   * Registers a patient: the identity is sealed in the vault under the patient's own data key,
   * and the patient is known everywhere else by the returned pseudonym.
   */
  async createPatient(
    context: OperationContext,
    slug: string,
    identity: PatientIdentity,
  ): Promise<Patient> {
    return this.#act(context, slug, async (tx, organization) => {
      const patient = await createPatient(tx, this.#ward.keyring, {
        organizationId: organization.id,
        identity,
      })
      return [
        patient,
        {
          type: auditEventTypes.patientRecord,
          operation: 'patient.create',
          action: 'C',
          entity: [{ type: 'Patient', what: patient.id, patient: patient.pseudonym }],
        },
      ]
    })
  }

  /** The organization's patients, by pseudonym only. */
  async listPatients(slug: string): Promise<Patient[]> {
    const organization = await findOrganization(this.#ward.store.db, slug)
    return listPatients(this.#ward.store.db, organization.id)
  }

  /** Assigns device `serial` to the patient with `pseudonym`, or ends its assignment. */
  async assignDevice(
    context: OperationContext,
    slug: string,
    serial: string,
    pseudonym: string | null,
  ): Promise<Device> {
    return this.#act(context, slug, async (tx, organization) => {
      const device = await findDevice(tx, organization.id, serial)
      const patient =
        pseudonym === null ? null : await findPatientByPseudonym(tx, organization.id, pseudonym)
      const assigned = await assignDevice(tx, device, patient?.id ?? null)
      return [
        assigned,
        {
          type: auditEventTypes.applicationActivity,
          operation: patient === null ? 'device.unassign' : 'device.assign',
          action: 'U',
          entity: [
            {
              type: 'Device',
              what: device.id,
              ...(patient === null ? {} : { patient: patient.pseudonym }),
            },
          ],
        },
      ]
    })
  }

  /**
   * Registers a manufacturer's CA certificate (PEM) so devices it provisioned in the factory can
   * enroll with their factory identity instead of a one-time token. The row is stored with its
   * authentication code under the organization's manufacturer-authority key.
   */
  async registerManufacturer(
    context: OperationContext,
    slug: string,
    input: { name: string; certificatePem: string },
  ): Promise<ManufacturerAuthority> {
    return this.#act(context, slug, async (tx, organization) => {
      const authority = await registerManufacturerAuthority(
        tx,
        await this.#manufacturerKey(tx, organization.id),
        { organizationId: organization.id, ...input },
      )
      return [
        authority,
        configurationChange('manufacturer-ca.register', 'C', 'ManufacturerCA', authority.id),
      ]
    })
  }

  /**
   * The organization's manufacturer CAs, each marked whether it passed its authentication
   * check; every one that did not is recorded as a security alert.
   */
  async listManufacturers(
    context: OperationContext,
    slug: string,
  ): Promise<ManufacturerAuthority[]> {
    return this.#checkManufacturers(context, slug)
  }

  /**
   * Stores manufacturer `name`'s CRL (PEM or DER) with the organization's CAs of that name
   * that signed it (see `uploadManufacturerCrl` for what is refused), audited as
   * `manufacturer-crl.upload` with the CRL number, its validity and how many certificates it
   * lists. A refused upload is audited too, as a failure naming the error code.
   */
  async uploadManufacturerCrl(
    context: OperationContext,
    slug: string,
    input: { name: string; crl: string | Uint8Array },
  ): Promise<ManufacturerCrlUpload> {
    await this.#checkManufacturers(context, slug)
    try {
      return await this.#act(context, slug, async (tx, organization) => {
        const upload = await uploadManufacturerCrl(
          tx,
          await this.#manufacturerKey(tx, organization.id),
          { organizationId: organization.id, name: input.name, crl: input.crl },
        )
        return [
          upload,
          {
            type: auditEventTypes.applicationActivity,
            operation: 'manufacturer-crl.upload',
            action: 'U',
            entity: upload.authorities.map((authority) => ({
              type: 'ManufacturerCA',
              what: authority.id,
              detail: {
                crlNumber: upload.number,
                thisUpdate: upload.thisUpdate,
                nextUpdate: upload.nextUpdate,
                revokedCertificates: upload.entries,
                stale: upload.stale,
              },
            })),
          },
        ]
      })
    } catch (error) {
      if (!(error instanceof WardError) || error.code === 'ERR_ORGANIZATION_NOT_FOUND') throw error
      if (error.code === 'ERR_STORE_UNAVAILABLE') throw error
      await this.#act(context, slug, async () => [
        undefined,
        {
          type:
            error.code === 'ERR_CRL_ROLLBACK' || error.code === 'ERR_SIGNATURE_INVALID'
              ? auditEventTypes.securityAlert
              : auditEventTypes.applicationActivity,
          operation: 'manufacturer-crl.upload',
          action: 'U',
          outcome: '4',
          outcomeDescription: error.code,
          entity: [],
        },
      ])
      throw error
    }
  }

  /**
   * Checks every manufacturer CA row of organization `slug` against its authentication code
   * and records, in a transaction of its own, a security alert for each that fails: those rows
   * were written or changed by somebody without the master key. Nothing trusts them anyway
   * (each use checks again); this makes sure the attempt is on record even when the operation
   * that came across it then fails.
   */
  async #checkManufacturers(
    context: OperationContext,
    slug: string,
  ): Promise<ManufacturerAuthority[]> {
    const organization = await findOrganization(this.#ward.store.db, slug)
    return this.#ward.store.transaction(async (tx) => {
      const key = await this.#manufacturerKey(tx, organization.id)
      const authorities = await listManufacturerAuthorities(tx, key, organization.id)
      for (const authority of authorities.filter((each) => !each.authentic)) {
        await this.#ward.audit(
          tx,
          organization.slug,
          { ...context, organizationId: organization.id },
          {
            type: auditEventTypes.securityAlert,
            operation: 'manufacturer-ca.integrity',
            action: 'R',
            outcome: '8',
            outcomeDescription:
              'manufacturer CA row fails its authentication check: written or changed outside Ward; not trusted',
            // The id is as the database holds it, and may be anything.
            entity: [{ type: 'ManufacturerCA', what: authority.id.slice(0, 200) || '(empty)' }],
          },
        )
      }
      return authorities
    })
  }

  #manufacturerKey(tx: Transaction, organizationId: string): Promise<Uint8Array> {
    return this.#ward.authenticationKeys.key(tx, organizationId, 'manufacturer-authority')
  }

  /** Issues a one-time enrollment token for device `serial`; shown once, stored hashed. */
  async issueEnrollmentToken(
    context: OperationContext,
    slug: string,
    serial: string,
  ): Promise<{ token: string; expiresAt: string }> {
    return this.#act(context, slug, async (tx, organization) => {
      const device = await findDevice(tx, organization.id, serial)
      const issued = await createEnrollmentToken(
        tx,
        await this.#ward.authenticationKeys.key(tx, organization.id, 'enrollment-token'),
        device,
        this.#ward.config.device.enrollmentTokenTtlSeconds,
      )
      return [issued, configurationChange('enrollment-token.create', 'C', 'Device', device.id)]
    })
  }

  /**
   * Enrolls a device: checks its proof (a one-time token bound to its serial, or a signature
   * by a factory identity under a registered manufacturer CA), issues a certificate for the key
   * in its CSR and activates it. Every refusal gives the same answer, and is recorded as a
   * security alert in the organization's log, naming the device when the serial is one of the
   * organization's (an unknown serial is not recorded: it is whatever the caller typed). The
   * exceptions are said only to a caller whose factory identity verified, who holds its key:
   * a factory certificate its manufacturer's CRL lists, and, under
   * `WARD_DEVICE_MANUFACTURER_CRL=required`, a manufacturer without a current CRL. Their alerts
   * name the reason.
   */
  async enroll(
    context: OperationContext,
    slug: string,
    input: { serial: string; csrPem: string } & EnrollmentProof,
  ): Promise<Enrollment> {
    // Manufacturer rows that fail their check are recorded before they are left out below.
    if (!('token' in input)) await this.#checkManufacturers(context, slug).catch(() => undefined)
    try {
      const enrollment = await this.#enroll(context, slug, input)
      // Certificates it superseded lose their open connections.
      const organization = await findOrganization(this.#ward.store.db, slug)
      this.events.emit('trust-changed', organization.id, enrollment.deviceId)
      return enrollment
    } catch (error) {
      const refusal =
        error instanceof WardError &&
        error.code !== 'ERR_STORE_UNAVAILABLE' &&
        error.code !== 'ERR_ORGANIZATION_NOT_FOUND'
      if (refusal) {
        await this.#act(context, slug, async (tx, organization) => {
          const device = await findDevice(tx, organization.id, input.serial).catch(() => undefined)
          const reason = error instanceof FactoryRefusal ? error.reason : undefined
          const event: AuditEventInput = {
            type: auditEventTypes.securityAlert,
            operation: 'device.enroll',
            action: 'C',
            outcome: '4',
            ...(reason === undefined ? {} : { outcomeDescription: reason }),
            entity:
              device === undefined
                ? []
                : [
                    {
                      type: 'Device',
                      what: device.id,
                      ...(error instanceof FactoryRefusal ? { detail: error.detail } : {}),
                    },
                  ],
          }
          return [undefined, event]
        })
      }
      throw error
    }
  }

  async #enroll(
    context: OperationContext,
    slug: string,
    input: { serial: string; csrPem: string } & EnrollmentProof,
  ): Promise<Enrollment> {
    return this.#act(context, slug, async (tx, organization) => {
      let device: Device
      let factory: FactoryIdentity | undefined
      if ('token' in input) {
        device = await redeemEnrollmentToken(
          tx,
          await this.#ward.authenticationKeys.key(tx, organization.id, 'enrollment-token'),
          { organizationId: organization.id, token: input.token, serial: input.serial },
        )
      } else {
        factory = await this.#verifyFactory(tx, organization.id, input)
        device = await findDevice(tx, organization.id, input.serial).catch(() => {
          throw enrollmentRefused()
        })
      }
      if (device.status !== 'provisioned' && device.status !== 'active') throw enrollmentRefused()

      const issued = await issueDeviceCertificate(tx, this.#ward.keys, {
        organizationId: organization.id,
        deviceId: device.id,
        serial: device.serial,
        csrPem: input.csrPem,
        validityDays: this.#ward.config.device.certificateValidityDays,
      })
      if (device.status === 'provisioned') await setDeviceStatus(tx, device, 'active')
      const superseded = await supersedeDeviceCertificates(tx, organization.id, device.id, [
        issued.serialNumber,
      ])
      const enrollment: Enrollment = {
        deviceId: device.id,
        certificateChain: issued.chainPem,
        notAfter: issued.notAfter,
      }
      return [
        enrollment,
        {
          type: auditEventTypes.applicationActivity,
          operation: 'device.enroll',
          action: 'C',
          entity: [
            {
              type: 'Device',
              what: device.id,
              detail: {
                certificate: issued.serialNumber,
                proof: factory === undefined ? 'enrollment-token' : 'factory-identity',
                superseded: superseded.length,
                ...(factory === undefined ? {} : factoryDetail(factory)),
              },
            },
          ],
        },
      ]
    })
  }

  /**
   * Verifies a factory identity for enrollment as device `input.serial`, and applies the
   * manufacturer CRL setting: under `required`, a manufacturer CA without a CRL, or whose CRL's
   * nextUpdate has passed, refuses. Any other failure is the one enrollment refusal.
   */
  async #verifyFactory(
    tx: Transaction,
    organizationId: string,
    input: { serial: string; csrPem: string; factoryCertificate: string; factorySignature: string },
  ): Promise<FactoryIdentity> {
    const key = await this.#manufacturerKey(tx, organizationId)
    let factory: FactoryIdentity
    try {
      factory = await verifyFactoryIdentity(tx, key, {
        organizationId,
        factoryCertificatePem: input.factoryCertificate,
        signatureBase64: input.factorySignature,
        signedBytes: certificateRequestDer(input.csrPem),
      })
    } catch (error) {
      if (error instanceof WardError && error.code === 'ERR_CERTIFICATE_REVOKED') {
        const details = error.details as { serialNumber?: string; crlNumber?: string }
        throw new FactoryRefusal(
          'enrollment refused for this device: its factory certificate is revoked by its manufacturer',
          'factory-certificate-revoked',
          {
            proof: 'factory-identity',
            factoryCertificate: String(details.serialNumber),
            crlNumber: String(details.crlNumber),
          },
        )
      }
      throw enrollmentRefused()
    }
    if (factory.deviceSerial !== input.serial) throw enrollmentRefused()
    const { status } = factory.revocation
    if (status !== 'current' && this.#ward.config.device.manufacturerCrl === 'required') {
      throw new FactoryRefusal(
        status === 'none'
          ? 'enrollment refused for this device: Ward holds no CRL of its manufacturer, and this Ward requires a current one'
          : "enrollment refused for this device: its manufacturer's CRL is past its nextUpdate, and this Ward requires a current one",
        status === 'none' ? 'manufacturer-crl-missing' : 'manufacturer-crl-stale',
        { proof: 'factory-identity', ...factoryDetail(factory) },
      )
    }
    return factory
  }

  /**
   * Issues a renewed certificate to an enrolled device for the key in `csrPem`; the current
   * certificate stays valid until it expires, so the device switches when it is ready.
   */
  async renew(
    context: OperationContext,
    organizationId: string,
    deviceId: string,
    csrPem: string,
    presentedSerialNumber: string,
  ): Promise<Enrollment> {
    const renewal = await this.#actIn(context, organizationId, async (tx) => {
      const device = await findDevice(tx, organizationId, deviceId)
      if (device.status !== 'active') {
        throw new WardError('ERR_DEVICE_STATE', `${withArticle(device.status)} device cannot renew`)
      }
      const issued = await issueDeviceCertificate(tx, this.#ward.keys, {
        organizationId,
        deviceId,
        serial: device.serial,
        csrPem,
        validityDays: this.#ward.config.device.certificateValidityDays,
      })
      const superseded = await supersedeDeviceCertificates(tx, organizationId, deviceId, [
        presentedSerialNumber,
        issued.serialNumber,
      ])
      const renewal: Enrollment = {
        deviceId,
        certificateChain: issued.chainPem,
        notAfter: issued.notAfter,
      }
      return [
        renewal,
        {
          type: auditEventTypes.applicationActivity,
          operation: 'device.renew',
          action: 'C',
          entity: [
            {
              type: 'Device',
              what: deviceId,
              detail: { certificate: issued.serialNumber, superseded: superseded.length },
            },
          ],
        },
      ]
    })
    this.events.emit('trust-changed', organizationId, deviceId)
    return renewal
  }

  /** Suspends a device for incident containment: refused at once, open connections closed. */
  async suspendDevice(context: OperationContext, slug: string, serial: string): Promise<Device> {
    return this.#changeTrust(context, slug, serial, 'device.suspend', async (tx, device) => {
      await suspendDeviceCertificates(tx, device.organizationId, device.id)
      return setDeviceStatus(tx, device, 'suspended')
    })
  }

  /** Lifts a suspension. */
  async reinstateDevice(context: OperationContext, slug: string, serial: string): Promise<Device> {
    return this.#changeTrust(context, slug, serial, 'device.reinstate', async (tx, device) => {
      const reinstated = await reinstateDeviceCertificates(tx, device.organizationId, device.id)
      // A device suspended before it ever enrolled goes back to waiting for enrollment.
      return setDeviceStatus(tx, device, reinstated.length > 0 ? 'active' : 'provisioned')
    })
  }

  /** Revokes every certificate of a device; it must enroll again to connect. */
  async revokeDevice(context: OperationContext, slug: string, serial: string): Promise<Device> {
    return this.#changeTrust(context, slug, serial, 'device.revoke', async (tx, device) => {
      await revokeDeviceCertificates(tx, device.organizationId, device.id, 'keyCompromise')
      return device
    })
  }

  /**
   * Queues a remote wipe for device `serial`. The device receives it on its next connection to
   * the device endpoint, erases its queued readings, keys and certificate, and confirms; Ward
   * then records a wipe certificate and refuses the device. Asking again while a wipe is open
   * returns the open one.
   */
  async wipeDevice(
    context: OperationContext,
    slug: string,
    serial: string,
  ): Promise<DeviceCommand> {
    return this.#act(context, slug, async (tx, organization) => {
      const device = await findDevice(tx, organization.id, serial)
      const { command, created } = await queueWipe(tx, device)
      return [
        command,
        {
          type: auditEventTypes.applicationActivity,
          operation: 'device.wipe.request',
          action: 'E',
          entity: [
            { type: 'Device', what: device.id, detail: { command: command.id, queued: created } },
          ],
        },
      ]
    })
  }

  /**
   * Decommissions device `serial` for good: every certificate revoked (cessation of operation,
   * refused at the handshake from the next CRL on, open connections cut), open commands
   * cancelled, the patient assignment ended and the status `decommissioned`. The audit event
   * names the patient whose assignment ended.
   */
  async decommissionDevice(
    context: OperationContext,
    slug: string,
    serial: string,
  ): Promise<Device> {
    const device = await this.#act(context, slug, async (tx, organization) => {
      const device = await findDevice(tx, organization.id, serial)
      const patient =
        device.patientId === null ? null : await findPatient(tx, organization.id, device.patientId)
      const revoked = await revokeDeviceCertificates(
        tx,
        organization.id,
        device.id,
        'cessationOfOperation',
      )
      const cancelled = await cancelOpenCommands(tx, organization.id, device.id)
      const decommissioned = await setDeviceStatus(tx, device, 'decommissioned')
      return [
        decommissioned,
        {
          type: auditEventTypes.applicationActivity,
          operation: 'device.decommission',
          action: 'U',
          entity: [
            {
              type: 'Device',
              what: device.id,
              ...(patient === null ? {} : { patient: patient.pseudonym }),
              detail: {
                certificatesRevoked: revoked.length,
                commandsCancelled: cancelled,
                assignmentEnded: patient !== null,
              },
            },
          ],
        },
      ]
    })
    this.events.emit('trust-changed', device.organizationId, device.id)
    return device
  }

  /** The wipe certificates recorded for device `serial`, oldest first. */
  async wipeCertificates(slug: string, serial: string): Promise<WipeCertificate[]> {
    const organization = await findOrganization(this.#ward.store.db, slug)
    const device = await findDevice(this.#ward.store.db, organization.id, serial)
    return listWipeCertificates(this.#ward.store.db, organization.id, device.id)
  }

  /**
   * The device's open lifecycle commands, as the device endpoint hands them over. Each command
   * is handed over again until the device confirms it; its first delivery is audited.
   */
  async deliverCommands(
    context: OperationContext,
    organizationId: string,
    deviceId: string,
  ): Promise<DeviceCommand[]> {
    // Devices ask on every cycle and almost always hear of nothing: that answer takes no lock.
    if ((await openCommands(this.#ward.store.db, organizationId, deviceId)).length === 0) return []
    const slug = await this.#slugOf(organizationId)
    return this.#ward.store.transaction(async (tx) => {
      const { commands, firstDelivery } = await deliverCommands(tx, organizationId, deviceId)
      for (const command of firstDelivery) {
        await this.#ward.audit(
          tx,
          slug,
          { ...context, organizationId },
          {
            type: auditEventTypes.applicationActivity,
            operation: `device.${command.kind}.deliver`,
            action: 'E',
            entity: [{ type: 'Device', what: deviceId, detail: { command: command.id } }],
          },
        )
      }
      return commands
    })
  }

  /**
   * Takes a device's confirmation that it carried out wipe command `commandId`: checks the
   * report it signed with the key of `certificate` (the certificate of its connection), records
   * the wipe certificate, revokes the device's certificates and marks it `wiped`, all with one
   * audit event. Confirming again returns the first certificate and changes nothing. The caller
   * announces the change of trust (`events`) once its answer is on its way, so the device hears
   * that Ward recorded the wipe before its connection is cut.
   */
  async confirmWipe(
    context: OperationContext,
    organizationId: string,
    deviceId: string,
    commandId: string,
    body: unknown,
    certificate: X509Certificate,
  ): Promise<{ certificate: WipeCertificate; created: boolean }> {
    const slug = await this.#slugOf(organizationId)
    const command = await findCommand(this.#ward.store.db, organizationId, deviceId, commandId)
    let confirmation: ReturnType<typeof checkWipeConfirmation>
    try {
      // A repeated confirmation is held to the same checks, then answered as the first was.
      confirmation = checkWipeConfirmation(body, {
        commandId,
        deviceId,
        certificate,
        issuedAt: command.issuedAt,
      })
    } catch (error) {
      if (!(error instanceof WardError)) throw error
      // A confirmation that does not hold is a security event in its own right.
      await this.#ward.store.transaction((tx) =>
        this.#ward.audit(
          tx,
          slug,
          { ...context, organizationId },
          {
            type: auditEventTypes.securityAlert,
            operation: 'device.wipe.confirm',
            action: 'D',
            outcome: '8',
            outcomeDescription: error.code,
            entity: [{ type: 'Device', what: deviceId, detail: { command: command.id } }],
          },
        ),
      )
      throw error
    }
    return this.#ward.store.transaction(async (tx) => {
      const command = await findCommand(tx, organizationId, deviceId, commandId)
      if (command.status === 'completed') {
        const existing = await findWipeCertificate(tx, organizationId, commandId)
        if (existing !== undefined) return { certificate: existing, created: false }
      }
      const recorded = await recordWipeCertificate(tx, command, {
        ...confirmation,
        certificatePem: certificate.toString(),
      })
      const revoked = await revokeDeviceCertificates(
        tx,
        organizationId,
        deviceId,
        'cessationOfOperation',
      )
      await setDeviceStatus(tx, await findDevice(tx, organizationId, deviceId), 'wiped')
      await this.#ward.audit(
        tx,
        slug,
        { ...context, organizationId },
        {
          type: auditEventTypes.applicationActivity,
          operation: 'device.wipe.confirm',
          action: 'D',
          entity: [
            {
              type: 'Device',
              what: deviceId,
              detail: {
                command: command.id,
                wipeCertificate: recorded.certificate.id,
                queuedReadings: recorded.certificate.queuedReadings,
                rejectedReadings: recorded.certificate.rejectedReadings,
                keysErased: recorded.certificate.keyIds.length,
                certificatesErased: recorded.certificate.certificateSerials.length,
                certificatesRevoked: revoked.length,
              },
            },
          ],
        },
      )
      return recorded
    })
  }

  /**
   * Adds a key-encryption-key version for the organization and rewraps every data key under it
   * in the background, in small transactions, while reads and writes go on. Resolves when the
   * new version is active; `rewrapped` resolves when no data key needs an old version.
   */
  async rotateKeys(
    context: OperationContext,
    slug: string,
  ): Promise<{ version: number; rewrapped: Promise<RewrapResult> }> {
    const version = await this.#act(context, slug, async (tx, organization) => {
      const record = await rotateKeyEncryptionKey(tx, this.#ward.keys, organization.id)
      return [
        record.version,
        {
          type: auditEventTypes.applicationActivity,
          operation: 'key.rotate',
          action: 'U',
          entity: [
            {
              type: 'key-encryption-key',
              what: organization.id,
              detail: { version: record.version },
            },
          ],
        },
      ]
    })
    const organization = await findOrganization(this.#ward.store.db, slug)
    const rewrapped = rewrapDataKeys(this.#ward.store, this.#ward.keys, organization.id, {
      batchSize: 200,
    })
    return { version, rewrapped }
  }

  /**
   * Stores a device's readings: each is checked against its device model and the device's
   * assignment, accepted ones are sealed under the patient's data key and committed together
   * with one audit event for the patient, and the answer says per reading what happened. It
   * answers only once that commit is on disk. On SQLite, batches arriving together share one
   * commit, each in a savepoint of its own (see `CommitGroup`).
   */
  async ingest(
    context: OperationContext,
    organizationId: string,
    deviceId: string,
    readings: readonly unknown[],
  ): Promise<EntryOutcome[]> {
    const db = this.#ward.store.db
    const device = await findDevice(db, organizationId, deviceId)
    if (device.status !== 'active') {
      throw new WardError(
        'ERR_DEVICE_STATE',
        `${withArticle(device.status)} device may not send readings`,
      )
    }
    const model = await this.#model(organizationId, device.modelId)
    if (device.patientId === null) {
      return readings.map(() => ({
        status: 'rejected',
        reason: 'the device is not assigned to a patient',
      }))
    }
    const patient = await findPatient(db, organizationId, device.patientId)
    const reference = `Patient/${patient.pseudonym}`

    const outcomes: (EntryOutcome | undefined)[] = []
    const accepted: {
      position: number
      messageId: string
      row: Parameters<typeof insertObservations>[3][number]
    }[] = []
    readings.forEach((reading, position) => {
      if (reading instanceof RefusedEntry) {
        outcomes[position] = { status: 'rejected', reason: reading.reason }
        return
      }
      try {
        const checked = checkObservation(reading, model.policy, reference)
        const resource = { ...(reading as FhirObservation), subject: { reference } }
        const resourceJson = JSON.stringify(resource)
        if (Buffer.byteLength(resourceJson) > maxObservationBytes) {
          throw new WardError(
            'ERR_PAYLOAD_TOO_LARGE',
            `a reading may be at most ${maxObservationBytes} bytes as JSON`,
          )
        }
        accepted.push({
          position,
          messageId: checked.messageId,
          row: {
            organizationId,
            patientId: patient.id,
            deviceId,
            messageId: checked.messageId,
            code: checked.code,
            effectiveAt: checked.effectiveAt,
            resource,
            resourceJson,
          },
        })
        outcomes[position] = undefined
      } catch (error) {
        if (!(error instanceof WardError)) throw error
        outcomes[position] = { status: 'rejected', reason: error.message }
      }
    })

    if (accepted.length > 0) {
      // Looked up before the transaction: on SQLite a query outside it would wait for it.
      const slug = await this.#slugOf(organizationId)
      await this.#ingestTransaction(async (tx) => {
        const stored = await insertObservations(
          tx,
          this.#ward.store.dialect,
          this.#ward.keyring,
          accepted.map((entry) => entry.row),
        )
        let created = 0
        let conflicts = 0
        stored.forEach((result, index) => {
          const entry = accepted[index] as (typeof accepted)[number]
          const { messageId } = entry
          if (result.conflicting) {
            conflicts += 1
            outcomes[entry.position] = {
              status: 'conflict',
              messageId,
              reason:
                'this message id already names a different reading from this device, which ' +
                'is kept; a message id must name one reading, so send a new reading under a new id',
            }
            return
          }
          outcomes[entry.position] = { status: result.created ? 'created' : 'duplicate', messageId }
          if (result.created) created += 1
        })
        await this.#ward.audit(tx, slug, context, {
          type: auditEventTypes.patientRecord,
          operation: 'observation.create',
          action: 'C',
          entity: [
            {
              type: 'Patient',
              what: patient.id,
              patient: patient.pseudonym,
              detail: {
                device: deviceId,
                created,
                duplicates: stored.length - created - conflicts,
                conflicts,
                rejected: readings.length - stored.length,
              },
            },
          ],
        })
      })
    }
    return outcomes as EntryOutcome[]
  }

  readonly #models = new Map<string, DeviceModel>()
  readonly #slugs = new Map<string, string>()
  #ingestCommitGroup: CommitGroup | undefined

  /**
   * The transaction a batch of readings is stored in. On SQLite one connection serializes
   * every transaction anyway, and each commit waits for the disk with the event loop blocked,
   * so batches arriving together share one commit. PostgreSQL runs transactions side by side
   * on its pool, so there each batch keeps a transaction of its own.
   */
  #ingestTransaction<T>(work: (tx: Transaction) => Promise<T>): Promise<T> {
    const store = this.#ward.store
    if (store.dialect !== 'sqlite') return store.transaction(work)
    this.#ingestCommitGroup ??= new CommitGroup(store)
    return this.#ingestCommitGroup.run(work)
  }

  async #model(organizationId: string, modelId: string): Promise<DeviceModel> {
    // Device models do not change once created; the cache only saves a query per batch.
    const cached = this.#models.get(modelId)
    if (cached !== undefined) return cached
    const model = await findDeviceModel(this.#ward.store.db, organizationId, modelId)
    this.#models.set(modelId, model)
    return model
  }

  async #slugOf(organizationId: string): Promise<string> {
    const known = this.#slugs.get(organizationId)
    if (known !== undefined) return known
    const { slug } = await findOrganizationById(this.#ward.store.db, organizationId)
    this.#slugs.set(organizationId, slug)
    return slug
  }

  async #changeTrust(
    context: OperationContext,
    slug: string,
    serial: string,
    operation: string,
    change: (tx: Transaction, device: Device) => Promise<Device>,
  ): Promise<Device> {
    const device = await this.#act(context, slug, async (tx, organization) => {
      const device = await change(tx, await findDevice(tx, organization.id, serial))
      return [device, configurationChange(operation, 'U', 'Device', device.id)]
    })
    this.events.emit('trust-changed', device.organizationId, device.id)
    return device
  }

  /** Runs `work` for organization `slug` in one transaction with the audit event it returns. */
  async #act<T>(
    context: OperationContext,
    slug: string,
    work: (tx: Transaction, organization: Organization) => Promise<[T, AuditEventInput]>,
  ): Promise<T> {
    return this.#ward.store.transaction(async (tx) => {
      const organization = await findOrganization(tx, slug)
      const [result, event] = await work(tx, organization)
      await this.#ward.audit(
        tx,
        organization.slug,
        { ...context, organizationId: organization.id },
        event,
      )
      return result
    })
  }

  async #actIn<T>(
    context: OperationContext,
    organizationId: string,
    work: (tx: Transaction) => Promise<[T, AuditEventInput]>,
  ): Promise<T> {
    const slug = await this.#slugOf(organizationId)
    return this.#ward.store.transaction(async (tx) => {
      const [result, event] = await work(tx)
      await this.#ward.audit(tx, slug, { ...context, organizationId }, event)
      return result
    })
  }
}

function configurationChange(
  operation: string,
  action: AuditEventInput['action'],
  type: string,
  what: string,
): AuditEventInput {
  return { type: auditEventTypes.applicationActivity, operation, action, entity: [{ type, what }] }
}

/**
 * An enrollment refused for a reason the caller may hear, because it proved it holds the
 * factory key: the enrollment route answers with this message rather than the one refusal
 * every other failure gets. `reason` goes into the refusal's audit event, `detail` onto its
 * device entity.
 */
export class FactoryRefusal extends WardError {
  readonly reason: string
  readonly detail: Record<string, string | number | boolean>

  constructor(message: string, reason: string, detail: Record<string, string | number | boolean>) {
    super('ERR_ENROLLMENT_REFUSED', message)
    this.reason = reason
    this.detail = detail
  }
}

/**
 * What an enrollment's audit event says of the factory identity: the manufacturer CA, the
 * certificate checked against its CRL, and whether that CRL was current, stale (its nextUpdate
 * passed: the warning the default setting records) or absent.
 */
function factoryDetail(factory: FactoryIdentity): Record<string, string> {
  const { revocation } = factory
  return {
    manufacturerCa: factory.manufacturerAuthorityId,
    factoryCertificate: revocation.certificateSerial,
    manufacturerCrl: revocation.status,
    ...(revocation.crlNumber === undefined ? {} : { crlNumber: revocation.crlNumber }),
    ...(revocation.nextUpdate === undefined ? {} : { crlNextUpdate: revocation.nextUpdate }),
  }
}

function enrollmentRefused(): WardError {
  return new WardError('ERR_ENROLLMENT_REFUSED', 'enrollment refused for this device')
}
