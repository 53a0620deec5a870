import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { LoopMonitor } from '../lib/loop-monitor.js'
import type { StatsSources } from './stats.js'

/** One app's /metrics: its registry, and how to let go of it. */
export interface FlowMetrics {
  readonly registry: Registry
  /** stops feeding the latency histogram and empties the registry */
  close (): void
}

/**
 * Flow's `flow_*` figures as prom-client metrics, then prom-client's default
 * process and Node.js metrics, in a registry of this app's own: never the
 * global one, so several apps in one process do not collide. Each value is
 * read when the registry is scraped, from the sources /ws/stats reads; the
 * delivery latency histogram alone is fed as ops are delivered, from
 * `stats.deliveryLatency`, because a prom-client histogram can only observe.
 * A helper of the flow-stats plugin, not a plugin.
 */
export function createFlowMetrics (flow: StatsSources, loop: LoopMonitor): FlowMetrics {
  const { stats } = flow
  const registry = new Registry()
  // `registers: []` keeps every metric out of prom-client's global registry.
  const gauge = (name: string, help: string, read: () => number): void => {
    registry.registerMetric(new Gauge({ name, help, registers: [], collect () { this.set(read()) } }))
  }
  // A counter mirrors a figure the hub keeps: reset, then add the figure.
  const counter = (name: string, help: string, read: () => number): void => {
    registry.registerMetric(new Counter({
      name,
      help,
      registers: [],
      collect () {
        this.reset()
        this.inc(read())
      }
    }))
  }
  const counterBy = (name: string, help: string, label: string, read: () => Readonly<Record<string, number>>): void => {
    registry.registerMetric(new Counter({
      name,
      help,
      labelNames: [label],
      registers: [],
      collect () {
        this.reset()
        for (const [value, count] of Object.entries(read())) this.inc({ [label]: value }, count)
      }
    }))
  }

  registry.registerMetric(new Gauge({
    name: 'flow_up',
    help: 'Instance information',
    labelNames: ['instance'],
    registers: [],
    collect () { this.set({ instance: flow.instanceId }, 1) }
  }))
  gauge('flow_connections', 'Open WebSocket connections', () => flow.hub.connectionCount)
  gauge('flow_projects', 'Projects with members on this instance', () => flow.hub.projectCount)
  gauge('flow_sessions', 'Sessions on this instance', () => flow.hub.sessionCount)
  counter('flow_frames_in_total', 'Frames received', () => stats.framesIn)
  counterBy('flow_frames_in_by_type_total', 'Valid frames received by type', 'type', () => stats.framesInByType)
  counter('flow_frames_out_total', 'Frames sent', () => stats.framesOut)
  counter('flow_frames_rejected_total', 'Frames answered with bad_request or unknown_type', () => stats.framesRejected)
  counter('flow_rate_limited_total', 'Frames dropped by the rate limit', () => stats.rateLimited)
  counter('flow_writes_paused_total', 'Times a connection was not read or an HTTP write refused: its identity sent past FLOW_IDENTITY_WRITE_BYTES_PER_SECOND', () => stats.writesPaused)
  counter('flow_reads_deferred_total', 'Times a replay waited or an HTTP read was refused: its identity was past FLOW_IDENTITY_READ_BYTES_PER_SECOND', () => stats.readsDeferred)
  counterBy('flow_errors_total', 'Error frames sent by code', 'code', () => stats.errorsSent)
  counter('flow_ops_appended_total', 'Ops appended to the op log', () => stats.opsAppended)
  counter('flow_ops_duplicate_total', 'Ops answered from idempotency', () => stats.opsDuplicate)
  counter('flow_ops_shed_total', 'Ops refused because too many were waiting for the op log', () => stats.opsShed)
  gauge('flow_ops_in_flight', 'Ops waiting for the op log', () => flow.hub.opsInFlight)
  gauge('flow_memory_history_bytes', 'Bytes of history the memory op log in use holds (memory mode, or the fallback of an outage)',
    () => flow.memoryHistory()?.bytes ?? 0)
  gauge('flow_memory_history_projects', 'Projects the memory op log in use holds', () => flow.memoryHistory()?.projects ?? 0)
  counter('flow_broadcasts_published_total', 'Messages published to other instances', () => stats.broadcastsPublished)
  counter('flow_broadcasts_received_total', 'Messages received from other instances', () => stats.broadcastsReceived)
  counter('flow_broadcast_errors_total', 'Publishes that failed', () => stats.broadcastErrors)
  counter('flow_fallbacks_total', 'Ports that switched to their memory fallback', () => stats.fallbacks)
  counter('flow_recoveries_total', 'Ports that switched back to Redis', () => stats.recoveries)
  counter('flow_log_fences_total', 'Op logs found below seqs this instance saw (Redis lost acked ops), moved to a new epoch', () => stats.logFences)
  counter('flow_degraded_seconds_total', 'Time spent serving from the memory fallback', () => (flow.breaker?.degradedMs ?? 0) / 1000)
  gauge('flow_circuit_open', '1 while the Redis circuit is not closed', () => flow.breaker !== null && flow.breaker.state !== 'closed' ? 1 : 0)
  counter('flow_slow_consumers_closed_total', 'Connections closed for not reading', () => stats.slowConsumersClosed)
  counter('flow_connections_opened_total', 'Connections opened', () => stats.connectionsOpened)
  counterBy('flow_port_errors_total', 'Failed port calls (Redis command errors and timeouts) by port', 'port', () => stats.portErrors)
  const { redisMemory } = flow
  if (redisMemory !== undefined) {
    // Read every FLOW_HEALTH_CHECK_INTERVAL_MS (0 until the first read); alert on their ratio.
    gauge('flow_redis_used_memory_bytes', 'Memory Redis uses (INFO memory used_memory) at the last read', () => redisMemory()?.usedMemory ?? 0)
    gauge('flow_redis_maxmemory_bytes', 'Redis maxmemory at the last read (0: no limit)', () => redisMemory()?.maxMemory ?? 0)
  }
  gauge('flow_eventloop_delay_p99_seconds', 'Event-loop delay p99 over the last window', () => loop.current.p99 / 1000)
  gauge('flow_eventloop_utilization', 'Event-loop utilisation over the last window', () => loop.current.utilization)

  const { deliveryLatency } = stats
  const latency = new Histogram({
    name: 'flow_delivery_latency_seconds',
    help: 'Time from an op\'s acceptance to its delivery on this instance',
    buckets: deliveryLatency.bounds.map((ms) => ms / 1000),
    registers: []
  })
  registry.registerMetric(latency)
  // prom-client throws on a value that is not a finite number; the hub,
  // delivering the op, must not see that.
  const unsubscribe = deliveryLatency.subscribe((ms) => { if (Number.isFinite(ms)) latency.observe(ms / 1000) })

  collectDefaultMetrics({ register: registry })
  return {
    registry,
    close () {
      unsubscribe()
      registry.clear()
    }
  }
}
