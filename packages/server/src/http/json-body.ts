import type { FastifyInstance } from 'fastify'

import { WardError } from '@ward/core'

type JsonParser = ReturnType<FastifyInstance['getDefaultJsonParser']>

/**
 * Fastify's JSON body parser, refusing `__proto__` and `constructor.prototype` keys, with two
 * changes: an empty body is read as no body, as clients that always set a JSON content type
 * send for a DELETE or a bodiless POST (a route that needs a body still says which), and a
 * body refused for such a key says so rather than calling valid JSON invalid.
 */
export function jsonBodyParser(app: Pick<FastifyInstance, 'getDefaultJsonParser'>): JsonParser {
  const json = app.getDefaultJsonParser('error', 'error')
  return (request, body, done) => {
    if (body === '') {
      done(null, undefined)
      return
    }
    json(request, body, (error, value) => {
      if (error !== null && isJson(body)) {
        done(
          new WardError(
            'ERR_PAYLOAD_INVALID',
            'request body must not hold __proto__ or constructor.prototype keys',
          ),
          undefined,
        )
        return
      }
      done(error, value)
    })
  }
}

function isJson(text: string | Buffer): boolean {
  try {
    JSON.parse(text.toString())
    return true
  } catch {
    return false
  }
}
