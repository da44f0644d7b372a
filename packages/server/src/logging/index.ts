export { createLogger, redactedFields, type Logger } from './logger.js'
