import t, { type Test } from 'tap'
import { operationLogContract } from '../contracts/operation-log.js'
import { sessionStoreContract } from '../contracts/session-store.js'
import { broadcasterContract } from '../contracts/broadcaster.js'
import { CircuitBreaker } from '../../lib/breaker.js'
import { FailoverOperationLog } from '../../adapters/failover/operation-log.js'
import { FailoverSessionStore } from '../../adapters/failover/session-store.js'
import { FailoverBroadcaster } from '../../adapters/failover/broadcaster.js'
import { RedisOperationLog } from '../../adapters/redis/operation-log.js'
import { RedisSessionStore } from '../../adapters/redis/session-store.js'
import { RedisBroadcaster } from '../../adapters/redis/broadcaster.js'
import { redisClient, startRedis, uniquePrefix } from '../helpers/redis.js'
import { TestLog } from '../helpers/logs.js'
import type { RedisClient } from '../../adapters/redis/client.js'
import type { AppendResult, NewOp } from '../../ports/operation-log.js'

const redis = await startRedis(t)

/** A breaker whose probe always works: tests drive it with trip(). */
function breaker (t: Test): CircuitBreaker {
  const b = new CircuitBreaker({ probe: async () => {}, probeDelayMs: 60_000 })
  t.teardown(() => { b.dispose() })
  return b
}

/** A breaker that is open for good: the port serves from its fallback only. */
function openBreaker (t: Test): CircuitBreaker {
  const b = breaker(t)
  b.trip(new Error('test outage'))
  return b
}

// While the circuit is closed, a failover port is its Redis port.
operationLogContract(t, 'FailoverOperationLog on Redis', async ({ historyLimit }) => {
  const primary = new RedisOperationLog({ client: await redisClient(t, redis.url), keyPrefix: uniquePrefix(), historyLimit })
  const log = new FailoverOperationLog({ breaker: breaker(t), timeoutMs: 2000, historyLimit, primary })
  return { log, close: async () => { await log.close() } }
})

// While it is open, it is a memory port.
operationLogContract(t, 'FailoverOperationLog on its fallback', async ({ historyLimit }) => {
  const primary = new ControlledLog()
  primary.mode = 'down'
  const log = new FailoverOperationLog({ breaker: openBreaker(t), timeoutMs: 2000, historyLimit, primary })
  return { log, close: async () => { await log.close() } }
})

sessionStoreContract(t, 'FailoverSessionStore on Redis', async ({ ttlMs }) => {
  const keyPrefix = uniquePrefix()
  const b = breaker(t)
  const make = async (instanceId: string): Promise<FailoverSessionStore> => new FailoverSessionStore({
    breaker: b,
    timeoutMs: 2000,
    ttlMs,
    primary: new RedisSessionStore({ client: await redisClient(t, redis.url), keyPrefix, instanceId, ttlMs })
  })
  const a = await make('a')
  const c = await make('b')
  return { a, b: c, close: async () => { await Promise.all([a.close(), c.close()]) } }
})

broadcasterContract(t, 'FailoverBroadcaster on Redis', async () => {
  const keyPrefix = uniquePrefix()
  const make = async (origin: string): Promise<FailoverBroadcaster> => new FailoverBroadcaster({
    breaker: breaker(t),
    timeoutMs: 2000,
    primary: new RedisBroadcaster({ client: await redisClient(t, redis.url) as RedisClient, subscriber: await redisClient(t, redis.url) as RedisClient, keyPrefix, origin })
  })
  const [a, b, c] = [await make('a'), await make('b'), await make('c')]
  return { a, b, c, close: async () => { await Promise.all([a.close(), b.close(), c.close()]) } }
})

/** An op log that delegates to a memory log, with appends that fail or hang on demand. */
class ControlledLog extends TestLog {
  mode: 'up' | 'down' | 'hang' = 'up'
  override async append (o: NewOp): Promise<AppendResult> {
    if (this.mode === 'down') throw new Error('ECONNRESET')
    if (this.mode === 'hang') return await new Promise<never>(() => {})
    return await super.append(o)
  }
}

function op (project: string, id: string): NewOp {
  return { project, id, userId: 'u', sessionId: 's', data: { id }, ts: 1 }
}

