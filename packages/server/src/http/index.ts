// The HTTPS API, kept apart from the package's main entry so that commands which never serve
// do not load the web framework.
export { toProblem, type Problem } from './problem.js'
export { buildServer } from './server.js'
export { serveWard, type RunningWard } from '../serve.js'
export { startDeviceEndpoint, type DeviceEndpoint } from '../ingest/index.js'
