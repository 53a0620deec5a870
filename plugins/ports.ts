import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { HubPorts } from '../lib/hub/hub.js'
import { createMemoryBroadcaster } from '../adapters/memory/broadcaster.js'
import { createMemoryOperationLog } from '../adapters/memory/operation-log.js'
import { createMemorySessionStore } from '../adapters/memory/session-store.js'
import { createRedisBroadcaster } from '../adapters/redis/broadcaster.js'
import { createRedisOperationLog } from '../adapters/redis/operation-log.js'
import { createRedisSessionStore } from '../adapters/redis/session-store.js'
import { guardPort } from '../adapters/guard/unavailable.js'
import type { PortReport } from './config.js'

export interface PortsPluginOptions {
  /** adapters handed in by the host app or a test; never closed by the plugin */
  readonly ports?: Partial<HubPorts>
}

/**
 * Picks an adapter for each port from its flag (USE_REDIS_COLLABORATION,
 * USE_REDIS_WEBSOCKETS, USE_REDIS_EVENT_ORDERING: each on its own, so a
 * deployment migrates one port at a time) and decorates `fastify.flow.ports`.
 * Closes the adapters it created when the app closes.
 */
async function portsPlugin (fastify: FastifyInstance, opts: PortsPluginOptions): Promise<void> {
  const { config, instanceId } = fastify.flow
  const redis = fastify.flowRedis
  const given = opts.ports ?? {}
  const created: Array<{ close: () => Promise<void> }> = []
  const make = <T extends { close: () => Promise<void> }>(port: T): T => { created.push(port); return port }
  const onRedis = (flag: boolean): typeof redis => flag ? redis : null

  const sessionsRedis = onRedis(config.useRedisCollaboration)
  const broadcastRedis = onRedis(config.useRedisWebsockets)
  const logRedis = onRedis(config.useRedisEventOrdering)

  const sessions = given.sessions ?? make(sessionsRedis !== null
    ? createRedisSessionStore({ client: sessionsRedis.client, keyPrefix: config.keyPrefix, instanceId, ttlMs: config.sessionTtlSeconds * 1000, leaseMs: config.instanceLeaseMs })
    : createMemorySessionStore({ ttlMs: config.sessionTtlSeconds * 1000 }))
  const broadcaster = given.broadcaster ?? make(broadcastRedis !== null
    ? createRedisBroadcaster({ client: broadcastRedis.client, subscriber: broadcastRedis.subscriber, keyPrefix: config.keyPrefix, origin: instanceId })
    : createMemoryBroadcaster())
  const log = given.log ?? make(logRedis !== null
    ? createRedisOperationLog({
      client: logRedis.client,
      keyPrefix: config.keyPrefix,
      historyLimit: config.historyRedis,
      // With Pub/Sub too, the append script publishes: publish order is seq order.
      publishOrigin: broadcastRedis !== null && given.broadcaster === undefined ? instanceId : undefined
    })
    : createMemoryOperationLog({ historyLimit: config.historyMemory }))

  const report = (port: string) => (err: unknown): void => { fastify.log.warn({ err, port }, 'port call failed') }
  // A rejection of any port is a dependency failure: the client gets `unavailable`.
  fastify.flow.ports = {
    sessions: guardPort(sessions, 'the session store', report('sessions')),
    broadcaster: guardPort(broadcaster, 'the broadcaster', report('broadcaster')),
    log: guardPort(log, 'the op log', report('log'))
  }

  // Until the circuit breaker (issue 4), a Redis port's state is its connection's.
  let redisSince = Date.now()
  let redisUp = redis?.ready() ?? false
  const portReport = (onIt: boolean, given: boolean): PortReport => {
    if (given) return { adapter: 'custom', circuit: null, since: null }
    if (!onIt || redis === null) return { adapter: 'memory', circuit: null, since: null }
    const up = redis.ready()
    if (up !== redisUp) { redisUp = up; redisSince = Date.now() }
    return { adapter: 'redis', circuit: up ? 'closed' : 'open', since: redisSince }
  }
  fastify.flow.portReports = () => ({
    sessions: portReport(sessionsRedis !== null, given.sessions !== undefined),
    broadcaster: portReport(broadcastRedis !== null, given.broadcaster !== undefined),
    log: portReport(logRedis !== null, given.log !== undefined)
  })

  fastify.addHook('onClose', async () => {
    await Promise.all(created.map(async (port) => { await port.close() }))
  })
}

export default fp(portsPlugin, { name: 'flow-ports', fastify: '5.x', dependencies: ['flow-config', 'flow-redis'] })
