import fp from 'fastify-plugin'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { STATUS_CODES } from 'node:http'
import { HTTP_STATUS, wireCode, type ErrorCode } from '../lib/errors.js'

/** Fastify's error shape with the protocol's error code. */
export function errorBody (status: number, code: ErrorCode, message: string): object {
  return { statusCode: status, code, error: STATUS_CODES[status] ?? 'Error', message }
}

/** The `$id` of the error body's schema, shared by every Flow route (`{ $ref: 'FlowError#' }`). */
export const ERROR_SCHEMA_ID = 'FlowError'

/** The schema of `errorBody`: what every Flow route answers an error with. */
export const errorSchema = {
  $id: ERROR_SCHEMA_ID,
  type: 'object',
  description: 'An error: Fastify\'s shape, with the protocol\'s error code (docs/protocol.md, Errors)',
  required: ['statusCode', 'code', 'error', 'message'],
  properties: {
    statusCode: { type: 'integer', description: 'the HTTP status, as in the status line' },
    code: { type: 'string', enum: Object.keys(HTTP_STATUS), description: 'the protocol\'s error code' },
    error: { type: 'string', description: 'the status text, e.g. `Service Unavailable`' },
    message: { type: 'string', description: 'what went wrong, for people (never a credential)' }
  }
} as const

/** A response schema for an error status: the shared error body, with what this status means on this route. */
export function errorResponse (description: string): { readonly description: string, readonly $ref: string } {
  return { description, $ref: `${ERROR_SCHEMA_ID}#` }
}

function codeFor (status: number): ErrorCode {
  if (status === 401) return 'unauthorized'
  if (status === 403) return 'forbidden'
  if (status === 413) return 'limit_exceeded'
  if (status === 429) return 'rate_limited'
  if (status === 503) return 'unavailable'
  if (status >= 500) return 'internal'
  return 'bad_request'
}

/**
 * The error handler of Flow's routes, and the schema of their error body
 * (and only theirs: both are registered in the encapsulated context, so the
 * host's error handling and schemas are untouched).
 */
async function errorsPlugin (fastify: FastifyInstance): Promise<void> {
  fastify.addSchema(errorSchema)
  fastify.setErrorHandler(function flowErrorHandler (error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
    let status: number
    let code: ErrorCode
    let message = error.message
    const refused = wireCode(error)
    if (refused !== null) {
      code = refused
      status = HTTP_STATUS[code]
    } else if (error.validation !== undefined) {
      code = 'bad_request'
      status = 400
      message = `${error.validationContext ?? 'request'}${error.message.replace(/^(body|querystring|params)/, '')}`
    } else {
      status = typeof error.statusCode === 'number' && error.statusCode >= 400 ? error.statusCode : 500
      code = codeFor(status)
      if (status >= 500 && status !== 503) {
        request.log.error({ err: error }, 'request failed')
        message = 'internal error'
      }
    }
    if (status === 401) void reply.header('www-authenticate', 'Bearer')
    void reply.code(status).send(errorBody(status, code, message))
  })
}

export default fp(errorsPlugin, { name: 'flow-errors', fastify: '5.x' })
