import fp from 'fastify-plugin'
import underPressure from '@fastify/under-pressure'
import type { FastifyInstance } from 'fastify'
import type { FlowConfig } from '../lib/config.js'
import { ConfigError } from '../lib/errors.js'
import { errorResponse } from './errors.js'

const port = {
  type: 'object',
  properties: {
    adapter: { type: 'string' },
    circuit: { type: ['string', 'null'] },
    since: { type: ['number', 'null'] },
    serving: { type: 'string' }
  }
}

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

/**
 * `/health` and load shedding through @fastify/under-pressure: the route
 * answers 200 with each port's adapter and circuit state, 503 when the
 * process is over its memory or event-loop limits (then every Flow route
 * answers 503, and WebSocket upgrades are refused).
 */
async function healthPlugin (fastify: FastifyInstance): Promise<void> {
  const { config, instanceId, startedAt } = fastify.flowConfig
  const hub = fastify.flowHub
  guardEviction(fastify, config)

  const report = async (): Promise<Record<string, unknown>> => {
    const ports = fastify.flowPorts.reports()
    const redisPorts = Object.values(ports).filter((p) => p.adapter === 'redis')
    const degraded = redisPorts.some((p) => p.circuit !== 'closed')
    const sharedLog = ports.log.adapter === 'redis'
    const seqScope = sharedLog ? 'cluster' : (ports.broadcaster.adapter === 'redis' ? 'instance' : 'cluster')
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
    if (seqScope === 'instance') warnings.push('seqs are per instance: the op log is not shared (USE_REDIS_EVENT_ORDERING=false)')
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
        lastError: fastify.flowRedis?.lastError ?? null
      },
      seqScope,
      warnings,
      draining: hub.draining
    }
  }

  await fastify.register(underPressure, {
    maxEventLoopDelay: config.maxEventLoopDelayMs,
    maxEventLoopUtilization: config.maxEventLoopUtilization,
    maxHeapUsedBytes: config.maxHeapUsedBytes,
    maxRssBytes: config.maxRssBytes,
    sampleInterval: 1000,
    healthCheckInterval: config.healthCheckIntervalMs,
    // Ours never fails: a degraded port is still a working server.
    healthCheck: report,
    exposeStatusRoute: {
      url: '/health',
      routeOpts: { logLevel: 'warn' },
      routeSchemaOpts: {
        tags: ['operations'],
        summary: 'Whether this instance can serve, and on what',
        description: 'Each port\'s adapter and circuit, Redis\' state and memory, warnings (docs/operations.md, ' +
          'Health). 503 while the process is over a load limit: point the balancer\'s health check here.',
        response: {
          500: errorResponse('a bug (`internal`)'),
          503: errorResponse('the process is over a load limit (`unavailable`)')
        }
      },
      routeResponseSchemaOpts: {
        instanceId: { type: 'string' },
        uptime: { type: 'number' },
        auth: { type: 'string' },
        ports: { type: 'object', properties: { sessions: port, broadcaster: port, log: port } },
        redis: {
          type: 'object',
          properties: {
            configured: { type: 'boolean' },
            connected: { type: ['boolean', 'null'] },
            maxmemoryPolicy: { type: ['string', 'null'] },
            usedMemory: { type: ['number', 'null'] },
            maxMemory: { type: ['number', 'null'] },
            memoryRatio: { type: ['number', 'null'] },
            refused: { type: ['string', 'null'] },
            lastError: { type: ['string', 'null'] }
          }
        },
        seqScope: { type: 'string' },
        warnings: { type: 'array', items: { type: 'string' } },
        draining: { type: 'boolean' }
      }
    }
  })
}

export default fp(healthPlugin, { name: 'flow-health', fastify: '5.x', dependencies: ['flow-config', 'flow-redis', 'flow-ports', 'flow-hub', 'flow-auth'] })
