import fp from 'fastify-plugin'
import underPressure from '@fastify/under-pressure'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { FlowConfig } from '../lib/config.js'
import { ConfigError, UnavailableError } from '../lib/errors.js'
import { errorBody, errorResponse, errorSchema } from './errors.js'

/** Whether Redis may evict Flow's keys under memory pressure: every policy but `noeviction` (the op log's keys carry an idle TTL, so `volatile-*` may take them too). */
export function evicts (policy: string | null): boolean {
  return policy !== null && policy !== 'noeviction'
}

/**
 * Why the op log must not run on a Redis with this maxmemory-policy, or
 * null: under any policy but `noeviction` Redis may evict a project's op-id
 * hash alone (then a resent op is appended twice) or its history, unless
 * FLOW_REDIS_ALLOW_EVICTION accepts it. `volatile-*` counts: the op log's
 * keys carry an idle TTL (FLOW_PROJECT_IDLE_TTL).
 */
export function evictionRefusal (policy: string | null, config: FlowConfig): string | null {
  if (!evicts(policy) || config.redisAllowEviction) return null
  return `Redis maxmemory-policy is ${String(policy)}: it may evict the op log's keys (USE_REDIS_EVENT_ORDERING), and a resent op ` +
    'would then be appended twice; set maxmemory-policy to noeviction in Redis, or ' +
    'FLOW_REDIS_ALLOW_EVICTION=true to accept the risk'
}

/**
 * No op log on an evicting Redis: when the op log is on Redis and Redis'
 * policy evicts (anything but `noeviction`, and FLOW_REDIS_ALLOW_EVICTION is not set), start-up
 * stops when the policy is known now; when a later read finds it (a runtime
 * `CONFIG SET`, or Redis reached after boot), the Redis ports are refused
 * (they serve from memory, /health is degraded) until the policy is fixed.
 */
function guardEviction (fastify: FastifyInstance, config: FlowConfig): void {
  const redis = fastify.flowRedis
  const health = fastify.flowPorts.health
  if (redis === null || health === null || fastify.flowPorts.reports().log.adapter !== 'redis') return
  const now = evictionRefusal(redis.maxmemoryPolicy, config)
  if (now !== null) throw new ConfigError(now)
  const log = fastify.log.child({ component: 'redis' })
  redis.onMemory((memory) => {
    const refusal = evictionRefusal(memory.policy, config)
    const refused = health.refusal !== null
    if (refusal !== null && !refused) log.warn(`${refusal}: the Redis ports serve from memory until it is fixed`)
    if (refusal === null && refused) log.info({ policy: memory.policy }, 'Redis maxmemory-policy is safe again: the Redis ports go back to Redis')
    health.refuse(refusal === null ? null : new ConfigError(refusal))
  })
}

/** The load limit under-pressure found tripped, and its reading. */
export interface Overload {
  /** under-pressure's name of the limit: `eventLoopDelay`, `eventLoopUtilization`, `heapUsedBytes`, `rssBytes` (or `healthCheck`) */
  readonly limit: string
  /** the setting that holds the limit */
  readonly setting: string
  /** the reading over the limit (ms, a 0 to 1 ratio, or bytes) */
  readonly value: number | null
  /** the limit (same unit) */
  readonly max: number | null
  /** the limit and the reading in words */
  readonly message: string
}

declare module 'fastify' {
  interface FastifyRequest {
    /** set on a route exempt from load shedding when a load limit is tripped (flow-health); null otherwise */
    flowOverload: Overload | null
  }
}

const MIB = 1024 * 1024

function bytes (n: number): string {
  return n >= MIB ? `${(n / MIB).toFixed(1)} MiB` : `${n} bytes`
}

/** Names the tripped limit, its setting, the reading and the limit. */
export function describeOverload (limit: string, value: number | undefined, config: FlowConfig): Overload {
  const reading = value === undefined || !Number.isFinite(value) ? null : value
  const over = (what: string, setting: string, max: number, show: (n: number) => string): Overload => ({
    limit,
    setting,
    value: reading,
    max,
    message: `overloaded: ${what} ${reading === null ? 'unknown' : show(reading)} is over ${setting} (${show(max)})`
  })
  switch (limit) {
    case 'eventLoopDelay':
      return over('event-loop delay', 'FLOW_MAX_EVENT_LOOP_DELAY_MS', config.maxEventLoopDelayMs, (n) => `${Math.round(n)} ms`)
    case 'eventLoopUtilization':
      return over('event-loop utilisation', 'FLOW_MAX_EVENT_LOOP_UTILIZATION', config.maxEventLoopUtilization, (n) => n.toFixed(2))
    case 'heapUsedBytes':
      return over('heap used', 'FLOW_MAX_HEAP_USED_BYTES', config.maxHeapUsedBytes, bytes)
    case 'rssBytes':
      return over('RSS', 'FLOW_MAX_RSS_BYTES', config.maxRssBytes, bytes)
    default:
      return { limit, setting: limit, value: reading, max: null, message: `overloaded: ${limit}` }
  }
}

