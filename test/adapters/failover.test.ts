import t, { type Test } from 'tap'
import { operationLogContract } from '../contracts/operation-log.js'
import { sessionStoreContract } from '../contracts/session-store.js'
import { broadcasterContract } from '../contracts/broadcaster.js'
import { CircuitBreaker } from '../../lib/breaker.js'
import { FailoverBroadcaster, FailoverOperationLog, FailoverSessionStore } from '../../adapters/failover/index.js'
import { isRedisOutage } from '../../adapters/redis/connection-health.js'
import { MemoryOperationLog } from '../../adapters/memory/operation-log.js'
import { MemorySessionStore } from '../../adapters/memory/session-store.js'
import { Watchdog } from '../../lib/watchdog.js'
import { RedisOperationLog } from '../../adapters/redis/operation-log.js'
import { RedisSessionStore } from '../../adapters/redis/session-store.js'
import { RedisBroadcaster } from '../../adapters/redis/broadcaster.js'
import { redisClient, startRedis, uniquePrefix } from '../helpers/redis.js'
import { TestLog } from '../helpers/logs.js'
import type { AppendResult, LogMissing, NewOp, NewOpIfLogExists, OpenedLog, ReadResult } from '../../ports/operation-log.js'
import { NO_EPOCH } from '../../lib/types.js'

const redis = await startRedis(t)

/** A breaker whose probe always works: tests drive it with trip(). */
function breaker (t: Test): CircuitBreaker {
  const b = new CircuitBreaker({ probe: async () => {}, probeDelayMs: 60_000 })
  t.teardown(() => { b.dispose() })
  return b
}

/** What the decorators of one connection share, as plugins/ports.ts gives it. */
function shared (b: CircuitBreaker, timeoutMs = 2000): { breaker: CircuitBreaker, watchdog: Watchdog, timeoutMs: number, isOutage: (err: unknown) => boolean } {
  return { breaker: b, watchdog: new Watchdog(timeoutMs), timeoutMs, isOutage: isRedisOutage }
}

/** A fresh memory log for each outage, as plugins/ports.ts makes them. */
const memoryLog = (historyLimit: number) => (): MemoryOperationLog => new MemoryOperationLog({ historyLimit })

/** A breaker that is open for good: the port serves from its fallback only. */
function openBreaker (t: Test): CircuitBreaker {
  const b = breaker(t)
  b.trip(new Error('test outage'))
  return b
}

// While the circuit is closed, a failover port is its Redis port.
operationLogContract(t, 'FailoverOperationLog on Redis', async (options) => {
  const primary = new RedisOperationLog({ client: await redisClient(t, redis.url), keyPrefix: uniquePrefix(), ...options })
  const log = FailoverOperationLog.create({ ...shared(breaker(t)), fallback: () => new MemoryOperationLog(options), primary }).port
  return { log, close: async () => { await log.close() } }
})

// While it is open, it is a memory port (that cannot tell which projects the primary has).
operationLogContract(t, 'FailoverOperationLog on its fallback', async (options) => {
  const primary = new ControlledLog()
  primary.mode = 'down'
  const log = FailoverOperationLog.create({ ...shared(openBreaker(t)), fallback: () => new MemoryOperationLog(options), primary }).port
  return { log, close: async () => { await log.close() }, createsAnyway: true }
})

sessionStoreContract(t, 'FailoverSessionStore on Redis', async ({ ttlMs }) => {
  const keyPrefix = uniquePrefix()
  const b = breaker(t)
  const make = async (instanceId: string): Promise<FailoverSessionStore> => FailoverSessionStore.create({
    ...shared(b),
    fallback: () => new MemorySessionStore({ ttlMs }),
    primary: new RedisSessionStore({ client: await redisClient(t, redis.url), keyPrefix, instanceId, ttlMs })
  }).port
  const a = await make('a')
  const c = await make('b')
  return { a, b: c, close: async () => { await Promise.all([a.close(), c.close()]) } }
})

