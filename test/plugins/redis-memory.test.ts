import t from 'tap'
import type { FlowOptions } from '../../app.js'
import { startServer, type TestServer } from '../helpers/server.js'
import { redisClient, startRedis, uniquePrefix } from '../helpers/redis.js'
import { waitFor } from '../helpers/wait.js'

interface Health {
  status: string
  ports: Record<string, { adapter: string, circuit: string | null, serving: string }>
  redis: {
    maxmemoryPolicy: string | null
    usedMemory: number | null
    maxMemory: number | null
    memoryRatio: number | null
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
  t.match(changed.warnings, [/maxmemory-policy is allkeys-lru: it may evict the op log/])
  t.equal(changed.status, 'ok', 'sessions and Pub/Sub stay on Redis: the op log is not there')
})
