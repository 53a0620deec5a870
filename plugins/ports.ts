import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { HubPorts } from '../lib/hub/hub.js'
import { CircuitBreaker } from '../lib/breaker.js'
import { createMemoryBroadcaster } from '../adapters/memory/broadcaster.js'
import { createMemoryOperationLog } from '../adapters/memory/operation-log.js'
import { createMemorySessionStore } from '../adapters/memory/session-store.js'
import { createRedisBroadcaster } from '../adapters/redis/broadcaster.js'
import { createRedisOperationLog } from '../adapters/redis/operation-log.js'
import { createRedisSessionStore } from '../adapters/redis/session-store.js'
import { createRedisProbe } from '../adapters/redis/probe.js'
import { FailoverBroadcaster } from '../adapters/failover/broadcaster.js'
import { FailoverOperationLog } from '../adapters/failover/operation-log.js'
import { FailoverSessionStore } from '../adapters/failover/session-store.js'
import type { Failover } from '../adapters/failover/failover.js'
import { Watchdog } from '../adapters/failover/outage.js'
import { guardPort } from '../adapters/guard/unavailable.js'
import type { Flow, PortReport } from './config.js'

export interface PortsPluginOptions {
  /** adapters handed in by the host app or a test; never closed by the plugin */
  readonly ports?: Partial<HubPorts>
}

/**
 * Picks an adapter for each port from its flag (USE_REDIS_COLLABORATION,
 * USE_REDIS_WEBSOCKETS, USE_REDIS_EVENT_ORDERING: each on its own, so a
 * deployment migrates one port at a time) and decorates `fastify.flow.ports`.
 *
 * Redis adapters are wrapped in failover wrappers sharing one circuit
 * breaker (one Redis connection is one failure domain): on an outage every
 * Redis port serves from memory at once; the breaker's probe (a stream
 * append and a Pub/Sub round trip) finds Redis again, the wrappers re-sync
 * (subscriptions, the outage's ops, the sessions that left), and the hub
 * writes sessions back and resets members whose epoch changed.
 */