t.test('ops accepted during an outage reach the primary in order, once, and only then does the log switch back', async (t) => {
  const primary = new RedisOperationLog({ client: await redisClient(t, redis.url), keyPrefix: uniquePrefix() })
  const b = breaker(t)
  const log = new FailoverOperationLog({ breaker: b, timeoutMs: 2000, historyLimit: 100, primary })
  const before = await log.append(op('p', 'before'))
  t.equal(before.duplicate ? 0 : before.op.seq, 1)
  b.trip(new Error('outage'))
  t.equal(log.mode, 'fallback')
  t.equal(log.scope, 'instance', 'seqs are this instance\'s while on the fallback')
  const during = []
  for (const id of ['d1', 'd2', 'before', 'd3']) during.push(await log.append(op('p', id)))
  t.not(during[0]?.epoch, before.epoch, 'the fallback is a new epoch')
  t.equal(log.buffered, 4, 'an id the fallback has not seen is buffered; the primary dedups it')
  await log.resync()
  t.equal(log.mode, 'primary')
  t.equal(log.buffered, 0)
  const history = await log.read('p', 0, 100)
  t.equal(history.epoch, before.epoch, 'back on the primary\'s epoch')
  t.same(history.ops.map((o) => o.id), ['before', 'd1', 'd2', 'd3'], 'in the order they were accepted, each once')
})

t.test('a primary that fails during re-sync keeps the log on its fallback with nothing lost', async (t) => {
  const primary = new ControlledLog()
  const b = breaker(t)
  const log = new FailoverOperationLog({ breaker: b, timeoutMs: 2000, historyLimit: 100, primary })
  b.trip(new Error('outage'))
  await log.append(op('p', 'x1'))
  await log.append(op('p', 'x2'))
  primary.mode = 'down'
  await t.rejects(log.resync())
  t.equal(log.mode, 'fallback')
  t.equal(log.buffered, 2)
  primary.mode = 'up'
  await log.resync()
  t.same((await primary.inner.read('p', 0, 10)).ops.map((o) => o.id), ['x1', 'x2'])
})

t.test('a call the primary does not answer in time falls back and opens the circuit', async (t) => {
  const hanging = new ControlledLog()
  hanging.mode = 'hang'
  const b = breaker(t)
  const log = new FailoverOperationLog({ breaker: b, timeoutMs: 50, historyLimit: 100, primary: hanging })
  const result = await log.append(op('p', 'slow'))
  t.equal(result.duplicate ? 0 : result.op.seq, 1, 'served by the fallback')
  t.equal(b.state, 'open')
})

t.test('a bad call is the caller\'s error, not an outage', async (t) => {
  const primary = new RedisOperationLog({ client: await redisClient(t, redis.url), keyPrefix: uniquePrefix() })
  const b = breaker(t)
  const log = new FailoverOperationLog({ breaker: b, timeoutMs: 2000, historyLimit: 100, primary })
  await t.rejects(log.append(op('bad project id', 'x')), TypeError)
  t.equal(b.state, 'closed')
  t.equal(log.mode, 'primary')
})

t.test('sessions that left during an outage are removed from the primary and handed out once to announce', async (t) => {
  const keyPrefix = uniquePrefix()
  const b = breaker(t)
  const primary = new RedisSessionStore({ client: await redisClient(t, redis.url), keyPrefix, instanceId: 'i', ttlMs: 30_000 })
  t.teardown(async () => { await primary.close() })
  const store = new FailoverSessionStore({ breaker: b, timeoutMs: 2000, ttlMs: 30_000, primary })
  const member = { sessionId: 's1', userId: 'u', presence: {}, joinedAt: 1 }
  await store.add('p', member)
  b.trip(new Error('outage'))
  await store.add('p', member)
  t.same(await store.remove('p', 's1'), member, 'the fallback knows the session')
  t.same((await primary.list('p')).map((m) => m.sessionId), ['s1'], 'the primary still lists it')
  await store.resync()
  t.same(await primary.list('p'), [], 'removed from the primary on re-sync')
  t.same(store.takeLeft(), [{ project: 'p', member }])
  t.same(store.takeLeft(), [], 'handed out once')
})

t.test('subscriptions made during an outage are made on the primary by re-sync, and dropped ones are undone', async (t) => {
  const keyPrefix = uniquePrefix()
  const b = breaker(t)
  const primary = new RedisBroadcaster({ client: await redisClient(t, redis.url) as RedisClient, subscriber: await redisClient(t, redis.url) as RedisClient, keyPrefix, origin: 'a' })
  t.teardown(async () => { await primary.close() })
  const f = new FailoverBroadcaster({ breaker: b, timeoutMs: 2000, primary })
  await f.subscribe('kept', () => {})
  await f.subscribe('dropped', () => {})
  b.trip(new Error('outage'))
  await f.unsubscribe('dropped')
  await f.subscribe('new', () => {})
  t.same([...await primary.subscriptions()].sort(), ['dropped', 'kept'], 'nothing reached Redis during the outage')
  await f.resync()
  t.same([...await primary.subscriptions()].sort(), ['kept', 'new'])
  t.equal(f.mode, 'primary')
})
