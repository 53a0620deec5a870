import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { HubPorts } from '../lib/hub/hub.js'
import { noSnapshots } from '../lib/hub/snapshots.js'
import { createMemoryBroadcaster } from '../adapters/memory/broadcaster.js'
import { createMemoryOperationLog, type MemoryOperationLog } from '../adapters/memory/operation-log.js'
import { createMemorySessionStore } from '../adapters/memory/session-store.js'
import { createMemorySnapshotStore } from '../adapters/memory/snapshot-store.js'
import { createRedisBroadcaster } from '../adapters/redis/broadcaster.js'
import { createRedisOperationLog, type Fence } from '../adapters/redis/operation-log.js'
import { LogWatermarks } from '../adapters/redis/watermarks.js'
import { createRedisSessionStore } from '../adapters/redis/session-store.js'
import { createRedisSnapshotStore } from '../adapters/redis/snapshot-store.js'
import { ConnectionHealth, isRedisOutage } from '../adapters/redis/connection-health.js'
import { createFailoverPorts, type FailoverPorts } from '../adapters/failover/index.js'

/** `custom`: an adapter the host app passed in */
export type AdapterName = 'memory' | 'redis' | 'custom'

/** What each port runs on, for /health. */
export interface PortReport {
  readonly adapter: AdapterName
  /** circuit state of a Redis adapter's breaker; null on memory */
  readonly circuit: 'closed' | 'open' | 'half-open' | null
  readonly since: number | null
  /** what serves it now: a Redis port serves from memory while its circuit is not closed */
  readonly serving: 'memory' | 'redis' | 'custom'
}

/** The ports, and how they stand. */
export interface FlowPorts {
  readonly ports: HubPorts
  readonly reports: () => Readonly<Record<keyof HubPorts, PortReport>>
  /** what the memory op log in use holds (memory mode, or the fallback of an outage); null when none was made */
  readonly memoryHistory: () => { readonly bytes: number, readonly projects: number } | null
  /** the Redis connection's health (breaker, watchdogs); null when no port is on Redis */
  readonly health: ConnectionHealth | null
  /** the failover decorators of the Redis ports; null when no port is on Redis */
  readonly failover: FailoverPorts | null
}

declare module 'fastify' {
  interface FastifyInstance {
    /** set by flow-ports */
    flowPorts: FlowPorts
  }
}

export interface PortsPluginOptions {
  /** adapters handed in by the host app or a test; never closed by the plugin */
  readonly ports?: Partial<HubPorts>
}

/**
 * Picks an adapter for each port from its flag (USE_REDIS_COLLABORATION,
 * USE_REDIS_WEBSOCKETS, USE_REDIS_EVENT_ORDERING: each on its own, so a
 * deployment migrates one port at a time), wraps the Redis ones in the
 * failover decorator (adapters/failover/: the outage path) on the
 * connection's health (adapters/redis/connection-health.ts), and decorates
 * `fastify.flowPorts`. plugins/recovery.ts starts the health checks once
 * the hub listens.
 */