broadcasterContract(t, 'FailoverBroadcaster on Redis', async () => {
  const keyPrefix = uniquePrefix()
  const make = async (origin: string): Promise<FailoverBroadcaster> => FailoverBroadcaster.create({
    ...shared(breaker(t)),
    primary: new RedisBroadcaster({ client: await redisClient(t, redis.url), subscriber: await redisClient(t, redis.url), keyPrefix, origin })
  }).port
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

/** A log that records what reaches it. */
class SpyLog extends TestLog {
  readonly calls: string[] = []
  override append (o: NewOp): Promise<AppendResult>
  override append (o: NewOp | NewOpIfLogExists): Promise<AppendResult | LogMissing>
  override async append (o: NewOp | NewOpIfLogExists): Promise<AppendResult | LogMissing> {
    this.calls.push('append')
    return await super.append(o)
  }

  override async open (project: string): Promise<OpenedLog> {
    this.calls.push('open')
    return await super.open(project)
  }

  override async touch (projects: readonly string[]): Promise<void> {
    this.calls.push(`touch ${projects.join(',')}`)
    await super.touch(projects)
  }

  override async read (project: string, since: number, limit: number, epoch?: string, maxBytes?: number): Promise<ReadResult> {
    this.calls.push(`read ${String(maxBytes)}`)
    return await super.read(project, since, limit, epoch, maxBytes)
  }
}

function op (project: string, id: string): NewOp {
  return { project, id, userId: 'u', sessionId: 's', data: { id }, ts: 1 }
}

t.test('ops accepted during an outage reach the primary in order, once, and only then does the log switch back', async (t) => {
  const primary = new RedisOperationLog({ client: await redisClient(t, redis.url), keyPrefix: uniquePrefix() })
  const b = breaker(t)
  const { port: log, control } = FailoverOperationLog.create({ ...shared(b), fallback: memoryLog(100), primary })
  const before = await log.append(op('p', 'before'))
  t.equal(before.duplicate ? 0 : before.op.seq, 1)
  b.trip(new Error('outage'))
  t.equal(control.serving, 'fallback')
  t.equal(log.scope, 'instance', 'seqs are this instance\'s while on the fallback')
  const during = []
  for (const id of ['d1', 'd2', 'before', 'd3']) during.push(await log.append(op('p', id)))
  t.not(during[0]?.epoch, before.epoch, 'the fallback is a new epoch')
  t.equal(control.buffered, 4, 'an id the fallback has not seen is buffered; the primary dedups it')
  await control.resync()
  t.equal(control.serving, 'primary')
  t.equal(control.buffered, 0)
  const history = await log.read('p', 0, 100)
  t.equal(history.epoch, before.epoch, 'back on the primary\'s epoch')
  t.same(history.ops.map((o) => o.id), ['before', 'd1', 'd2', 'd3'], 'in the order they were accepted, each once')
})

t.test('passes open, touch, a read\'s maxBytes and create: false to the primary', async (t) => {
  const primary = new SpyLog()
  const log = FailoverOperationLog.create({ ...shared(breaker(t)), fallback: memoryLog(100), primary }).port
  t.match(await log.append({ ...op('absent', 'a'), create: false }), { missing: true }, 'create: false reaches the primary')
  const opened = await log.open('p')
  t.strictSame(opened, { epoch: (await primary.inner.head('p')).epoch, seq: 0, created: true }, 'open is the primary\'s')
  await log.touch(['p', 'q'])
  for (const id of ['x1', 'x2', 'x3']) await log.append({ ...op('p', id), data: 'd'.repeat(500) })
  t.equal((await log.read('p', 0, 10, opened.epoch, 600)).ops.length, 1, 'maxBytes bounds the page')
  t.strictSame(primary.calls, ['append', 'open', 'touch p,q', 'append', 'append', 'append', 'read 600'])
})

t.test('during an outage, open and touch serve from the fallback, and an op taken with create: false creates its log in the primary at re-sync', async (t) => {
  const primary = new RedisOperationLog({ client: await redisClient(t, redis.url), keyPrefix: uniquePrefix() })
  const b = breaker(t)
  const { port: log, control } = FailoverOperationLog.create({ ...shared(b), fallback: memoryLog(100), primary })
  const before = await log.open('p')
  b.trip(new Error('outage'))
  const during = await log.open('p')
  t.not(during.epoch, before.epoch, 'the fallback\'s own epoch')
  t.equal(during.created, true)
  await log.touch(['p'])
  t.match(await log.append({ ...op('new', 'n1'), create: false }), { duplicate: false, created: true, op: { seq: 1 } }, 'taken: the fallback cannot tell')
  t.equal((await primary.head('new')).epoch, NO_EPOCH, 'the primary has no log for it yet')
  await control.resync()
  t.equal(control.serving, 'primary')
  t.match((await log.read('new', 0, 10)).ops, [{ id: 'n1', seq: 1 }], 'the re-sync created it in the primary')
})

t.test('a primary that fails during re-sync keeps the log on its fallback with nothing lost', async (t) => {
  const primary = new ControlledLog()
  const b = breaker(t)
  const { port: log, control } = FailoverOperationLog.create({ ...shared(b), fallback: memoryLog(100), primary })
  b.trip(new Error('outage'))
  await log.append(op('p', 'x1'))
  await log.append(op('p', 'x2'))
  primary.mode = 'down'
  await t.rejects(control.resync())
  t.equal(control.serving, 'fallback')
  t.equal(control.buffered, 2)
  primary.mode = 'up'
  await control.resync()
  t.same((await primary.inner.read('p', 0, 10)).ops.map((o) => o.id), ['x1', 'x2'])
})

t.test('a call the primary does not answer in time falls back and opens the circuit', async (t) => {
  const hanging = new ControlledLog()
  hanging.mode = 'hang'
  const b = breaker(t)
  const log = FailoverOperationLog.create({ ...shared(b, 50), fallback: memoryLog(100), primary: hanging }).port
  const result = await log.append(op('p', 'slow'))
  t.equal(result.duplicate ? 0 : result.op.seq, 1, 'served by the fallback')
  t.equal(b.state, 'open')
})

t.test('a bad call is the caller\'s error, not an outage', async (t) => {
  const primary = new RedisOperationLog({ client: await redisClient(t, redis.url), keyPrefix: uniquePrefix() })
  const b = breaker(t)
  const { port: log, control } = FailoverOperationLog.create({ ...shared(b), fallback: memoryLog(100), primary })
  await t.rejects(log.append(op('bad project id', 'x')), TypeError)
  t.equal(b.state, 'closed')
  t.equal(control.serving, 'primary')
})

t.test('sessions that left during an outage are removed from the primary and handed out once to announce', async (t) => {
  const keyPrefix = uniquePrefix()
  const b = breaker(t)
  const primary = new RedisSessionStore({ client: await redisClient(t, redis.url), keyPrefix, instanceId: 'i', ttlMs: 30_000 })
  t.teardown(async () => { await primary.close() })
  const { port: store, control } = FailoverSessionStore.create({ ...shared(b), fallback: () => new MemorySessionStore({ ttlMs: 30_000 }), primary })
  const member = { sessionId: 's1', userId: 'u', presence: {}, joinedAt: 1 }
  await store.add('p', member)
  b.trip(new Error('outage'))
  await store.add('p', member)
  t.same(await store.remove('p', 's1'), member, 'the fallback knows the session')
  t.same((await primary.list('p')).map((m) => m.sessionId), ['s1'], 'the primary still lists it')
  await control.resync()
  t.same(await primary.list('p'), [], 'removed from the primary on re-sync')
  t.same(control.takeLeft(), [{ project: 'p', member }])
  t.same(control.takeLeft(), [], 'handed out once')
})

t.test('subscriptions made during an outage are made on the primary by re-sync, and dropped ones are undone', async (t) => {
  const keyPrefix = uniquePrefix()
  const b = breaker(t)
  const primary = new RedisBroadcaster({ client: await redisClient(t, redis.url), subscriber: await redisClient(t, redis.url), keyPrefix, origin: 'a' })
  t.teardown(async () => { await primary.close() })
  const { port: f, control } = FailoverBroadcaster.create({ ...shared(b), primary })
  await f.subscribe('kept', () => {})
  await f.subscribe('dropped', () => {})
  b.trip(new Error('outage'))
  await f.unsubscribe('dropped')
  await f.subscribe('new', () => {})
  t.same([...await primary.subscriptions()].sort(), ['dropped', 'kept'], 'nothing reached Redis during the outage')
  await control.resync()
  t.same([...await primary.subscriptions()].sort(), ['kept', 'new'])
  t.equal(control.serving, 'primary')
})
