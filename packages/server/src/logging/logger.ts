import { pino, type DestinationStream, type Logger } from 'pino'

export type { Logger } from 'pino'

/**
 * Fields that could carry secrets or PHI if a careless line logged a whole object. The
 * application log records how the service is doing, never who the patients are: these are
 * censored wherever they appear, at any of the depths listed.
 */
export const redactedFields = [
  'authorization',
  'cookie',
  'password',
  'token',
  'secret',
  'privateKey',
  'masterKey',
  'body',
  'name',
  'birthDate',
  'address',
  'phone',
  'email',
  'identifier',
  'patient',
] as const

const redactPaths = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  ...redactedFields.flatMap((field) => [field, `*.${field}`, `*.*.${field}`]),
]

/**
 * Ward's application logger: one JSON object a line on standard output (or `destination`),
 * with level, time, a short event name in `msg` and structured fields. Never the audit trail.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'ward' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: redactPaths, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  )
}
