// The ingest domain's only door: the mutual-TLS device endpoint, and the batch format it reads
// and answers in.
export { batchResponse, readingsOf, type EntryOutcome } from './batch.js'
export { startDeviceEndpoint, type DeviceEndpoint } from './endpoint.js'
