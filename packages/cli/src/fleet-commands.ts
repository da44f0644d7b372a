import { readFileSync, statSync } from 'node:fs'

import { WardError } from '@ward/core'
import {
  standardDeviceModels,
  type OperationContext,
  type PatientIdentity,
  type Ward,
} from '@ward/server'

/** The fleet commands: `ward device-model|device|patient|enrollment-token|keys …`. */
export const fleetUsage = `  ward device-model create --org <slug> --name <n> --manufacturer <m> --policy <file.json>
  ward device-model add-standard --org <slug>   pulse oximeter, BP cuff, glucose meter, scale
  ward device-model list --org <slug>
  ward patient create --org <slug> --identity <file.json>
                                                register a patient; prints the pseudonym
  ward patient list --org <slug>                pseudonyms only
  ward device create --org <slug> --serial <s> --model <name>
  ward device list --org <slug>
  ward device assign --org <slug> --serial <s> --patient <pseudonym>
  ward device unassign|suspend|reinstate|revoke --org <slug> --serial <s>
  ward device wipe --org <slug> --serial <s>    queue a remote wipe for the device's next
                                                connection; it is refused once it confirms
  ward device wipe-certificates --org <slug> --serial <s>
                                                what the device confirmed it erased, and when
  ward device decommission --org <slug> --serial <s>
                                                revoke its certificates, end its assignment,
                                                retire it for good
  ward enrollment-token create --org <slug> --serial <s>
                                                one-time token, shown once
  ward manufacturer register --org <slug> --name <n> --certificate <ca.pem>
                                                trust a manufacturer CA's factory identities
  ward manufacturer crl --org <slug> --name <n> --crl <file>
                                                store the manufacturer's CRL (PEM or DER),
                                                signed by its registered CA; factory
                                                certificates it lists no longer enroll
  ward manufacturer list --org <slug>           with each CA's CRL and integrity check
  ward keys rotate --org <slug>                 new key-encryption key; rewraps data keys`

type Values = Record<string, string | undefined>

