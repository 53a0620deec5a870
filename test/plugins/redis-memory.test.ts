import t from 'tap'
import Fastify from 'fastify'
import flow, { type FlowOptions } from '../../app.js'
import { startServer, type TestServer } from '../helpers/server.js'
import { redisClient, startRedis, uniquePrefix } from '../helpers/redis.js'
import { connect } from '../helpers/client.js'
import { waitFor } from '../helpers/wait.js'

interface Health {
  status: string
  ports: Record<string, { adapter: string, circuit: string | null, serving: string }>
  redis: {
    maxmemoryPolicy: string | null
    usedMemory: number | null
    maxMemory: number | null
    memoryRatio: number | null
    refused: string | null
  }
  warnings: string[]
}

async function health (server: TestServer): Promise<Health> {
  return (await server.app.inject({ url: '/health' })).json<Health>()
}

/** Reads Redis every 100 ms (FLOW_HEALTH_CHECK_INTERVAL_MS), with a key prefix of its own. */
function onRedis (url: string, options: FlowOptions = {}): FlowOptions {
  return { redisUrl: url, keyPrefix: uniquePrefix(), healthCheckIntervalMs: 100, ...options }
}

/** Within this, the periodic read must have seen a change: several intervals of 100 ms, and room for a busy machine. */
const NOTICED_MS = 5000

t.test('/health and /metrics report Redis memory; /health warns over FLOW_REDIS_MEMORY_WARN_RATIO of maxmemory', async (t) => {
  const redis = await startRedis(t)
  const admin = await redisClient(t, redis.url)
  const server = await startServer(t, onRedis(redis.url, { useRedisWebsockets: true, redisMemoryWarnRatio: 0.5 }))
  const before = await health(server)
  t.ok((before.redis.usedMemory ?? 0) > 0, 'used memory is read at connect')
  t.equal(before.redis.maxMemory, 0, 'no maxmemory: no limit')
  t.equal(before.redis.memoryRatio, null)
  t.equal(before.redis.maxmemoryPolicy, 'noeviction')
  t.notMatch(before.warnings.join('\n'), /Redis memory/)

  // A limit at 150% of what is used now: the ratio (about 0.67) is over 0.5, and writes still fit.
  const used = before.redis.usedMemory ?? 0
  await admin.configSet('maxmemory', String(Math.round(used * 1.5)))
  const warned = await waitFor(async () => {
    const h = await health(server)
    return h.redis.memoryRatio !== null ? h : undefined
  }, { what: 'the new maxmemory to be read', timeoutMs: NOTICED_MS })
  t.equal(warned.redis.maxMemory, Math.round(used * 1.5))
  t.ok((warned.redis.memoryRatio ?? 0) > 0.5 && (warned.redis.memoryRatio ?? 1) < 1, `ratio ${warned.redis.memoryRatio}`)
  t.match(warned.warnings, [/Redis memory is at \d+% of maxmemory \(over FLOW_REDIS_MEMORY_WARN_RATIO 0\.5\)/])

  const metrics = (await server.app.inject({ url: '/metrics' })).body
  t.match(metrics, new RegExp(`^flow_redis_maxmemory_bytes ${Math.round(used * 1.5)}$`, 'm'))
  const gauge = /^flow_redis_used_memory_bytes (\d+)$/m.exec(metrics)
  t.ok(gauge !== null && Number(gauge[1]) > 0, 'flow_redis_used_memory_bytes')
  await admin.configSet('maxmemory', '0')

  const memoryOnly = await startServer(t)
  t.notMatch((await memoryOnly.app.inject({ url: '/metrics' })).body, /flow_redis_/, 'without a port on Redis, no Redis gauges')
})

