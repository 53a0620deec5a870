import fp from 'fastify-plugin'
import rateLimit, { normalizeIP, type FastifyRateLimitStore } from '@fastify/rate-limit'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Ajv } from 'ajv'
import { PROJECT_ID, OP_ID } from '../lib/ids.js'
import { bearerToken, createAuthenticator } from '../lib/auth.js'
import { RateLimitedError } from '../lib/errors.js'

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

/**
 * The rate limit's counts: a fixed window per key from its first request,
 * forgotten once over. Used instead of @fastify/rate-limit's LocalStore,
 * which hands every request of a key the same mutable record and reads it
 * after an await: requests that arrive together all read the last one's
 * count, and all of them are refused.
 */
export class WindowStore implements FastifyRateLimitStore {
  /** in the order the windows opened: with one window length, the expired ones come first */
  readonly #windows = new Map<string, { count: number, readonly start: number }>()

  incr (key: string, callback: (error: Error | null, result?: { current: number, ttl: number }) => void, timeWindow: number): void {
    const now = Date.now()
    for (const [old, window] of this.#windows) {
      if (window.start + timeWindow > now) break
      this.#windows.delete(old)
    }
    let window = this.#windows.get(key)
    if (window === undefined) {
      window = { count: 0, start: now }
      this.#windows.set(key, window)
    }
    window.count++
    callback(null, { current: window.count, ttl: window.start + timeWindow - now })
  }

  child (): FastifyRateLimitStore {
    return new WindowStore()
  }
}

/**
 * Whom a request counts against in the rate limit: the API key, the user of
 * a token (or of the host's `authenticate` hook), or, when the request
 * carries no credential (open mode), its address (an IPv6 address by its
 * /64, which one client usually holds whole).
 */
export function rateLimitKey (request: FastifyRequest, mode: 'jwt' | 'hook' | 'open', isApiKey: (token: string) => boolean): string {
  const token = bearerToken(request.headers.authorization)
  if (token !== undefined && isApiKey(token)) return 'key'
  const identity = request.flowIdentity
  // In open mode every caller is the same anonymous identity: only the address tells them apart.
  if (identity !== null && mode !== 'open') return `user:${identity.userId}`
  return `ip:${normalizeIP(request.ip)}`
}

/** The project API: members, history and posting ops over HTTP. */
async function httpApiPlugin (fastify: FastifyInstance): Promise<void> {
  const paramLimit = maxParamLength(fastify)
  if (paramLimit < PROJECT_ID_MAX_LENGTH) {
    // The router answers 414 before any Flow code runs; only the host can raise it.
    fastify.log.warn({ maxParamLength: paramLimit },
      `project ids longer than ${paramLimit} characters get 414 from the HTTP API: create the Fastify app with routerOptions.maxParamLength >= ${PROJECT_ID_MAX_LENGTH}`)
  }
  // A context of their own: the rate limit's hooks reach the project routes
  // and nothing else (not /health, /metrics, /ws/stats, /ws, nor the host's routes).
  await fastify.register(projectRoutes)
}

async function projectRoutes (fastify: FastifyInstance): Promise<void> {
  const { config } = fastify.flowConfig
  const hub = fastify.flowHub
  const apiKeys = createAuthenticator({ apiKey: config.apiKey })
  const { mode } = fastify.flowAuth
  const max = config.httpRateLimit
  await fastify.register(rateLimit, {
    global: true,
    max,
    timeWindow: 1000,
    store: WindowStore,
    // The route's own preValidation hook (flow-auth) runs first, so the key
    // is the identity it set. Not onRequest (no identity yet), nor
    // preHandler (a request that fails validation would not count).
    hook: 'preValidation',
    keyGenerator: (request) => rateLimitKey(request, mode, (token) => apiKeys.isApiKey(token)),
    // Thrown to Flow's error handler: 429 with the protocol's body; retry-after is set already.
    errorResponseBuilder: (_request, context) =>
      new RateLimitedError(`rate limit exceeded: at most ${max} requests per second; retry in ${context.after}`)
  })

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
    const result = await hub.post(project, userId, request.body.id, request.body.data, request.flowIdentity ?? undefined)
    void reply.code(result.duplicate ? 200 : 201)
    return { project, id: result.id, seq: result.seq }
  })
}

export default fp(httpApiPlugin, { name: 'flow-http-api', fastify: '5.x', dependencies: ['flow-config', 'flow-hub', 'flow-auth'] })
