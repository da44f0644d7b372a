// The device agent SDK: enrollment, a durable queue of readings, delivery over mutual TLS, and
// the fleet simulator built from them.
export * from './agent.js'
export * from './client.js'
export * from './commands.js'
export * from './fhir.js'
export * from './follow-rollout.js'
export * from './queue.js'
export * from './simulate.js'
export * from './updates.js'
