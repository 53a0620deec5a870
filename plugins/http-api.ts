import fp from 'fastify-plugin'
import rateLimit, { type FastifyRateLimitStore } from '@fastify/rate-limit'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Ajv } from 'ajv'
import { PROJECT_ID, OP_ID } from '../lib/ids.js'
import { bearerToken, createAuthenticator } from '../lib/auth.js'
import { rateLimited } from '../lib/errors.js'
import { errorResponse } from './errors.js'
import { identityKey } from './auth.js'

/**
 * The POST body is JSON, checked as the WebSocket `op` frame is: without
 * Fastify's type coercion, which would turn `"id": 5` into `"5"` (a bad id
 * over WebSocket, so a bad id over HTTP too).
 */
const strictAjv = new Ajv({ coerceTypes: false, useDefaults: false, allErrors: false, strict: true })

const params = {
  type: 'object',
  required: ['project'],
  properties: {
    project: { type: 'string', pattern: PROJECT_ID.source, description: 'the project id (docs/protocol.md, Words)' }
  }
}

const member = {
  type: 'object',
  description: 'one session joined to the project, on any instance',
  properties: {
    sessionId: { type: 'string', description: 'the session, one per connection and project' },
    userId: { type: 'string', description: 'the user of the session\'s token (or of the host\'s identity)' },
    presence: { type: 'object', additionalProperties: true, description: 'the session\'s last presence' },
    joinedAt: { type: 'number', description: 'when it joined, ms since the Unix epoch' }
  }
}

const op = {
  type: 'object',
  description: 'a sequenced op: the `op` frame without `type`',
  properties: {
    project: { type: 'string' },
    seq: { type: 'integer', description: 'the project\'s seq of this op: 1, 2, 3, ... within an epoch' },
    id: { type: 'string', description: 'the op id: the sender\'s idempotency key, or one the server made' },
    userId: { type: 'string', description: 'who sent it' },
    sessionId: { type: ['string', 'null'], description: 'the sending session; null for ops posted over HTTP' },
    data: { description: 'any JSON value; the server does not interpret it' },
    ts: { type: 'number', description: 'when the server accepted it, ms since the Unix epoch' }
  }
}

/** The answer to a posted op. */
const accepted = {
  type: 'object',
  properties: {
    project: { type: 'string' },
    id: { type: 'string', description: 'the op id' },
    seq: { type: 'integer', description: 'the op\'s seq' }
  }
}

/** A snapshot (protocol 1.2). */
const snapshotBody = {
  type: 'object',
  properties: {
    project: { type: 'string' },
    epoch: { type: 'string', description: 'the epoch of the log the state belongs to' },
    seq: { type: 'integer', description: 'the state is the fold of the ops 1..seq of that epoch' },
    state: { description: 'any JSON value, as the reducer or the client made it' }
  }
}