async function portsPlugin (fastify: FastifyInstance, opts: PortsPluginOptions): Promise<void> {
  const { config, instanceId, stats } = fastify.flow
  const redis = fastify.flowRedis
  const given = opts.ports ?? {}
  const log = fastify.log.child({ component: 'ports' })
  const created: Array<{ close: () => Promise<void> }> = []
  const make = <T extends { close: () => Promise<void> }>(port: T): T => { created.push(port); return port }
  const onRedis = (flag: boolean, port: keyof HubPorts): typeof redis => flag && given[port] === undefined ? redis : null

  const sessionsRedis = onRedis(config.useRedisCollaboration, 'sessions')
  const broadcastRedis = onRedis(config.useRedisWebsockets, 'broadcaster')
  const logRedis = onRedis(config.useRedisEventOrdering, 'log')
  const timeoutMs = config.redisCommandTimeoutMs

  // One per connection: a reply to any port shows Redis is there, and any
  // Pub/Sub message shows the subscriber is.
  const watchdog = new Watchdog(timeoutMs)
  const subscriberWatchdog = new Watchdog(timeoutMs * 2)
  let breaker: CircuitBreaker | null = null
  let probe: (() => Promise<void>) | null = null
  let probeTimer: NodeJS.Timeout | undefined
  const failovers: Failover[] = []
  let sessionsFailover: FailoverSessionStore | null = null
  if (redis !== null && (sessionsRedis !== null || broadcastRedis !== null || logRedis !== null)) {
    probe = createRedisProbe({ client: redis.client, subscriber: redis.subscriber, keyPrefix: config.keyPrefix, instanceId, timeoutMs, watchdog, subscriberWatchdog }).probe
    breaker = new CircuitBreaker({
      probe,
      // Subscriptions first (no op published meanwhile is missed), then the outage's ops, then sessions.
      recover: async () => { for (const f of failovers) await f.resync() },
      probeDelayMs: 250,
      maxProbeDelayMs: 2000,
      probeTimeoutMs: Math.max(30_000, timeoutMs * 10)
    })
  }

  let broadcaster = given.broadcaster ?? make(createMemoryBroadcaster())
  if (broadcastRedis !== null && breaker !== null) {
    const f = new FailoverBroadcaster({ breaker, timeoutMs, watchdog, primary: make(createRedisBroadcaster({ client: broadcastRedis.client, subscriber: broadcastRedis.subscriber, keyPrefix: config.keyPrefix, origin: instanceId, onMessage: () => { subscriberWatchdog.alive() } })) })
    failovers.push(f)
    broadcaster = f
  }
  let opLog = given.log ?? make(createMemoryOperationLog({ historyLimit: config.historyMemory }))
  if (logRedis !== null && breaker !== null) {
    const f = new FailoverOperationLog({
      breaker,
      timeoutMs,
      watchdog,
      historyLimit: config.historyMemory,
      maxBuffered: config.outageBufferOps,
      primary: make(createRedisOperationLog({
        client: logRedis.client,
        keyPrefix: config.keyPrefix,
        historyLimit: config.historyRedis,
        // With Pub/Sub too, the append script publishes: publish order is seq order.
        publishOrigin: broadcastRedis !== null ? instanceId : undefined
      }))
    })
    failovers.push(f)
    opLog = make(f)
  }
  let sessions = given.sessions ?? make(createMemorySessionStore({ ttlMs: config.sessionTtlSeconds * 1000 }))
  if (sessionsRedis !== null && breaker !== null) {
    const f = new FailoverSessionStore({
      breaker,
      timeoutMs,
      watchdog,
      ttlMs: config.sessionTtlSeconds * 1000,
      primary: make(createRedisSessionStore({ client: sessionsRedis.client, keyPrefix: config.keyPrefix, instanceId, ttlMs: config.sessionTtlSeconds * 1000, leaseMs: config.instanceLeaseMs }))
    })
    failovers.push(f)
    sessionsFailover = f
    sessions = make(f)
  }

  const report = (port: string) => (err: unknown): void => {
    stats.countPortError(port)
    fastify.log.warn({ err, port }, 'port call failed')
  }
  // A rejection of any port is a dependency failure: the client gets `unavailable`.
  fastify.flow.ports = {
    sessions: guardPort(sessions, 'the session store', report('sessions')),
    broadcaster: guardPort(broadcaster, 'the broadcaster', report('broadcaster')),
    log: guardPort(opLog, 'the op log', report('log'))
  }
  fastify.flow.breaker = breaker

  const portReport = (port: keyof HubPorts, onRedisPort: boolean, failover: { mode: 'primary' | 'fallback' } | null): PortReport => {
    if (given[port] !== undefined) return { adapter: 'custom', circuit: null, since: null, serving: 'custom' }
    if (!onRedisPort || breaker === null || failover === null) return { adapter: 'memory', circuit: null, since: null, serving: 'memory' }
    return { adapter: 'redis', circuit: breaker.state, since: breaker.since, serving: failover.mode === 'primary' ? 'redis' : 'memory' }
  }
  const logFailover = opLog instanceof FailoverOperationLog ? opLog : null
  const broadcastFailover = broadcaster instanceof FailoverBroadcaster ? broadcaster : null
  fastify.flow.portReports = () => ({
    sessions: portReport('sessions', sessionsRedis !== null, sessionsFailover),
    broadcaster: portReport('broadcaster', broadcastRedis !== null, broadcastFailover),
    log: portReport('log', logRedis !== null, logFailover)
  })

  if (breaker !== null && redis !== null && probe !== null) {
    const b = breaker
    const check = probe
    // Registered after the wrappers' own listeners: the ports have switched when these run.
    b.on('open', (reason) => {
      stats.fallbacks++
      log.warn({ err: reason }, 'Redis is away: the Redis ports serve from memory (degraded)')
      // Not yet there when Redis is down at boot: the hub then starts on the fallback.
      void (fastify.flow as Partial<Flow>).hub?.resyncAll()
    })
    b.on('probe-failed', (reason) => { log.debug({ err: reason }, 'Redis probe failed; still degraded') })
    b.on('close', () => {
      stats.recoveries++
      log.info({ buffered: logFailover?.buffered ?? 0 }, 'Redis is back: the ports re-synced and serve from Redis again')
      void fastify.flow.hub.recover(sessionsFailover?.takeLeft() ?? [])
    })
    for (const client of [redis.client, redis.subscriber]) {
      client.on('error', (err: Error) => { if (!client.isReady) b.trip(err) })
      client.on('end', () => { b.trip(new Error('Redis connection closed')) })
      client.on('ready', () => { b.probeNow() })
    }
    // The subscriber reconnected while the circuit stayed closed: fill what Pub/Sub dropped.
    redis.subscriber.on('ready', () => { if (b.state === 'closed') void fastify.flow.hub.resyncAll() })
    // While healthy, prove the path end to end: a subscriber that is
    // connected but delivers nothing counts as down.
    let probing = false
    probeTimer = setInterval(() => {
      if (b.state !== 'closed' || probing) return
      probing = true
      check().catch((err: unknown) => { if (b.state === 'closed') b.trip(err) }).finally(() => { probing = false })
    }, config.redisProbeIntervalMs)
    probeTimer.unref()
    if (!redis.ready()) b.trip(new Error('Redis is not connected at boot'))
  }

  fastify.addHook('onClose', async () => {
    clearInterval(probeTimer)
    breaker?.dispose()
    await Promise.all(created.map(async (port) => { await port.close() }))
  })
}

export default fp(portsPlugin, { name: 'flow-ports', fastify: '5.x', dependencies: ['flow-config', 'flow-redis'] })
