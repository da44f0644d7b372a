// The HTTPS API, kept apart from the package's main entry so that commands which never serve
// do not load the web framework.
export { toProblem, type Problem } from './problem.js'
export { buildServer, type ServerOptions } from './server.js'
export { authenticateNobody, type Authenticate } from './api-route.js'
export { serveWard, type RunningWard } from '../serve.js'
export { startDeviceEndpoint, type DeviceEndpoint } from '../ingest/index.js'