async function portsPlugin (fastify: FastifyInstance, opts: PortsPluginOptions): Promise<void> {
  const { config, instanceId } = fastify.flowConfig
  const redis = fastify.flowRedis
  const given = opts.ports ?? {}
  const { keyPrefix } = config
  const ttlMs = config.sessionTtlSeconds * 1000
  // The op logs' bounds: per project (ops, bytes), per read, idle expiry; the memory ones' budget.
  const history = { historyBytes: config.historyBytes, pageBytes: config.replayPageBytes, idleTtlMs: config.projectIdleTtl * 1000 }
  // The memory log serving now (memory mode, or the fallback of the current outage), for /ws/stats.
  let inMemory: MemoryOperationLog | null = null
  const memoryLog = (): MemoryOperationLog => {
    inMemory = createMemoryOperationLog({ ...history, historyLimit: config.historyMemory, totalBytes: config.memoryHistoryBytes })
    return inMemory
  }
  const onRedis = (flag: boolean, port: keyof HubPorts): boolean => redis !== null && flag && given[port] === undefined
  const useSessions = onRedis(config.useRedisCollaboration, 'sessions')
  const useBroadcaster = onRedis(config.useRedisWebsockets, 'broadcaster')
  const useLog = onRedis(config.useRedisEventOrdering, 'log')
  if (config.ackDurability !== 'memory' && !useLog) {
    // Not refused: rolling a deployment back to the memory log is one flag, whatever else is set.
    fastify.log.warn({ ackDurability: config.ackDurability }, 'FLOW_ACK_DURABILITY applies to the Redis op log only ' +
      '(USE_REDIS_EVENT_ORDERING=true with Redis): acks come from this process\'s memory')
  }
  // Snapshots are checked against the op log: they live where it lives, or are the host's beside its own log.
  if (given.snapshots !== undefined && given.log === undefined) {
    throw new TypeError('a snapshot store handed in needs the op log it is checked against handed in too (ports.log)')
  }

  // Closed with the app: what this plugin made (a port the host handed in is the host's to close).
  const created: Array<{ close: () => Promise<void> }> = []
  const make = <T extends { close: () => Promise<void> }>(port: T): T => { created.push(port); return port }

  let health: ConnectionHealth | null = null
  let failover: FailoverPorts | null = null
  if (redis !== null && (useSessions || useBroadcaster || useLog)) {
    const { client, subscriber } = redis
    const timeoutMs = config.redisCommandTimeoutMs
    health = new ConnectionHealth({
      client, subscriber, keyPrefix, instanceId, timeoutMs, probeIntervalMs: config.redisProbeIntervalMs,
      recover: async () => { await failover?.resync() }
    })
    // What this instance saw of each log, from its own calls and other instances' op messages (watermarks.ts).
    const watermarks = new LogWatermarks({ idleMs: history.idleTtlMs })
    // FLOW_ACK_DURABILITY=replica: acks wait for the replicas (WAIT); only the Redis op log has any.
    const durability = config.ackDurability === 'replica' ? { replicas: config.ackReplicas, timeoutMs: config.ackTimeoutMs } : undefined
    const onFence = (fence: Fence): void => {
      fastify.flowConfig.stats.logFences++
      fastify.log.warn({ ...fence }, 'the op log is below ops this instance saw in its epoch (Redis lost them): it moves to a new epoch, its clients get reset')
    }
    failover = createFailoverPorts({
      breaker: health.breaker,
      watchdog: health.watchdog,
      isOutage: isRedisOutage,
      timeoutMs,
      maxBuffered: config.outageBufferOps,
      maxBufferedBytes: config.outageBufferBytes,
      primary: {
        broadcaster: useBroadcaster ? make(createRedisBroadcaster({ client, subscriber, keyPrefix, origin: instanceId, onMessage: health.onMessage, watermarks })) : undefined,
        // With Pub/Sub too, the append script publishes: publish order is seq order.
        log: useLog ? make(createRedisOperationLog({ client, keyPrefix, ...history, historyLimit: config.historyRedis, publishOrigin: useBroadcaster ? instanceId : undefined, watermarks, onFence, durability }))  : undefined,
        sessions: useSessions ? make(createRedisSessionStore({ client, keyPrefix, instanceId, ttlMs, leaseMs: config.instanceLeaseMs })) : undefined,
        snapshots: useLog ? make(createRedisSnapshotStore({ client, keyPrefix, ...history, historyLimit: config.historyRedis })) : undefined
      },
      fallback: {
        sessions: () => createMemorySessionStore({ ttlMs }),
        log: memoryLog,
        snapshots: createMemorySnapshotStore
      }
    })
  }

  const log = given.log ?? make(failover?.log ?? memoryLog())
  const snapshots = (): HubPorts['snapshots'] => {
    if (given.snapshots !== undefined) return given.snapshots
    if (failover?.snapshots !== undefined) return make(failover.snapshots)
    if (inMemory !== null && given.log === undefined) return make(createMemorySnapshotStore(inMemory))
    // A host's own op log without a snapshot store beside it: this server keeps no snapshots.
    return noSnapshots()
  }
  const ports: HubPorts = {
    sessions: given.sessions ?? make(failover?.sessions ?? createMemorySessionStore({ ttlMs })),
    broadcaster: given.broadcaster ?? make(failover?.broadcaster ?? createMemoryBroadcaster()),
    log,
    snapshots: snapshots()
  }
  const report = (port: keyof HubPorts): PortReport => {
    if (given[port] !== undefined) return { adapter: 'custom', circuit: null, since: null, serving: 'custom' }
    const serving = failover?.status()[port] ?? null
    if (health === null || serving === null) return { adapter: 'memory', circuit: null, since: null, serving: 'memory' }
    return { adapter: 'redis', circuit: health.breaker.state, since: health.breaker.since, serving: serving === 'primary' ? 'redis' : 'memory' }
  }
  fastify.decorate('flowPorts', {
    ports,
    reports: () => ({ sessions: report('sessions'), broadcaster: report('broadcaster'), log: report('log'), snapshots: report('snapshots') }),
    memoryHistory: () => inMemory === null ? null : { bytes: inMemory.bytes, projects: inMemory.projects },
    health,
    failover
  })

  fastify.addHook('onClose', async () => {
    health?.close()
    await Promise.all(created.map(async (port) => { await port.close() }))
  })
}

export default fp(portsPlugin, { name: 'flow-ports', fastify: '5.x', dependencies: ['flow-config', 'flow-redis'] })