t.test('a maxmemory-policy set at runtime is noticed within an interval; without the op log on Redis it is a warning', async (t) => {
  const redis = await startRedis(t)
  const admin = await redisClient(t, redis.url)
  const server = await startServer(t, onRedis(redis.url, { useRedisWebsockets: true, useRedisCollaboration: true }))
  t.equal((await health(server)).redis.maxmemoryPolicy, 'noeviction')
  await admin.configSet('maxmemory-policy', 'allkeys-lru')
  const changed = await waitFor(async () => {
    const h = await health(server)
    return h.redis.maxmemoryPolicy === 'allkeys-lru' ? h : undefined
  }, { what: 'the runtime CONFIG SET to be noticed', timeoutMs: NOTICED_MS })
  t.match(changed.warnings, [/maxmemory-policy is allkeys-lru: it may evict Flow's keys/])
  t.equal(changed.status, 'ok', 'sessions and Pub/Sub stay on Redis: the op log is not there')
  t.equal(changed.redis.refused, null)
})

t.test('with the op log on Redis, start-up stops on a volatile-* policy too: the op log\'s keys carry an idle TTL', async (t) => {
  const redis = await startRedis(t)
  const admin = await redisClient(t, redis.url)
  await admin.configSet('maxmemory-policy', 'volatile-lru')
  const app = Fastify({ logger: false })
  app.register(flow, { env: {}, maxEventLoopDelayMs: 0, ...onRedis(redis.url, { useRedisEventOrdering: true }) })
  await t.rejects(async () => { await app.ready() }, /maxmemory-policy is volatile-lru.*FLOW_REDIS_ALLOW_EVICTION=true/)
  await app.close()
})

t.test('with the op log on Redis, start-up stops on an allkeys-* policy, naming FLOW_REDIS_ALLOW_EVICTION', async (t) => {
  const redis = await startRedis(t)
  const admin = await redisClient(t, redis.url)
  await admin.configSet('maxmemory-policy', 'allkeys-lfu')
  const app = Fastify({ logger: false })
  app.register(flow, { env: {}, maxEventLoopDelayMs: 0, ...onRedis(redis.url, { useRedisEventOrdering: true }) })
  await t.rejects(async () => { await app.ready() }, /maxmemory-policy is allkeys-lfu.*FLOW_REDIS_ALLOW_EVICTION=true/)
  await app.close()
  await waitFor(async () => (await admin.clientList()).length === 1, { what: 'Flow\'s connections to be closed' })

  const allowed = await startServer(t, onRedis(redis.url, { useRedisEventOrdering: true, redisAllowEviction: true }))
  const h = await health(allowed)
  t.equal(h.status, 'ok', 'FLOW_REDIS_ALLOW_EVICTION=true accepts the risk')
  t.match(h.warnings, [/maxmemory-policy is allkeys-lfu: it may evict Flow's keys/])
})

t.test('where CONFIG is disabled, the policy is read from INFO, and still stops start-up', async (t) => {
  const redis = await startRedis(t, { args: ['--maxmemory-policy', 'allkeys-random', '--rename-command', 'CONFIG', ''] })
  const app = Fastify({ logger: false })
  app.register(flow, { env: {}, maxEventLoopDelayMs: 0, ...onRedis(redis.url, { useRedisEventOrdering: true }) })
  await t.rejects(async () => { await app.ready() }, /maxmemory-policy is allkeys-random.*FLOW_REDIS_ALLOW_EVICTION/)
  await app.close()

  const server = await startServer(t, onRedis(redis.url, { useRedisWebsockets: true }))
  t.equal((await health(server)).redis.maxmemoryPolicy, 'allkeys-random')
})

t.test('an allkeys-* policy set at runtime moves the Redis ports to memory, degraded with the reason, until it is fixed', async (t) => {
  const redis = await startRedis(t)
  const admin = await redisClient(t, redis.url)
  const server = await startServer(t, onRedis(redis.url, { useRedisEventOrdering: true, useRedisWebsockets: true, useRedisCollaboration: true }))
  const client = await connect(t, server.ws, { timeoutMs: 15_000 })
  const joined = await client.join('doc')
  t.match(await client.request({ type: 'op', project: 'doc', id: 'before', data: 1 }), { type: 'ack', seq: 1 })

  await admin.configSet('maxmemory-policy', 'allkeys-lru')
  const refused = await waitFor(async () => {
    const h = await health(server)
    return h.status === 'degraded' ? h : undefined
  }, { what: 'the allkeys policy to be noticed', timeoutMs: NOTICED_MS })
  t.match(refused.redis.refused, /maxmemory-policy is allkeys-lru.*FLOW_REDIS_ALLOW_EVICTION=true/)
  t.match(refused.warnings, [/^the Redis ports serve from memory: invalid configuration: Redis maxmemory-policy is allkeys-lru/])
  t.same(Object.values(refused.ports).map((p) => p.serving), ['memory', 'memory', 'memory'])
  const reset = await client.next('reset')
  t.not(reset.epoch, joined.epoch, 'members move to the memory log (a new epoch)')
  t.match(await client.request({ type: 'op', project: 'doc', id: 'while-refused', data: 2 }), { type: 'ack' }, 'ops are still acked')
  const stillRefused = await health(server)
  t.equal(stillRefused.status, 'degraded', 'the probe keeps failing while the policy stays unsafe')

  await admin.configSet('maxmemory-policy', 'noeviction')
  const back = await waitFor(async () => {
    const h = await health(server)
    return h.status === 'ok' ? h : undefined
  }, { what: 'the Redis ports to come back', timeoutMs: 15_000 })
  t.equal(back.redis.refused, null)
  t.same(Object.values(back.ports).map((p) => p.serving), ['redis', 'redis', 'redis'])
  const again = await client.next('reset')
  t.equal(again.epoch, joined.epoch, 'members are back on the Redis log')
  const history = (await server.app.inject({ url: '/projects/doc/ops?since=0' })).json<{ ops: Array<{ id: string }> }>()
  t.same(history.ops.map((o) => o.id), ['before', 'while-refused'], 'the op acked from memory was moved to Redis, once')
})
