import fp from 'fastify-plugin'
import { monitorEventLoopDelay, performance, type EventLoopUtilization } from 'node:perf_hooks'
import type { FastifyInstance } from 'fastify'
import { Registry, collectDefaultMetrics } from 'prom-client'
import type { Flow } from './config.js'

/** Event-loop delay and utilisation over the last sampling window. */
class LoopMonitor {
  readonly #histogram = monitorEventLoopDelay({ resolution: 10 })
  #elu: EventLoopUtilization = performance.eventLoopUtilization()
  #last = { p50: 0, p99: 0, max: 0, utilization: 0 }
  readonly #timer: NodeJS.Timeout

  constructor (windowMs: number) {
    this.#histogram.enable()
    this.#timer = setInterval(() => { this.#sample() }, windowMs)
    this.#timer.unref()
  }

  #sample (): void {
    const h = this.#histogram
    const elu = performance.eventLoopUtilization(this.#elu)
    this.#elu = performance.eventLoopUtilization()
    this.#last = {
      p50: h.percentile(50) / 1e6,
      p99: h.percentile(99) / 1e6,
      max: h.max / 1e6,
      utilization: elu.utilization
    }
    h.reset()
  }

  get current (): { p50: number, p99: number, max: number, utilization: number } {
    return this.#last
  }

  close (): void {
    clearInterval(this.#timer)
    this.#histogram.disable()
  }
}

/** The figures of /ws/stats, as plain JSON. */
export function snapshot (flow: Flow, loop: LoopMonitor): Record<string, unknown> {
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

function metric (lines: string[], name: string, type: 'counter' | 'gauge', help: string, value: number | Record<string, number>, label = 'type'): void {
  lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
  if (typeof value === 'number') lines.push(`${name} ${value}`)
  else for (const [k, v] of Object.entries(value)) lines.push(`${name}{${label}="${k}"} ${v}`)
}

/** The same figures in Prometheus text format. */
export function prometheus (flow: Flow, loop: LoopMonitor): string {
  const { stats, hub } = flow
  const lines: string[] = []
  metric(lines, 'flow_up', 'gauge', 'Instance information', { [flow.instanceId]: 1 }, 'instance')
  metric(lines, 'flow_connections', 'gauge', 'Open WebSocket connections', hub.connectionCount)
  metric(lines, 'flow_projects', 'gauge', 'Projects with members on this instance', hub.projectCount)
  metric(lines, 'flow_sessions', 'gauge', 'Sessions on this instance', hub.sessionCount)
  metric(lines, 'flow_frames_in_total', 'counter', 'Frames received', stats.framesIn)
  metric(lines, 'flow_frames_in_by_type_total', 'counter', 'Valid frames received by type', stats.framesInByType)
  metric(lines, 'flow_frames_out_total', 'counter', 'Frames sent', stats.framesOut)
  metric(lines, 'flow_frames_rejected_total', 'counter', 'Frames answered with bad_request or unknown_type', stats.framesRejected)
  metric(lines, 'flow_rate_limited_total', 'counter', 'Frames dropped by the rate limit', stats.rateLimited)
  metric(lines, 'flow_errors_total', 'counter', 'Error frames sent by code', stats.errorsSent, 'code')
  metric(lines, 'flow_ops_appended_total', 'counter', 'Ops appended to the op log', stats.opsAppended)
  metric(lines, 'flow_ops_duplicate_total', 'counter', 'Ops answered from idempotency', stats.opsDuplicate)
  metric(lines, 'flow_ops_shed_total', 'counter', 'Ops refused because too many were waiting for the op log', stats.opsShed)
  metric(lines, 'flow_ops_in_flight', 'gauge', 'Ops waiting for the op log', hub.opsInFlight)
  metric(lines, 'flow_broadcasts_published_total', 'counter', 'Messages published to other instances', stats.broadcastsPublished)
  metric(lines, 'flow_broadcasts_received_total', 'counter', 'Messages received from other instances', stats.broadcastsReceived)
  metric(lines, 'flow_broadcast_errors_total', 'counter', 'Publishes that failed', stats.broadcastErrors)
  metric(lines, 'flow_fallbacks_total', 'counter', 'Ports that switched to their memory fallback', stats.fallbacks)
  metric(lines, 'flow_recoveries_total', 'counter', 'Ports that switched back to Redis', stats.recoveries)
  metric(lines, 'flow_degraded_seconds_total', 'counter', 'Time spent serving from the memory fallback', (flow.breaker?.degradedMs ?? 0) / 1000)
  metric(lines, 'flow_circuit_open', 'gauge', '1 while the Redis circuit is not closed', flow.breaker !== null && flow.breaker.state !== 'closed' ? 1 : 0)
  metric(lines, 'flow_slow_consumers_closed_total', 'counter', 'Connections closed for not reading', stats.slowConsumersClosed)
  metric(lines, 'flow_connections_opened_total', 'counter', 'Connections opened', stats.connectionsOpened)
  metric(lines, 'flow_port_errors_total', 'counter', 'Failed port calls (Redis command errors and timeouts) by port', stats.portErrors, 'port')
  metric(lines, 'flow_eventloop_delay_p99_seconds', 'gauge', 'Event-loop delay p99 over the last window', loop.current.p99 / 1000)
  metric(lines, 'flow_eventloop_utilization', 'gauge', 'Event-loop utilisation over the last window', loop.current.utilization)
  const h = stats.deliveryLatency
  lines.push('# HELP flow_delivery_latency_seconds Time from an op\'s acceptance to its delivery on this instance', '# TYPE flow_delivery_latency_seconds histogram')
  let cumulative = 0
  h.bounds.forEach((bound, i) => {
    cumulative += h.counts[i] as number
    lines.push(`flow_delivery_latency_seconds_bucket{le="${bound / 1000}"} ${cumulative}`)
  })
  lines.push(`flow_delivery_latency_seconds_bucket{le="+Inf"} ${h.count}`, `flow_delivery_latency_seconds_sum ${h.sum / 1000}`, `flow_delivery_latency_seconds_count ${h.count}`)
  return lines.join('\n') + '\n'
}

/**
 * `/ws/stats` (JSON for humans) and `/metrics` (Prometheus: Flow's figures
 * plus prom-client's default process and Node.js metrics, from a registry
 * of this app's own, so several apps in one process do not collide).
 */
async function statsPlugin (fastify: FastifyInstance): Promise<void> {
  const loop = new LoopMonitor(5000)
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  fastify.addHook('onClose', async () => {
    loop.close()
    registry.clear()
  })
  fastify.get('/ws/stats', { logLevel: 'warn' }, async () => snapshot(fastify.flow, loop))
  fastify.get('/metrics', { logLevel: 'warn' }, async (_request, reply) => {
    void reply.type(registry.contentType)
    return prometheus(fastify.flow, loop) + await registry.metrics()
  })
}

export default fp(statsPlugin, { name: 'flow-stats', fastify: '5.x', dependencies: ['flow-hub'] })
