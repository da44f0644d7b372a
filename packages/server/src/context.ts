import { randomUUID } from 'node:crypto'

/** Who acts. Ids are Ward's own references, never names or other PHI. */
export interface Actor {
  readonly type: 'operator' | 'user' | 'device' | 'system'
  readonly id: string
  readonly role?: string
  /** Network address the request came from, when there was one. */
  readonly address?: string
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