/** Runs one fleet command; returns undefined when `command subcommand` is not one of them. */
export async function fleetCommand(
  ward: Ward,
  context: OperationContext,
  command: string,
  subcommand: string,
  values: Values,
  required: (value: string | undefined, flag: string) => string,
): Promise<string[] | undefined> {
  const fleet = ward.fleet
  const org = () => required(values['org'], '--org <slug>')
  const serial = () => required(values['serial'], '--serial <serial>')

  switch (`${command} ${subcommand}`) {
    case 'device-model create': {
      const policy = readJsonFile(required(values['policy'], '--policy <file.json>'), '--policy')
      const model = await fleet.createDeviceModel(context, org(), {
        name: required(values['name'], '--name <name>'),
        manufacturer: required(values['manufacturer'], '--manufacturer <name>'),
        policy,
      })
      return [`created device model ${model.name} (${model.id})`]
    }
    case 'device-model add-standard': {
      const lines: string[] = []
      for (const model of standardDeviceModels) {
        const created = await fleet.createDeviceModel(context, org(), model)
        lines.push(`created device model ${created.name} (${created.id})`)
      }
      return lines
    }
    case 'device-model list':
      return (await fleet.listDeviceModels(org())).map(
        (model) =>
          `${model.name}\t${model.manufacturer}\t${model.policy.measurements.length} measurements\t` +
          `${model.policy.maxReadingsPerMinute}/min\t${model.id}`,
      )
    case 'patient create': {
      // Identities come from a file, never the command line, so they stay out of shell history.
      const identity = readJsonFile(
        required(values['identity'], '--identity <file.json>'),
        '--identity',
      )
      const patient = await fleet.createPatient(context, org(), identity as PatientIdentity)
      return [patient.pseudonym]
    }
    case 'patient list':
      return (await fleet.listPatients(org())).map(
        (patient) => `${patient.pseudonym}\t${patient.createdAt}`,
      )
    case 'device create': {
      const device = await fleet.createDevice(context, org(), {
        serial: serial(),
        model: required(values['model'], '--model <name>'),
      })
      return [`created device ${device.serial} (${device.id}), ${device.status}`]
    }
    case 'device list': {
      const patients = new Map(
        (await fleet.listPatients(org())).map((patient) => [patient.id, patient.pseudonym]),
      )
      return (await fleet.listDevices(org())).map(
        (device) =>
          `${device.serial}\t${device.status}\t${device.patientId === null ? '-' : (patients.get(device.patientId) ?? '?')}\t${device.id}`,
      )
    }
    case 'device assign': {
      const device = await fleet.assignDevice(
        context,
        org(),
        serial(),
        required(values['patient'], '--patient <pseudonym>'),
      )
      return [`device ${device.serial} assigned`]
    }
    case 'device unassign':
      await fleet.assignDevice(context, org(), serial(), null)
      return [`device ${serial()} unassigned`]
    case 'device suspend':
      return [`device ${(await fleet.suspendDevice(context, org(), serial())).serial} suspended`]
    case 'device reinstate':
      return [`device ${(await fleet.reinstateDevice(context, org(), serial())).serial} reinstated`]
    case 'device revoke':
      return [
        `device ${(await fleet.revokeDevice(context, org(), serial())).serial}: certificates revoked`,
      ]
    case 'device wipe': {
      const command = await fleet.wipeDevice(context, org(), serial())
      return [
        `wipe of device ${serial()} queued as command ${command.id} (${command.status}); ` +
          "it runs on the device's next connection",
      ]
    }
    case 'device wipe-certificates':
      return (await fleet.wipeCertificates(org(), serial())).map(
        (certificate) =>
          `${certificate.id}\tcommand ${certificate.commandId}\terased at ${certificate.erasedAt}\t` +
          `recorded at ${certificate.recordedAt}\t${certificate.queuedReadings} queued and ` +
          `${certificate.rejectedReadings} refused readings\tkeys ${certificate.keyIds.join(',')}\t` +
          `certificates ${certificate.certificateSerials.join(',')}`,
      )
    case 'device decommission': {
      const device = await fleet.decommissionDevice(context, org(), serial())
      return [`device ${device.serial} decommissioned: certificates revoked, assignment ended`]
    }
    case 'enrollment-token create': {
      const issued = await fleet.issueEnrollmentToken(context, org(), serial())
      return [issued.token, `expires ${issued.expiresAt}`]
    }
    case 'manufacturer register': {
      const path = required(values['certificate'], '--certificate <ca.pem>')
      const authority = await fleet.registerManufacturer(context, org(), {
        name: required(values['name'], '--name <name>'),
        certificatePem: readTextFile(path, '--certificate'),
      })
      return [
        `registered manufacturer CA ${authority.name} (${authority.id})`,
        `  subject ${authority.subject}`,
        `  sha256 ${authority.fingerprintSha256}, valid until ${authority.notAfter}`,
      ]
    }
    case 'manufacturer crl': {
      const path = required(values['crl'], '--crl <file>')
      const upload = await fleet.uploadManufacturerCrl(context, org(), {
        name: required(values['name'], '--name <name>'),
        crl: readBytesFile(path, '--crl'),
      })
      return [
        `stored CRL number ${upload.number} of manufacturer ${upload.authorities[0]?.name ?? ''}: ` +
          `${upload.entries} revoked certificates, next update ${upload.nextUpdate}`,
        ...upload.authorities.map((authority) => `  for CA ${authority.subject} (${authority.id})`),
        ...(upload.stale
          ? [
              '  warning: its nextUpdate has already passed; fetch a newer CRL from the manufacturer',
            ]
          : []),
      ]
    }
    case 'manufacturer list':
      // A row that fails its check holds whatever was written into the database: printed
      // without control characters, so it cannot drive the terminal.
      return (await fleet.listManufacturers(context, org())).map((authority) =>
        [
          authority.name,
          authority.subject,
          authority.notAfter,
          authority.fingerprintSha256,
          authority.crl === null
            ? 'no CRL'
            : `CRL ${authority.crl.number}, next update ${authority.crl.nextUpdate}` +
              (Date.parse(authority.crl.nextUpdate) < Date.now() ? ' (stale)' : ''),
          ...(authority.authentic
            ? []
            : [
                'INTEGRITY CHECK FAILED: changed outside Ward, not trusted (security alert recorded)',
              ]),
        ]
          .map((field) => field.replace(/\p{Cc}/gu, '?'))
          .join('\t'),
      )
    case 'keys rotate': {
      const rotation = await fleet.rotateKeys(context, org())
      const done = await rotation.rewrapped
      return [
        `key-encryption key version ${rotation.version} active; ${done.rewrapped} data keys rewrapped; ` +
          `retired versions: ${done.retired.length === 0 ? 'none' : done.retired.join(', ')}`,
      ]
    }
  }
  return undefined
}

/** The option names fleet commands take. */
export const fleetOptions = [
  'org',
  'name',
  'manufacturer',
  'policy',
  'identity',
  'serial',
  'model',
  'patient',
  'certificate',
  'crl',
]

function readJsonFile(path: string, flag: string): unknown {
  const text = readTextFile(path, flag)
  try {
    return JSON.parse(text)
  } catch (cause) {
    throw new WardError('ERR_INPUT_INVALID', `${flag} ${path} is not valid JSON`, { cause })
  }
}

function readBytesFile(path: string, flag: string): Uint8Array {
  try {
    if (!statSync(path).isFile()) throw new Error('not a regular file')
    if (statSync(path).size > 2_000_000) throw new Error('file too large')
    return new Uint8Array(readFileSync(path))
  } catch (cause) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      `${flag} ${path} is not a readable file of at most 2 MB`,
      { cause },
    )
  }
}

function readTextFile(path: string, flag: string): string {
  try {
    if (!statSync(path).isFile()) throw new Error('not a regular file')
    if (statSync(path).size > 1_000_000) throw new Error('file too large')
    return readFileSync(path, 'utf8')
  } catch (cause) {
    throw new WardError(
      'ERR_INPUT_INVALID',
      `${flag} ${path} is not a readable file of at most 1 MB`,
      { cause },
    )
  }
}