/** Seconds a shed request is told to wait (`retry-after`): under-pressure's default. */
const RETRY_AFTER_SECONDS = 10

/**
 * Route config that exempts a route from load shedding (under-pressure
 * calls a route's own `pressureHandler` instead of its global one): the
 * route runs, with the tripped limit in `request.flowOverload`. For what
 * must stay up under load: /health, /ws/stats and /metrics.
 */
export const EXEMPT_FROM_SHEDDING = {
  pressureHandler (request: FastifyRequest, _reply: FastifyReply, type: string, value: number | undefined): void {
    request.flowOverload = describeOverload(type, value, request.server.flowConfig.config)
  }
}

const port = {
  type: 'object',
  properties: {
    adapter: { type: 'string', description: '`redis` or `memory`' },
    circuit: { type: ['string', 'null'], description: 'the Redis circuit: `closed`, `open`, `half-open`; null on memory' },
    since: { type: ['number', 'null'], description: 'when the circuit last changed, ms since the Unix epoch' },
    serving: { type: 'string', description: 'what serves the calls now: `redis`, or `memory` (the fallback)' }
  }
}

/** The report /health answers with. */
const report = {
  status: { type: 'string', description: '`ok`; `degraded`: a Redis port serves from its memory fallback; `overloaded` (503): over a load limit' },
  instanceId: { type: 'string' },
  uptime: { type: 'number', description: 'seconds since start' },
  auth: { type: 'string', description: '`jwt`, `hook` or `open`' },
  ports: { type: 'object', description: 'each port\'s adapter and circuit', properties: { sessions: port, broadcaster: port, log: port } },
  redis: {
    type: 'object',
    description: 'Redis\' state and its own memory figures at the last read (null until read)',
    properties: {
      configured: { type: 'boolean' },
      connected: { type: ['boolean', 'null'] },
      maxmemoryPolicy: { type: ['string', 'null'] },
      usedMemory: { type: ['number', 'null'] },
      maxMemory: { type: ['number', 'null'] },
      memoryRatio: { type: ['number', 'null'] },
      refused: { type: ['string', 'null'], description: 'why a Redis that answers is not used' },
      lastError: { type: ['string', 'null'], description: 'why Redis is unreachable' },
      primary: { type: ['string', 'null'], description: 'with REDIS_SENTINELS only: the primary in use (`host:port`), null while none is connected' }
    }
  },
  seqScope: { type: 'string', description: '`cluster` or `instance`' },
  warnings: { type: 'array', items: { type: 'string' }, description: 'what is worth a look' },
  draining: { type: 'boolean', description: 'true while shutting down' }
}

/**
 * `/health`, and load shedding through @fastify/under-pressure: over a load
 * limit (memory, event loop) every Flow route and WebSocket upgrade answers
 * 503 with Flow's error body naming the limit, except /health, /ws/stats
 * and /metrics (EXEMPT_FROM_SHEDDING): those stay up, so an overloaded
 * instance can still be seen. /health then answers 503 with its full report,
 * `status: "overloaded"` and the limit, so a balancer still takes the
 * instance out. Flow's own route, not under-pressure's status route, whose
 * 503 is a bare error without the report.
 */
