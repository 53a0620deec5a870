import fp from 'fastify-plugin'
import underPressure from '@fastify/under-pressure'
import type { FastifyInstance } from 'fastify'

const port = {
  type: 'object',
  properties: {
    adapter: { type: 'string' },
    circuit: { type: ['string', 'null'] },
    since: { type: ['number', 'null'] },
    serving: { type: 'string' }
  }
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

  const report = async (): Promise<Record<string, unknown>> => {
    const ports = fastify.flowPorts.reports()
    const redisPorts = Object.values(ports).filter((p) => p.adapter === 'redis')
    const degraded = redisPorts.some((p) => p.circuit !== 'closed')
    const sharedLog = ports.log.adapter === 'redis'
    const seqScope = sharedLog ? 'cluster' : (ports.broadcaster.adapter === 'redis' ? 'instance' : 'cluster')
    const memory = fastify.flowRedis?.memory ?? null
    const policy = memory?.policy ?? null
    const warnings: string[] = []
    if (policy?.startsWith('allkeys-') === true) warnings.push(`Redis maxmemory-policy is ${policy}: it may evict the op log (use noeviction)`)
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
