import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { LoopMonitor } from '../lib/loop-monitor.js'
import type { CircuitBreaker } from '../lib/breaker.js'
import type { Hub } from '../lib/hub/hub.js'
import type { Stats } from '../lib/stats.js'
import type { PortReport } from './ports.js'
import type { RedisMemory } from './redis.js'
import { createFlowMetrics } from './metrics.js'

/** What /ws/stats and /metrics read. */
export interface StatsSources {
  readonly instanceId: string
  readonly startedAt: number
  readonly stats: Stats
  readonly hub: Hub
  /** the Redis connection's breaker; null when no port is on Redis */
  readonly breaker: CircuitBreaker | null
  readonly portReports: () => Readonly<Record<'sessions' | 'broadcaster' | 'log', PortReport>>
  /** what the memory op log in use holds; null when none */
  readonly memoryHistory: () => { readonly bytes: number, readonly projects: number } | null
  /** Redis' memory at the last read (null until read); absent when no port is on Redis */
  readonly redisMemory?: () => RedisMemory | null
}

/** The figures of /ws/stats, as plain JSON. */
export function snapshot (flow: StatsSources, loop: LoopMonitor): Record<string, unknown> {
  const { stats, hub } = flow
  const mem = process.memoryUsage()
  const ports = flow.portReports()
  return {
    instanceId: flow.instanceId,
    uptimeSeconds: Math.round((Date.now() - flow.startedAt) / 1000),
    connections: hub.connectionCount,
    projects: hub.projectCount,
    sessions: hub.sessionCount,
    frames: { in: stats.framesIn, out: stats.framesOut, rejected: stats.framesRejected, rateLimited: stats.rateLimited, inByType: stats.framesInByType },
    ops: { appended: stats.opsAppended, duplicate: stats.opsDuplicate, shed: stats.opsShed, inFlight: hub.opsInFlight },
    history: flow.memoryHistory(),
    broadcasts: { published: stats.broadcastsPublished, received: stats.broadcastsReceived, errors: stats.broadcastErrors },
    fallbacks: stats.fallbacks,
    recoveries: stats.recoveries,
    degradedMs: flow.breaker?.degradedMs ?? 0,
    circuit: flow.breaker?.state ?? null,
    errors: stats.errorsSent,
    connectionsOpened: stats.connectionsOpened,
    connectionsClosed: stats.connectionsClosed,
    slowConsumersClosed: stats.slowConsumersClosed,
    adapters: { sessions: ports.sessions.adapter, broadcaster: ports.broadcaster.adapter, log: ports.log.adapter },
    memory: { rss: mem.rss, heapUsed: mem.heapUsed, heapTotal: mem.heapTotal, external: mem.external },
    eventLoop: { delayMs: { p50: loop.current.p50, p99: loop.current.p99, max: loop.current.max }, utilization: loop.current.utilization }
  }
}

/**
 * `/ws/stats` (JSON for humans) and `/metrics` (Prometheus: Flow's figures
 * plus prom-client's default process and Node.js metrics, from a registry
 * of this app's own, so several apps in one process do not collide).
 */
async function statsPlugin (fastify: FastifyInstance): Promise<void> {
  const { instanceId, startedAt, stats } = fastify.flowConfig
  const { health, reports, memoryHistory } = fastify.flowPorts
  const redis = fastify.flowRedis
  const sources: StatsSources = {
    instanceId,
    startedAt,
    stats,
    hub: fastify.flowHub,
    breaker: health?.breaker ?? null,
    portReports: reports,
    memoryHistory,
    ...(redis === null ? {} : { redisMemory: () => redis.memory })
  }
  const loop = new LoopMonitor(5000)
  const metrics = createFlowMetrics(sources, loop)
  fastify.addHook('onClose', async () => {
    loop.close()
    metrics.close()
  })
  fastify.get('/ws/stats', { logLevel: 'warn' }, async () => snapshot(sources, loop))
  fastify.get('/metrics', { logLevel: 'warn' }, async (_request, reply) => {
    void reply.type(metrics.registry.contentType)
    return await metrics.registry.metrics()
  })
}

export default fp(statsPlugin, { name: 'flow-stats', fastify: '5.x', dependencies: ['flow-config', 'flow-redis', 'flow-ports', 'flow-hub'] })