async function healthPlugin (fastify: FastifyInstance): Promise<void> {
  const { config, instanceId, startedAt } = fastify.flowConfig
  const hub = fastify.flowHub
  guardEviction(fastify, config)

  const read = (): Record<string, unknown> => {
    const ports = fastify.flowPorts.reports()
    const redisPorts = Object.values(ports).filter((p) => p.adapter === 'redis')
    const degraded = redisPorts.some((p) => p.circuit !== 'closed')
    const sharedLog = ports.log.adapter === 'redis'
    const seqScope = sharedLog ? 'cluster' : 'instance'
    const memory = fastify.flowRedis?.memory ?? null
    const policy = memory?.policy ?? null
    const refused = fastify.flowPorts.health?.refusal?.message ?? null
    const warnings: string[] = []
    if (refused !== null) warnings.push(`the Redis ports serve from memory: ${refused}`)
    else if (evicts(policy)) warnings.push(`Redis maxmemory-policy is ${String(policy)}: it may evict Flow's keys (use noeviction)`)
    if (memory !== null && memory.ratio !== null && memory.ratio > config.redisMemoryWarnRatio) {
      warnings.push(`Redis memory is at ${Math.round(memory.ratio * 100)}% of maxmemory (over FLOW_REDIS_MEMORY_WARN_RATIO ` +
        `${config.redisMemoryWarnRatio}): at maxmemory Redis refuses writes (OOM) and every instance falls back to memory`)
    }
    if (!sharedLog && ports.broadcaster.adapter === 'redis') warnings.push('seqs are per instance: the op log is not shared (USE_REDIS_EVENT_ORDERING=false)')
    if (sharedLog && ports.broadcaster.adapter !== 'redis') warnings.push('ops of other instances reach members only on sync or when a gap shows (USE_REDIS_WEBSOCKETS=false)')
    if (fastify.flowAuth.mode === 'open') warnings.push('authentication is off')
    return {
      status: degraded ? 'degraded' : 'ok',
      instanceId,
      uptime: Math.round((Date.now() - startedAt) / 1000),
      auth: fastify.flowAuth.mode,
      ports,
      redis: {
        configured: redisPorts.length > 0,
        connected: redisPorts.length > 0 ? !degraded : null,
        maxmemoryPolicy: policy,
        usedMemory: memory?.usedMemory ?? null,
        maxMemory: memory?.maxMemory ?? null,
        memoryRatio: memory?.ratio ?? null,
        refused,
        lastError: fastify.flowRedis?.lastError ?? null,
        ...(fastify.flowRedis?.primary === undefined ? {} : { primary: fastify.flowRedis.primary() })
      },
      seqScope,
      warnings,
      draining: hub.draining
    }
  }

  fastify.decorateRequest('flowOverload', null)
  await fastify.register(underPressure, {
    maxEventLoopDelay: config.maxEventLoopDelayMs,
    maxEventLoopUtilization: config.maxEventLoopUtilization,
    maxHeapUsedBytes: config.maxHeapUsedBytes,
    maxRssBytes: config.maxRssBytes,
    sampleInterval: 1000,
    // Utilisation over the last sample, not since boot.
    eventLoopUtilizationMode: 'interval',
    // Thrown, so Flow's error handler answers with Flow's body; a WebSocket upgrade gets it too.
    async pressureHandler (_request, reply, type, value) {
      void reply.header('retry-after', RETRY_AFTER_SECONDS)
      throw new UnavailableError(`${describeOverload(type, value, config).message}; retry later`)
    }
  })

  fastify.get('/health', {
    logLevel: 'warn',
    config: EXEMPT_FROM_SHEDDING,
    schema: {
      tags: ['operations'],
      summary: 'Whether this instance can serve, and on what',
      description: 'Each port\'s adapter and circuit, Redis\' state and memory, warnings (docs/operations.md, ' +
        'Health). Never shed: over a load limit it answers 503 with the same report and the limit, so point the ' +
        'balancer\'s health check here.',
      response: {
        200: { type: 'object', description: 'the instance can serve (`ok` or `degraded`)', properties: report },
        500: errorResponse('a bug (`internal`)'),
        503: {
          type: 'object',
          description: 'over a load limit (`status: "overloaded"`): the error body, naming the limit, and the report',
          properties: {
            ...errorSchema.properties,
            ...report,
            overload: {
              type: 'object',
              description: 'the limit that tripped',
              properties: {
                limit: { type: 'string', description: '`eventLoopDelay`, `eventLoopUtilization`, `heapUsedBytes` or `rssBytes`' },
                setting: { type: 'string', description: 'the setting that holds it, e.g. `FLOW_MAX_HEAP_USED_BYTES`' },
                value: { type: ['number', 'null'], description: 'the reading (ms, a 0 to 1 ratio, or bytes)' },
                max: { type: ['number', 'null'], description: 'the limit, same unit' }
              }
            }
          }
        }
      }
    }
  }, async (request, reply) => {
    const overload = request.flowOverload
    if (overload === null) return read()
    void reply.code(503).header('retry-after', RETRY_AFTER_SECONDS)
    return { ...errorBody(503, 'unavailable', overload.message), ...read(), status: 'overloaded', overload }
  })
}

export default fp(healthPlugin, { name: 'flow-health', fastify: '5.x', dependencies: ['flow-config', 'flow-redis', 'flow-ports', 'flow-hub', 'flow-auth'] })
