import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'

const requestIdPattern = /^[A-Za-z0-9._-]{8,100}$/

/**
 * The id a request is known by in responses, logs and audit events. A caller's own
 * `x-request-id` is kept when it looks like one, so traces join up; otherwise a new UUID.
 */
export function requestIdOf(request: IncomingMessage): string {
  const offered = request.headers['x-request-id']
  return typeof offered === 'string' && requestIdPattern.test(offered) ? offered : randomUUID()
}
