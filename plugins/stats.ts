import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { LoopMonitor } from '../lib/loop-monitor.js'
import type { CircuitBreaker } from '../lib/breaker.js'
import type { Hub } from '../lib/hub/hub.js'
import type { Stats } from '../lib/stats.js'
import type { PortReport } from './ports.js'
import type { RedisMemory } from './redis.js'
import { createFlowMetrics } from './metrics.js'
import { errorResponse } from './errors.js'
import { EXEMPT_FROM_SHEDDING } from './health.js'

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
    budgets: { writesPaused: stats.writesPaused, readsDeferred: stats.readsDeferred },
    fallbacks: stats.fallbacks,
    recoveries: stats.recoveries,
    logFences: stats.logFences,
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

/** An object of counts (`{ "join": 3 }`), for the schema of /ws/stats. */
const counts = { type: 'object', additionalProperties: { type: 'number' } }

/** An object whose properties are documented, and whose others are passed through as they are. */
function open (description: string, properties: Record<string, object>): object {
  return { type: 'object', description, additionalProperties: true, properties }
}

const number = (description: string): object => ({ type: 'number', description })

/**
 * /ws/stats' schema: documented field by field, and open (any field
 * `snapshot` adds is answered even before it is documented here).
 */
const statsSchema = {
  tags: ['operations'],
  summary: 'This instance\'s figures, as JSON',
  description: 'Connections, projects, sessions, frames, ops, broadcasts, fallbacks, memory and event loop of ' +
    'this instance (docs/operations.md, Stats and metrics).',
  response: {
    200: open('the figures', {
      instanceId: { type: 'string' },
      uptimeSeconds: number('seconds since start'),
      connections: number('open WebSocket connections'),
      projects: number('projects with members on this instance'),
      sessions: number('sessions on this instance'),
      frames: open('frames received and sent', {
        in: number('frames received'),
        out: number('frames sent'),
        rejected: number('frames answered with bad_request or unknown_type'),
        rateLimited: number('frames dropped by the rate limit'),
        inByType: { ...counts, description: 'valid frames received, by type' }
      }),
      ops: open('ops', {
        appended: number('ops appended to the op log'),
        duplicate: number('ops answered from idempotency'),
        shed: number('ops refused because too many were waiting for the op log'),
        inFlight: number('ops waiting for the op log now')
      }),
      budgets: open('identities past their byte budgets', {
        writesPaused: number('times a connection was not read for a while: its identity sent past ' +
          'FLOW_IDENTITY_WRITE_BYTES_PER_SECOND (HTTP writes refused for it count too)'),
        readsDeferred: number('times a replay waited or an HTTP read was refused: its identity was past ' +
          'FLOW_IDENTITY_READ_BYTES_PER_SECOND')
      }),
      history: {
        type: ['object', 'null'],
        description: 'what the memory op log in use holds; null when none',
        properties: { bytes: { type: 'number' }, projects: { type: 'number' } }
      },
      broadcasts: open('messages to and from other instances', {
        published: number('published'),
        received: number('received'),
        errors: number('publishes that failed')
      }),
      fallbacks: number('ports that switched to their memory fallback'),
      recoveries: number('ports that switched back to Redis'),
      logFences: number('op logs found below seqs this instance saw (Redis lost acked ops) and moved to a new epoch'),
      degradedMs: number('time spent serving from the memory fallback, ms'),
      circuit: { type: ['string', 'null'], description: 'the Redis circuit; null when no port is on Redis' },
      errors: { ...counts, description: 'error frames sent, by code' },
      connectionsOpened: number('connections opened since start'),
      connectionsClosed: number('connections closed since start'),
      slowConsumersClosed: number('connections closed for not reading'),
      adapters: open('the adapter of each port', {
        sessions: { type: 'string' }, broadcaster: { type: 'string' }, log: { type: 'string' }
      }),
      memory: open('process.memoryUsage(), bytes', {
        rss: { type: 'number' }, heapUsed: { type: 'number' }, heapTotal: { type: 'number' }, external: { type: 'number' }
      }),
      eventLoop: open('over the last window', {
        delayMs: open('event-loop delay, ms', { p50: { type: 'number' }, p99: { type: 'number' }, max: { type: 'number' } }),
        utilization: number('event-loop utilisation, 0 to 1')
      })
    }),
    500: errorResponse('a bug (`internal`)')
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
  fastify.get('/ws/stats', { logLevel: 'warn', config: EXEMPT_FROM_SHEDDING, schema: statsSchema }, async () => snapshot(sources, loop))
  fastify.get('/metrics', {
    logLevel: 'warn',
    config: EXEMPT_FROM_SHEDDING,
    schema: {
      tags: ['operations'],
      summary: 'Prometheus metrics',
      description: 'Flow\'s `flow_*` figures and prom-client\'s default process and Node.js metrics, in the ' +
        'Prometheus text format (docs/operations.md, Stats and metrics).',
      response: {
        200: {
          description: 'the metrics, Prometheus text format',
          content: { [metrics.registry.contentType]: { schema: { type: 'string' } } }
        },
        500: errorResponse('a bug (`internal`)')
      }
    }
  }, async (_request, reply) => {
    void reply.type(metrics.registry.contentType)
    return await metrics.registry.metrics()
  })
}

export default fp(statsPlugin, { name: 'flow-stats', fastify: '5.x', dependencies: ['flow-config', 'flow-redis', 'flow-ports', 'flow-hub'] })
