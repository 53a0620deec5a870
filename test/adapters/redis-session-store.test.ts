import t from 'tap'
import { sessionStoreContract } from '../contracts/session-store.js'
import { RedisSessionStore } from '../../adapters/redis/session-store.js'
import { keysUnder, redisClient, startRedis, uniquePrefix } from '../helpers/redis.js'
import { waitFor } from '../helpers/wait.js'
import type { Member } from '../../lib/types.js'

const redis = await startRedis(t)

let n = 0
function member (): Member {
  n++
  return { sessionId: `s${n}`, userId: `u${n}`, presence: { n }, joinedAt: 1_700_000_000_000 + n }
}

// Two instances on two connections sharing one Redis.
sessionStoreContract(t, 'RedisSessionStore', async ({ ttlMs }) => {
  const keyPrefix = uniquePrefix()
  const a = new RedisSessionStore({ client: await redisClient(t, redis.url), keyPrefix, instanceId: 'a', ttlMs })
  const b = new RedisSessionStore({ client: await redisClient(t, redis.url), keyPrefix, instanceId: 'b', ttlMs })
  return { a, b, close: async () => { await Promise.all([a.close(), b.close()]) } }
})

t.test('sessions live in the keys of their partition, the lease is the one global key', async (t) => {
  const keyPrefix = uniquePrefix()
  const client = await redisClient(t, redis.url)
  const store = new RedisSessionStore({ client, keyPrefix, instanceId: 'web-1', ttlMs: 30_000 })
  t.teardown(async () => { await store.close() })
  await store.add('board-1', member())
  t.same(await keysUnder(client, keyPrefix), [
    `${keyPrefix}:instance:web-1:lease`,
    `${keyPrefix}:{#9/16.23}:expiry`,
    `${keyPrefix}:{#9/16.23}:instances`,
    `${keyPrefix}:{#9/16.23}:owned:web-1`,
    `${keyPrefix}:{#9/16.23}:sessions:board-1`
  ])
  const ttl = await client.pTTL(`${keyPrefix}:instance:web-1:lease`)
  t.ok(ttl > 0 && ttl <= 5000, 'the lease expires on its own')
})

t.test('the sessions of an instance whose lease lapsed are reaped long before their TTL', async (t) => {
  const keyPrefix = uniquePrefix()
  const crashed = new RedisSessionStore({ client: await redisClient(t, redis.url), keyPrefix, instanceId: 'crashed', ttlMs: 60_000, leaseMs: 300 })
  const survivor = new RedisSessionStore({ client: await redisClient(t, redis.url), keyPrefix, instanceId: 'survivor', ttlMs: 60_000, leaseMs: 300 })
  t.teardown(async () => { await survivor.close() })
  const gone = member()
  const stays = member()
  await crashed.add('p', gone)
  await survivor.add('p', stays)
  await crashed.close() // stops renewing its lease, like a crash
  const started = Date.now()
  const reaped = await waitFor(async () => {
    const r = await survivor.reap()
    return r.length > 0 ? r : undefined
  }, { timeoutMs: 5000 })
  t.ok(Date.now() - started < 5000)
  t.same(reaped, [{ project: 'p', member: gone }])
  t.same((await survivor.list('p')).map((m) => m.sessionId), [stays.sessionId], 'the live instance keeps its sessions')
  t.same(await survivor.reap(), [], 'reaped once')
})

t.test('presence updates keep other fields and do not resurrect a removed session', async (t) => {
  const keyPrefix = uniquePrefix()
  const store = new RedisSessionStore({ client: await redisClient(t, redis.url), keyPrefix, instanceId: 'a', ttlMs: 30_000 })
  t.teardown(async () => { await store.close() })
  const m = member()
  await store.add('p', m)
  t.equal(await store.setPresence('p', m.sessionId, { cursor: [1, 2] }), true)
  t.same(await store.list('p'), [{ ...m, presence: { cursor: [1, 2] } }])
  t.same(await store.remove('p', m.sessionId), { ...m, presence: { cursor: [1, 2] } })
  t.equal(await store.setPresence('p', m.sessionId, { x: 1 }), false)
  t.same(await store.list('p'), [])
})

t.test('a project id that is not valid never reaches Redis', async (t) => {
  const store = new RedisSessionStore({ client: await redisClient(t, redis.url), keyPrefix: uniquePrefix(), instanceId: 'a', ttlMs: 30_000 })
  t.teardown(async () => { await store.close() })
  await t.rejects(store.add('a}b', member()), TypeError)
  await t.rejects(store.list('../x'), TypeError)
})
