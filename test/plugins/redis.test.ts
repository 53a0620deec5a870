import t from 'tap'
import { configValue, redisUrl, safeRedisUrl, reconnectDelay } from '../../plugins/redis.js'
import { resolveConfig } from '../../lib/config.js'
import { startServer } from '../helpers/server.js'
import { startRedis } from '../helpers/redis.js'
import { freePort } from '../helpers/process.js'
import { connect } from '../helpers/client.js'

t.test('the Redis URL takes its parts from REDIS_HOST, REDIS_PORT, credentials, database and TLS', async (t) => {
  t.equal(redisUrl(resolveConfig({}, {})), 'redis://127.0.0.1:6379')
  t.equal(redisUrl(resolveConfig({}, { REDIS_URL: 'redis://cache:7000/2' })), 'redis://cache:7000/2')
  t.equal(redisUrl(resolveConfig({}, {
    REDIS_URL: 'redis://cache:7000',
    REDIS_HOST: 'db.internal',
    REDIS_PORT: '6380',
    REDIS_USERNAME: 'flow',
    REDIS_PASSWORD: 'p@ss:word',
    REDIS_DB: '3',
    REDIS_TLS: 'true'
  })), 'rediss://flow:p%40ss%3Aword@db.internal:6380/3')
})

t.test('logged Redis URLs hide the password', async (t) => {
  t.equal(safeRedisUrl('redis://flow:secret@h:1/0'), 'redis://flow:***@h:1/0')
  t.equal(safeRedisUrl('redis://h:1'), 'redis://h:1')
})

t.test('reconnection backs off to about two seconds and never gives up', async (t) => {
  t.ok(reconnectDelay(0) < 200)
  t.ok(reconnectDelay(100) >= 2000 && reconnectDelay(100) < 2100)
})

t.test('bad Redis settings stop start-up naming the variable', async (t) => {
  t.throws(() => resolveConfig({}, { REDIS_PORT: '70000' }), /REDIS_PORT/)
  t.throws(() => resolveConfig({}, { REDIS_DB: 'x' }), /REDIS_DB/)
  t.throws(() => resolveConfig({}, { FLOW_KEY_PREFIX: 'a{b}' }), /FLOW_KEY_PREFIX/)
  t.throws(() => resolveConfig({}, { FLOW_INSTANCE_ID: 'has space' }), /FLOW_INSTANCE_ID/)
})

t.test('the server boots while Redis is down, serves from memory, and moves to Redis once it appears', async (t) => {
  const port = await freePort()
  const url = `redis://127.0.0.1:${port}`
  const started = Date.now()
  const server = await startServer(t, {
    redisUrl: url,
    redisConnectWaitMs: 300,
    useRedisCollaboration: true,
    useRedisWebsockets: true,
    useRedisEventOrdering: true
  })
  t.ok(Date.now() - started < 5000, 'boot did not wait for Redis')
  const down = (await server.app.inject({ url: '/health' })).json<{ status: string, redis: { connected: boolean }, ports: Record<string, { circuit: string, serving: string }> }>()
  t.equal(down.status, 'degraded')
  t.equal(down.redis.connected, false)
  t.same(Object.values(down.ports).map((p) => p.serving), ['memory', 'memory', 'memory'])
  const client = await connect(t, server.ws, { timeoutMs: 15_000 })
  const joined = await client.join('p')
  t.match(await client.request({ type: 'op', project: 'p', id: 'during-outage', data: 1 }), { type: 'ack', seq: 1 }, 'ops are acked while degraded')
  await startRedis(t, { port })
  const reset = await client.next('reset')
  t.not(reset.epoch, joined.epoch, 'members move to the Redis log\'s epoch')
  const health = (await server.app.inject({ url: '/health' })).json<{ status: string }>()
  t.equal(health.status, 'ok')
  const history = (await server.app.inject({ url: '/projects/p/ops?since=0' })).json<{ epoch: string, ops: Array<{ id: string }> }>()
  t.equal(history.epoch, reset.epoch)
  t.same(history.ops.map((o) => o.id), ['during-outage'], 'the op acked during the outage is in the Redis log, once')
  t.match(await client.request({ type: 'op', project: 'p', data: 2 }), { type: 'ack', seq: 2 })
})

t.test('an allkeys eviction policy that FLOW_REDIS_ALLOW_EVICTION accepts is warned about in /health', async (t) => {
  const redis = await startRedis(t)
  const { redisClient } = await import('../helpers/redis.js')
  const admin = await redisClient(t, redis.url)
  await admin.configSet('maxmemory-policy', 'allkeys-lru')
  const server = await startServer(t, { redisUrl: redis.url, useRedisEventOrdering: true, useRedisWebsockets: true, redisAllowEviction: true })
  const health = (await server.app.inject({ url: '/health' })).json<{ redis: { maxmemoryPolicy: string }, warnings: string[] }>()
  t.equal(health.redis.maxmemoryPolicy, 'allkeys-lru')
  t.match(health.warnings, [/maxmemory-policy is allkeys-lru/])
})

t.test('/health says when seqs are per instance', async (t) => {
  const redis = await startRedis(t)
  const server = await startServer(t, { redisUrl: redis.url, useRedisWebsockets: true })
  const health = (await server.app.inject({ url: '/health' })).json<{ seqScope: string, warnings: string[] }>()
  t.equal(health.seqScope, 'instance')
  t.match(health.warnings, [/seqs are per instance/])
})

t.test('CONFIG GET is read from a RESP2 array or a RESP3 map alike', async (t) => {
  t.equal(configValue(['maxmemory-policy', 'noeviction'], 'maxmemory-policy'), 'noeviction', 'RESP2: [name, value]')
  t.equal(configValue({ 'maxmemory-policy': 'allkeys-lru' }, 'maxmemory-policy'), 'allkeys-lru', 'RESP3: a plain object (node-redis 6)')
  t.equal(configValue(new Map([['maxmemory-policy', 'volatile-lru']]), 'maxmemory-policy'), 'volatile-lru', 'RESP3 mapped to a Map')
  t.equal(configValue([], 'maxmemory-policy'), null, 'nothing: null')
  t.equal(configValue({}, 'maxmemory-policy'), null)
  t.equal(configValue(null, 'maxmemory-policy'), null)
})
