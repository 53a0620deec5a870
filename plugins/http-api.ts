import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { PROJECT_ID, OP_ID } from '../lib/ids.js'

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

/** The project API: members, history and posting ops over HTTP. */
async function httpApiPlugin (fastify: FastifyInstance): Promise<void> {
  const { hub, config } = fastify.flow

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

export default fp(httpApiPlugin, { name: 'flow-http-api', fastify: '5.x', dependencies: ['flow-hub', 'flow-auth'] })
