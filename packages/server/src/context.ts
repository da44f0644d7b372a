import { randomUUID } from 'node:crypto'

/** Who acts. Ids are Ward's own references, never names or other PHI. */
export interface Actor {
  readonly type: 'operator' | 'user' | 'device' | 'system'
  readonly id: string
  readonly role?: string
  /**
   * Network address the request came from, when there was one. Whether an audit event records
   * it is decided by {@link recordedAddress}, not by whoever builds the actor.
   */
  readonly address?: string
  /**
   * True when the acting person is a patient: linked to a patient record, whatever role they
   * act in (every holder of the `patient` role is).
   */
  readonly patient?: boolean
}

/**
 * The network address an audit event records for `actor`: the workforce's, for accountability;
 * never a device's or a patient's, since either would locate the patient (HIPAA counts an IP
 * address as an identifier). A failed sign-in under a login name Ward does not know keeps its
 * address: the event names no account, so the address belongs to nobody in the log, and it is
 * what shows a password sprayer.
 */
export function recordedAddress(actor: Actor): string | undefined {
  if (actor.type === 'device' || actor.patient === true) return undefined
  return actor.address
}

/**
 * Everything an operation needs to know about the call it serves: who acts, for which
 * organization, why, and under which request id. The audit event of the operation is built
 * from this, so every operation must be given one.
 */
export interface OperationContext {
  readonly actor: Actor
  readonly requestId: string
  /** HL7 v3 PurposeOfUse code, e.g. `HSYSADMIN` for system administration, `TREAT`. */
  readonly purposeOfUse: string
  /** The organization acted for; absent for platform-wide operations. */
  readonly organizationId?: string
  /** The access rule that allowed the operation, recorded with its audit event. */
  readonly policyRule: string
}

/** A context for Ward's own scheduled work. */
export function systemContext(task: string): OperationContext {
  return {
    actor: { type: 'system', id: `ward:${task}` },
    requestId: randomUUID(),
    purposeOfUse: 'HSYSADMIN',
    policyRule: 'system-task',
  }
}
