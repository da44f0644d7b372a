// Serves the Ward its WARD_* environment variables describe, logging at info on standard
// output, until SIGTERM. Tests start it as a child process when they need a Ward they can kill.
import { loadConfig } from '../src/config/index.js'
import { serveWard } from '../src/http/index.js'
import { createLogger } from '../src/logging/index.js'

const running = await serveWard(loadConfig({ env: process.env }), createLogger('info'))
process.once('SIGTERM', () => {
  running.close().then(
    () => process.exit(0),
    () => process.exit(1),
  )
})