/** The error answers every project route may give. */
const projectErrors = {
  400: errorResponse('a bad project id, query or body (`bad_request`)'),
  401: errorResponse('authentication is on and the token (or API key) is missing or invalid (`unauthorized`)'),
  403: errorResponse('the token does not allow this project (`forbidden`)'),
  429: errorResponse('over FLOW_HTTP_RATE_LIMIT requests per second, or too many new projects or ops in flight ' +
    '(`rate_limited`); `retry-after` says when to retry'),
  500: errorResponse('a bug (`internal`); the message says nothing more'),
  503: errorResponse('the process is over a load limit (the message names it), or the op log is unavailable ' +
    '(`unavailable`)')
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

/** The size of a request's body: its content-length, or its JSON when it came chunked. */
function bodyBytes (request: FastifyRequest): number {
  const length = Number(request.headers['content-length'])
  if (Number.isSafeInteger(length) && length >= 0) return length
  return request.body === undefined ? 0 : Buffer.byteLength(JSON.stringify(request.body) ?? '')
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
  return identityKey(request.flowIdentity, request.ip, mode)
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
  // Without authentication the key is the address, known as the request
  // arrives: over-limit requests are refused at onRequest, before their body
  // is read and parsed (a client refused 300 times a second costs the server
  // the least it can). With authentication the key is the identity the
  // route's own preValidation hook (flow-auth) sets, so the limits run right
  // after it; not preHandler (a request that fails validation would not count).
  const early = mode === 'open'
  await fastify.register(rateLimit, {
    global: true,
    max,
    timeWindow: 1000,
    store: WindowStore,
    hook: early ? 'onRequest' : 'preValidation',
    keyGenerator: (request) => rateLimitKey(request, mode, (token) => apiKeys.isApiKey(token)),
    // Thrown to Flow's error handler: 429 with the protocol's body; retry-after is set already.
    errorResponseBuilder: (_request, context) =>
      rateLimited(`rate limit exceeded: at most ${max} requests per second; retry in ${context.after}`)
  })

  // The identity's byte budgets, shared with its WebSocket connections: what it reads (the bodies of
  // GET answers) and what it sends (request bodies). A request made while its identity is in debt is
  // refused with 429 and retry-after; the API key spends none.
  const { reads, writes } = hub.budgets
  // The key is found once per request (at onRequest without authentication, before the body is read; in
  // preHandler with it), and refused there while in debt; preHandler spends the body's bytes, onSend the
  // answer's, against the same key.
  const keys = new WeakMap<FastifyRequest, string>()
  const checkBudget = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const key = rateLimitKey(request, mode, (token) => apiKeys.isApiKey(token))
    if (key === 'key') return
    keys.set(request, key)
    const reading = request.method === 'GET' || request.method === 'HEAD'
    const wait = (reading ? reads : writes).wait(key, Date.now())
    if (wait > 0) {
      fastify.flowHub.stats[reading ? 'readsDeferred' : 'writesPaused']++
      const seconds = Math.ceil(wait / 1000)
      void reply.header('retry-after', String(seconds))
      const limit = reading ? 'FLOW_IDENTITY_READ_BYTES_PER_SECOND' : 'FLOW_IDENTITY_WRITE_BYTES_PER_SECOND'
      throw rateLimited(`over ${limit}: retry in ${seconds} second${seconds === 1 ? '' : 's'}`)
    }
  }
  if (early) {
    // Each route's own onRequest hook, after the rate limit's (its onRoute hook ran first): as before, a
    // request counts in the rate limit before its budget is looked at.
    fastify.addHook('onRoute', (route) => {
      const hooks = route.onRequest
      route.onRequest = hooks === undefined ? [checkBudget] : [...(Array.isArray(hooks) ? hooks : [hooks]), checkBudget]
    })
  }
  fastify.addHook('preHandler', async (request, reply) => {
    if (!early) await checkBudget(request, reply)
    const key = keys.get(request)
    if (key !== undefined && request.method !== 'GET' && request.method !== 'HEAD') writes.spend(key, bodyBytes(request), Date.now())
  })
  fastify.addHook('onSend', async (request, reply, payload) => {
    if (reply.statusCode !== 200 || (request.method !== 'GET' && request.method !== 'HEAD')) return payload
    const key = keys.get(request)
    if (key !== undefined) reads.spend(key, typeof payload === 'string' ? Buffer.byteLength(payload) : 0, Date.now())
    return payload
  })

  fastify.get<{ Params: { project: string }, Querystring: { after?: string, limit?: number } }>('/projects/:project/members', {
    schema: {
      tags: ['projects'],
      summary: 'The members of a project',
      description: 'Every session joined to the project, on every instance, with its presence. (1.3) With `limit` ' +
        'or `after`, one page of the list in join order: `count` is the whole list\'s size and `next` the cursor ' +
        'of the next page (null at the end).',
      params,
      querystring: {
        type: 'object',
        properties: {
          after: { type: 'string', minLength: 1, maxLength: 256, description: '(1.3) the `next` of the page before' },
          limit: { type: 'integer', minimum: 1, maximum: 10_000, description: '(1.3) members per page (default FLOW_JOINED_MEMBERS_MAX)' }
        }
      },
      response: {
        200: {
          type: 'object',
          description: 'the members',
          properties: {
            project: { type: 'string' },
            members: { type: 'array', items: member },
            count: { type: 'integer', description: '(1.3, paged) members in the whole list' },
            next: { type: ['string', 'null'], description: '(1.3, paged) the cursor of the next page' }
          }
        },
        ...projectErrors
      }
    },
    preValidation: fastify.flowAuth.read
  }, async (request) => {
    const { project } = request.params
    const { after, limit } = request.query
    if (after === undefined && limit === undefined) return { project, members: await hub.members(project) }
    return { project, ...await hub.memberPage(project, after, limit ?? config.joinedMembersMax) }
  })

  fastify.get<{ Params: { project: string }, Querystring: { since: number, limit: number, snapshot: boolean } }>('/projects/:project/ops', {
    schema: {
      tags: ['projects'],
      summary: 'A page of a project\'s history',
      description: 'The ops after `since`, in seq order, at most `limit` (capped by FLOW_OPS_PAGE_MAX) and ' +
        'FLOW_REPLAY_PAGE_BYTES of them (one op is always returned): read on from the last op\'s seq until you ' +
        'reach `seq`. A project without a log answers epoch `none`, seq 0; a read creates nothing.',
      params,
      querystring: {
        type: 'object',
        properties: {
          since: {
            type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER, default: 0,
            description: 'the last seq you have: the page starts after it'
          },
          limit: {
            type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER, default: 100,
            description: 'most ops in the page (capped by FLOW_OPS_PAGE_MAX, 1,000 by default)'
          },
          snapshot: {
            type: 'boolean', default: false,
            description: '(protocol 1.2) start at the project\'s snapshot when it is newer than `since`: the page ' +
              'carries it as `snapshot` and its ops follow it (`snapshot: null` when there is none newer)'
          }
        }
      },
      response: {
        200: {
          type: 'object',
          description: 'a page of history',
          properties: {
            project: { type: 'string' },
            epoch: { type: 'string', description: 'the log\'s epoch: compare it with yours (`none`: no log)' },
            seq: { type: 'integer', description: 'the head: the seq of the project\'s last op' },
            ops: { type: 'array', items: op },
            reset: {
              type: 'boolean',
              description: 'true when the oldest kept op is newer than `since + 1`, or `since` is above the head: ' +
                '`ops` is empty, and what you built from the ops must be rebuilt'
            },
            snapshot: {
              type: ['object', 'null'],
              description: '(with `snapshot=true`) the snapshot the page starts at, or null',
              properties: { epoch: { type: 'string' }, seq: { type: 'integer' }, state: {} }
            }
          }
        },
        ...projectErrors
      }
    },
    preValidation: fastify.flowAuth.read
  }, async (request) => {
    const { project } = request.params
    const limit = Math.min(request.query.limit, config.opsPageMax)
    if (request.query.snapshot) return await hub.historyFromSnapshot(project, request.query.since, limit)
    return await hub.history(project, request.query.since, limit)
  })

  fastify.get<{ Params: { project: string } }>('/projects/:project/snapshot', {
    schema: {
      tags: ['snapshots'],
      summary: 'The project\'s snapshot',
      description: '(protocol 1.2) The project\'s newest snapshot of its current epoch: its state at `seq`. ' +
        'Read the ops after it with `GET /projects/:project/ops?since=<seq>`.',
      params,
      response: {
        200: { ...snapshotBody, description: 'the snapshot' },
        ...projectErrors,
        404: errorResponse('the project has no snapshot of its current epoch (`not_found`)')
      }
    },
    preValidation: fastify.flowAuth.read
  }, async (request) => {
    const { project, epoch, seq, state } = await hub.snapshot(request.params.project)
    return { project, epoch, seq, state }
  })

  fastify.put<{ Params: { project: string }, Body: { epoch: string, seq: number, state: unknown } }>('/projects/:project/snapshot', {
    // The state, and room for the rest of the body; a larger state is refused by the hub with 413.
    bodyLimit: config.snapshotMaxBytes + 4096,
    validatorCompiler: ({ schema }) => strictAjv.compile(schema),
    schema: {
      tags: ['snapshots'],
      summary: 'Store a snapshot of the project',
      description: '(protocol 1.2) Stores `state` as the project\'s state at `seq` of `epoch`, as the `snapshot` ' +
        'frame does: kept when the epoch is current, `seq` at most the head, and newer than the stored one. ' +
        'Needs write access (the API key when FLOW_API_KEY is set).',
      params,
      body: {
        type: 'object',
        required: ['epoch', 'seq', 'state'],
        properties: {
          epoch: { type: 'string', minLength: 1, maxLength: 128, description: 'the epoch the state belongs to' },
          seq: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'the last op folded in' },
          state: { description: 'any JSON value, at most FLOW_SNAPSHOT_MAX_BYTES as JSON' }
        }
      },
      response: {
        200: {
          type: 'object',
          description: 'whether it was kept, and why not',
          properties: {
            project: { type: 'string' },
            epoch: { type: 'string' },
            seq: { type: 'integer' },
            stored: { type: 'boolean' },
            reason: {
              type: 'string', enum: ['epoch', 'ahead', 'older', 'disabled'],
              description: '`epoch`: not the current one; `ahead`: above the head; `older`: a newer one is kept; ' +
                '`disabled`: this server keeps no snapshots'
            }
          }
        },
        ...projectErrors,
        413: errorResponse('the state is over FLOW_SNAPSHOT_MAX_BYTES or nests too deep (`limit_exceeded`)')
      }
    },
    preValidation: fastify.flowAuth.write
  }, async (request) => {
    const { project } = request.params
    const { epoch, seq, state } = request.body
    const result = await hub.putSnapshot(project, epoch, seq, state)
    return { project, epoch, seq, stored: result.stored, reason: result.stored ? undefined : result.reason }
  })

  fastify.post<{ Params: { project: string }, Body: { id?: string, data: unknown } }>('/projects/:project/ops', {
    bodyLimit: config.maxPayloadBytes,
    validatorCompiler: ({ schema }) => strictAjv.compile(schema),
    schema: {
      tags: ['projects'],
      summary: 'Post an op to a project',
      description: 'Appends the op and broadcasts it to the project\'s members as a client\'s op is ' +
        '(`sessionId: null`, `userId` of the token, or `api`). The body is held to the frame-size and nesting ' +
        'limits of a WebSocket frame. Needs the API key when FLOW_API_KEY is set.',
      params,
      body: {
        type: 'object',
        required: ['data'],
        properties: {
          id: {
            type: 'string', pattern: OP_ID.source,
            description: 'the idempotency key: a repeated id appends nothing (default: one the server makes)'
          },
          data: { description: 'any JSON value' }
        }
      },
      response: {
        200: { ...accepted, description: 'the id was posted before: the original seq, nothing appended' },
        201: { ...accepted, description: 'appended' },
        ...projectErrors,
        413: errorResponse('the body is over FLOW_MAX_PAYLOAD_BYTES or nests too deep (`limit_exceeded`)')
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
