import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Ajv } from 'ajv'
import { PROJECT_ID, OP_ID } from '../lib/ids.js'

/**
 * The POST body is JSON, checked as the WebSocket `op` frame is: without
 * Fastify's type coercion, which would turn `"id": 5` into `"5"` (a bad id
 * over WebSocket, so a bad id over HTTP too).
 */
const strictAjv = new Ajv({ coerceTypes: false, useDefaults: false, allErrors: false, strict: true })

const params = {
  type: 'object',
  required: ['project'],
  properties: { project: { type: 'string', pattern: PROJECT_ID.source } }
}

const member = {
  type: 'object',
  properties: {
    sessionId: { type: 'string' },
    userId: { type: 'string' },
    presence: { type: 'object', additionalProperties: true },
    joinedAt: { type: 'number' }
  }
}

/** Longest project id (docs/protocol.md); the router must let a path parameter this long through. */
export const PROJECT_ID_MAX_LENGTH = 128

/** The router's limit on one path parameter (Fastify's default is 100). */
function maxParamLength (fastify: FastifyInstance): number {
  const { routerOptions, maxParamLength } = fastify.initialConfig
  return routerOptions?.maxParamLength ?? maxParamLength ?? 100
}

/** The project API: members, history and posting ops over HTTP. */
async function httpApiPlugin (fastify: FastifyInstance): Promise<void> {
  const { config } = fastify.flowConfig
  const hub = fastify.flowHub
  const paramLimit = maxParamLength(fastify)
  if (paramLimit < PROJECT_ID_MAX_LENGTH) {
    // The router answers 414 before any Flow code runs; only the host can raise it.
    fastify.log.warn({ maxParamLength: paramLimit },
      `project ids longer than ${paramLimit} characters get 414 from the HTTP API: create the Fastify app with routerOptions.maxParamLength >= ${PROJECT_ID_MAX_LENGTH}`)
  }

  fastify.get<{ Params: { project: string } }>('/projects/:project/members', {
    schema: {
      params,
      response: { 200: { type: 'object', properties: { project: { type: 'string' }, members: { type: 'array', items: member } } } }
    },
    preValidation: fastify.flowAuth.read
  }, async (request) => {
    const { project } = request.params
    return { project, members: await hub.members(project) }
  })

  fastify.get<{ Params: { project: string }, Querystring: { since: number, limit: number } }>('/projects/:project/ops', {
    schema: {
      params,
      querystring: {
        type: 'object',
        properties: {
          since: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER, default: 0 },
          limit: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER, default: 100 }
        }
      }
    },
    preValidation: fastify.flowAuth.read
  }, async (request) => {
    const { project } = request.params
    const limit = Math.min(request.query.limit, config.opsPageMax)
    return await hub.history(project, request.query.since, limit)
  })

  fastify.post<{ Params: { project: string }, Body: { id?: string, data: unknown } }>('/projects/:project/ops', {
    bodyLimit: config.maxPayloadBytes,
    validatorCompiler: ({ schema }) => strictAjv.compile(schema),
    schema: {
      params,
      body: {
        type: 'object',
        required: ['data'],
        properties: { id: { type: 'string', pattern: OP_ID.source }, data: {} }
      }
    },
    preValidation: fastify.flowAuth.write
  }, async (request, reply) => {
    const { project } = request.params
    const userId = request.flowIdentity?.userId ?? 'api'
    const result = await hub.post(project, userId, request.body.id, request.body.data)
    void reply.code(result.duplicate ? 200 : 201)
    return { project, id: result.id, seq: result.seq }
  })
}

export default fp(httpApiPlugin, { name: 'flow-http-api', fastify: '5.x', dependencies: ['flow-config', 'flow-hub', 'flow-auth'] })
