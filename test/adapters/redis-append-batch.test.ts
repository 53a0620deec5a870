/**
 * RedisOperationLog batches the appends of one turn (issue 17): the ops of
 * one project started in the same event-loop turn go to Redis in one APPEND
 * script call, with one PUBLISH, and each caller still gets what an append
 * alone gives. Redis' own counters (INFO commandstats) and a client that
 * records what it sends show the calls; this file has a redis-server of its
 * own, so the counters are its tests' alone.
 */
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { createRedisOperationLog, type RedisOperationLog, type RedisOperationLogOptions } from '../../adapters/redis/operation-log.js'
import { RedisBroadcaster } from '../../adapters/redis/broadcaster.js'
import { RedisSnapshotStore } from '../../adapters/redis/snapshot-store.js'
import { redisKeys } from '../../adapters/redis/keys.js'
import { APPEND, type RedisCommandClient } from '../../adapters/redis/scripts.js'
import { isRedisOutage } from '../../adapters/redis/connection-health.js'
import { FailoverOperationLog } from '../../adapters/failover/index.js'
import { MemoryOperationLog } from '../../adapters/memory/operation-log.js'
import { CircuitBreaker } from '../../lib/breaker.js'
import { Watchdog } from '../../lib/watchdog.js'
import { idempotencyKey } from '../../lib/ids.js'
import { opFrame, storedOpJson } from '../../lib/protocol/op-frame.js'
import type { AppendResult, LogMissing, NewOp } from '../../ports/operation-log.js'
import type { BroadcastMessage } from '../../ports/broadcaster.js'
import { keysUnder, redisClient, startRedis, uniquePrefix, recording } from '../helpers/redis.js'
import { accepted, newOp, range } from '../helpers/ops.js'
import { Recorder } from '../helpers/wait.js'

const redis = await startRedis(t)
const shared = await redisClient(t, redis.url)

/** The arguments of an APPEND call before the ops: EVALSHA sha numkeys, 6 keys, 10 arguments. */
const APPEND_HEAD = 3 + APPEND.numberOfKeys + 10

let counter = 0

function uniqueProject (): string {
  counter += 1
  return `batch-${counter}-${randomBytes(3).toString('hex')}`
}

/** The APPEND calls among `commands`, each as the number of ops it carried. */
function appendCalls (commands: readonly string[][]): number[] {
  return commands
    .filter(command => command[0] === 'EVAL' ? command[1] === APPEND.source : command[0] === 'EVALSHA' && command[1] === APPEND.sha1)
    .map(command => (command.length - APPEND_HEAD) / 3)
}

/** Calls of each command Redis has run since it started (INFO commandstats), scripts' own commands included. */
async function commandCalls (): Promise<Map<string, number>> {
  const info = await shared.info('commandstats')
  const calls = new Map<string, number>()
  for (const match of info.matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)) calls.set(match[1] as string, Number(match[2]))
  return calls
}

/** What `work` resolved, and how many times Redis ran a command meanwhile (a delta of its own counters). */
async function counted<T> (work: () => Promise<T>): Promise<{ result: T, calls: (name: string) => number }> {
  const before = await commandCalls()
  const result = await work()
  const after = await commandCalls()
  return { result, calls: (name) => (after.get(name) ?? 0) - (before.get(name) ?? 0) }
}

function openLog (t: Test, client: RedisCommandClient, options: Partial<RedisOperationLogOptions> = {}): RedisOperationLog {
  const log = createRedisOperationLog({ client, keyPrefix: uniquePrefix(), historyLimit: 1000, ...options })
  t.teardown(async () => { await log.close() })
  return log
}

t.test('100 appends started in one turn are one script call, with contiguous seqs in call order', async t => {
  const spy = recording(shared)
  const log = openLog(t, spy.client)
  const project = uniqueProject()
  await log.open(project)
  spy.commands.length = 0
  const { result, calls } = await counted(async () =>
    await Promise.all(range(1, 100).map(async i => await log.append(newOp(project, { i })))))
  const ops = result.map(accepted)
  t.strictSame(ops.map(op => op.seq), range(1, 100), 'seqs 1..100 in call order')
  t.strictSame(ops.map(op => op.data), range(1, 100).map(i => ({ i })), 'each caller got its own op')
  t.equal(calls('eval') + calls('evalsha'), 1, 'Redis ran one script call, not 100')
  t.equal(calls('xadd'), 100, 'which appended the 100 ops')
  t.strictSame(appendCalls(spy.commands), [100], 'one APPEND of 100 ops was sent')
  t.strictSame((await log.read(project, 0, 1000)).ops, ops, 'the log holds them at those seqs')
})

t.test('appends reached after an await in the same turn join its batch; an append never waits past its turn', async t => {
  const spy = recording(shared)
  const log = openLog(t, spy.client)
  const project = uniqueProject()
  await log.open(project)
  spy.commands.length = 0
  // From an I/O-like callback (a macrotask, as a socket's data is), then from
  // continuations queued after its first append (a host's check that
  // resolves at once, a chain of awaits).
  const calls = await new Promise<Array<Promise<AppendResult | LogMissing>>>(resolve => {
    setImmediate(() => {
      const first = range(1, 10).map(async i => await log.append(newOp(project, i)))
      const later = (async () => {
        await Promise.resolve()
        const some = range(11, 15).map(async i => await log.append(newOp(project, i)))
        await Promise.resolve()
        await Promise.resolve()
        return [...some, ...range(16, 20).map(async i => await log.append(newOp(project, i)))]
      })()
      resolve(later.then(rest => [...first, ...rest]))
    })
  })
  const ops = (await Promise.all(calls)).map(accepted)
  t.strictSame(ops.map(op => op.data), range(1, 20), 'in call order')
  t.strictSame(ops.map(op => op.seq), range(1, 20))
  t.strictSame(appendCalls(spy.commands), [20], 'one call for the whole turn')

  spy.commands.length = 0
  const pending = log.append(newOp(project, 'alone'))
  await new Promise(resolve => { setImmediate(resolve) })
  t.strictSame(appendCalls(spy.commands), [1], 'sent within its turn, before the loop went on to the next phase')
  t.equal(accepted(await pending).seq, 21)
})

t.test('the second of two ops with one id in a batch is a duplicate of the first; another user\'s op with that id is not', async t => {
  const spy = recording(shared)
  const log = openLog(t, spy.client)
  const project = uniqueProject()
  const earlier = accepted(await log.append(newOp(project, 'earlier', 'kept-id')))
  spy.commands.length = 0
  const results = await Promise.all([
    log.append(newOp(project, 'a', 'same-id')),
    log.append(newOp(project, 'b', 'same-id')),
    log.append(newOp(project, 'c', 'same-id', 'user-2')),
    log.append(newOp(project, 'retry', 'kept-id')),
    log.append(newOp(project, 'd'))
  ])
  t.strictSame(appendCalls(spy.commands), [5], 'one call')
  const epoch = results[0]?.epoch
  t.match(results[0], { duplicate: false, created: false, op: { seq: 2, data: 'a' } })
  t.strictSame(results[1], { duplicate: true, epoch, seq: 2, id: 'same-id' }, 'the second with that id: the seq of the first')
  t.match(results[2], { duplicate: false, op: { seq: 3, data: 'c', userId: 'user-2' } }, 'another user\'s op with that id is another op')
  t.strictSame(results[3], { duplicate: true, epoch, seq: earlier.seq, id: 'kept-id' }, 'an id of an earlier call')
  t.match(results[4], { duplicate: false, op: { seq: 4, data: 'd' } }, 'seqs stay contiguous after duplicates')
  t.strictSame((await log.read(project, 0, 10)).ops.map(op => op.data), ['earlier', 'a', 'c', 'd'], 'nothing appended for the duplicates')
})

t.test('create: false ops of a batch are missing until an op of the batch creates the log, and appended after it', async t => {
  const prefix = uniquePrefix()
  const spy = recording(shared)
  const log = openLog(t, spy.client, { keyPrefix: prefix, idleTtlMs: 60_000 })
  const project = uniqueProject()
  const results = await Promise.all([
    log.append({ ...newOp(project, 1), create: false }),
    log.append({ ...newOp(project, 2), create: false }),
    log.append(newOp(project, 3)),
    log.append({ ...newOp(project, 4), create: false }),
    log.append(newOp(project, 5))
  ])
  t.strictSame(appendCalls(spy.commands), [5], 'one call')
  t.strictSame(results.slice(0, 2), [{ duplicate: false, created: false, missing: true }, { duplicate: false, created: false, missing: true }], 'no log yet: missing, as alone')
  t.match(results[2], { duplicate: false, created: true, op: { seq: 1, data: 3 } }, 'the op that creates the log says so')
  t.match(results[3], { duplicate: false, created: false, op: { seq: 2, data: 4 } }, 'create: false after it: the log exists')
  t.match(results[4], { duplicate: false, created: false, op: { seq: 3, data: 5 } })
  t.equal(new Set(results.slice(2).map(r => r.missing === true ? null : r.epoch)).size, 1, 'one epoch')
  const meta = redisKeys(prefix).opLog(project).meta
  t.ok(await shared.pTTL(meta) > 0, 'the idle TTL is set')

  const none = uniqueProject()
  const missing = await Promise.all(range(1, 3).map(async i => await log.append({ ...newOp(none, i), create: false })))
  t.strictSame(missing, range(1, 3).map(() => ({ duplicate: false, created: false, missing: true })), 'a batch of create: false ops on a project without a log')
  t.strictSame((await keysUnder(shared, prefix)).filter(key => key.includes(none)), [], 'creates nothing')
})

t.test('an op that fails validation rejects alone, before anything is sent, and its batch-mates are appended', async t => {
  const spy = recording(shared)
  const log = openLog(t, spy.client)
  const project = uniqueProject()
  const calls = [
    log.append(newOp(project, 'one')),
    log.append(newOp(project, 'bad id', 'not valid!')),
    log.append(newOp(project, 'two')),
    log.append({ ...newOp(project), data: undefined }),
    log.append(newOp('bad project}', 'elsewhere')),
    log.append(newOp(project, 'three'))
  ]
  const settled = await Promise.allSettled(calls)
  t.strictSame(settled.map(s => s.status), ['fulfilled', 'rejected', 'fulfilled', 'rejected', 'rejected', 'fulfilled'])
  for (const i of [1, 3, 4]) {
    const s = settled[i]
    t.ok(s?.status === 'rejected' && s.reason instanceof TypeError, `call ${i} rejects with a TypeError`)
  }
  const ops = [settled[0], settled[2], settled[5]].map(s => s?.status === 'fulfilled' ? accepted(s.value) : null)
  t.strictSame(ops.map(op => [op?.seq, op?.data]), [[1, 'one'], [2, 'two'], [3, 'three']], 'the valid ops, in order, with contiguous seqs')
  t.strictSame(appendCalls(spy.commands), [3], 'one call, with the three valid ops only')
})

t.test('a failing call rejects every op of its batch with Redis\' error; the other projects\' batches of the turn go through, and a retry is safe', async t => {
  const prefix = uniquePrefix()
  const log = openLog(t, shared, { keyPrefix: prefix })
  const [broken, fine] = [uniqueProject(), uniqueProject()]
  const meta = redisKeys(prefix).opLog(broken).meta
  await shared.set(meta, 'not a hash')
  const ops = [newOp(broken, 'a'), newOp(fine, 'b'), newOp(broken, 'c'), newOp(fine, 'd')]
  const settled = await Promise.allSettled(ops.map(async op => await log.append(op)))
  for (const i of [0, 2]) {
    const s = settled[i]
    t.ok(s?.status === 'rejected' && /WRONGTYPE/.test(String(s.reason)), `op ${i} of the failing project rejects with WRONGTYPE`)
  }
  t.strictSame([settled[1], settled[3]].map(s => s?.status === 'fulfilled' ? accepted(s.value).seq : null), [1, 2], 'the other project\'s ops are appended')
  await shared.del(meta)
  const retried = await Promise.all([ops[0], ops[2]].map(async op => accepted(await log.append(op as NewOp))))
  t.strictSame(retried.map(op => [op.seq, op.data]), [[1, 'a'], [2, 'c']], 'the same ops retried with their ids are appended once the key is fixed')
})

/** A broadcaster of instance `origin` on connections of its own, closed at the end of `t`. */
async function broadcaster (t: Test, keyPrefix: string, origin: string): Promise<RedisBroadcaster> {
  const b = new RedisBroadcaster({
    client: await redisClient(t, redis.url),
    subscriber: await redisClient(t, redis.url),
    keyPrefix,
    origin
  })
  t.teardown(async () => { await b.close() })
  return b
}

t.test('another instance receives every op of a batch, in seq order, from one PUBLISH, as if they were published one by one', async t => {
  const prefix = uniquePrefix()
  const project = uniqueProject()
  const log = openLog(t, shared, { keyPrefix: prefix, publishOrigin: 'a' })
  const [own, other, third] = [await broadcaster(t, prefix, 'a'), await broadcaster(t, prefix, 'b'), await broadcaster(t, prefix, 'c')]
  const echoes = new Recorder<BroadcastMessage>()
  const received = new Recorder<BroadcastMessage>()
  await own.subscribe(project, echoes.push)
  await other.subscribe(project, received.push)
  await log.open(project)
  const { result, calls } = await counted(async () =>
    await Promise.all(range(1, 40).map(async i => await log.append(newOp(project, { i, text: 'line\nbreak "quoted" }}}' })))))
  const ops = result.map(accepted)
  t.equal(calls('publish'), 1, 'one PUBLISH for the 40 ops')
  const messages = await received.until(items => items.length >= 40, 'the 40 ops')
  const { epoch } = await log.head(project)
  t.strictSame(messages, ops.map(op => ({ kind: 'op', epoch, op })), 'one op message each, in seq order')
  t.strictSame(messages.map(m => m.kind === 'op' ? opFrame(m.op) : null), ops.map(op => opFrame({ ...op })),
    'each frame cut from the batch text equals a freshly serialised one')

  // Pub/Sub keeps a channel's order per connection: once the marker is in, the batch was handled before it.
  await third.publish(project, { kind: 'presence', sessionId: 's', userId: 'u', state: { marker: true } })
  const mine = await echoes.until(items => items.length >= 1, 'the marker')
  t.match(mine, [{ kind: 'presence', state: { marker: true } }], 'the publishing instance drops its own batch, unread')
})

t.test('a turn\'s ops beyond 256 or beyond 1 MiB go in the next call, in order', async t => {
  const spy = recording(shared)
  const log = openLog(t, spy.client, { historyBytes: 64 * 1024 * 1024 })
  const many = uniqueProject()
  const ops = (await Promise.all(range(1, 600).map(async i => await log.append(newOp(many, i))))).map(accepted)
  t.strictSame(ops.map(op => op.seq), range(1, 600), 'contiguous, in call order')
  t.strictSame(appendCalls(spy.commands), [256, 256, 88], 'at most 256 ops per call')

  spy.commands.length = 0
  const big = uniqueProject()
  const kb100 = 'x'.repeat(100 * 1024)
  const large = (await Promise.all(range(1, 24).map(async i => await log.append(newOp(big, { i, kb100 }))))).map(accepted)
  t.strictSame(large.map(op => op.seq), range(1, 24))
  t.strictSame(appendCalls(spy.commands), [10, 10, 4], 'ops of 100 KiB: ten per call')
  for (const command of spy.commands) {
    const bytes = command.slice(APPEND_HEAD).reduce((sum, arg) => sum + Buffer.byteLength(arg), 0)
    t.ok(bytes <= 1024 * 1024, `a call carries ${bytes} bytes of ops`)
  }

  spy.commands.length = 0
  const huge = uniqueProject()
  const alone = (await Promise.all([newOp(huge, 'small'), newOp(huge, 'x'.repeat(1536 * 1024)), newOp(huge, 'small')]
    .map(async op => await log.append(op)))).map(accepted)
  t.strictSame(alone.map(op => op.seq), [1, 2, 3])
  t.strictSame(appendCalls(spy.commands), [1, 1, 1], 'an op larger than the bound goes alone, and the next one after it')

  spy.commands.length = 0
  const tuned = openLog(t, spy.client, { maxBatchOps: 2, maxBatchBytes: 10_000 })
  const five = uniqueProject()
  await Promise.all(range(1, 5).map(async i => await tuned.append(newOp(five, i))))
  t.strictSame(appendCalls(spy.commands), [2, 2, 1], 'the bounds are options')
  for (const name of ['maxBatchOps', 'maxBatchBytes']) {
    t.throws(() => createRedisOperationLog({ client: shared, [name]: 0 }), RangeError, `${name} 0`)
  }
})

t.test('trims the history, remembers the ids and honours a snapshot as appending the ops one call at a time would', async t => {
  const options = { historyLimit: 3, historyBytes: 2500, idRetention: 4 }
  const prefix = uniquePrefix()
  const log = openLog(t, shared, { keyPrefix: prefix, ...options })
  const snapshots = new RedisSnapshotStore({ client: shared, keyPrefix: prefix, ...options })
  const [batched, alone] = [uniqueProject(), uniqueProject()]
  const sizes = [100, 900, 100, 100, 1200, 100, 100, 100, 800, 100, 100]
  const data = (n: number): string => 'd'.repeat(n)
  // The same ops, with the same ids, and the same snapshot between two runs of them.
  const ops = (project: string): NewOp[] => sizes.map((n, i) => ({ project, id: `same-${i}`, userId: 'u', sessionId: null, data: data(n), ts: i }))
  const [first, second] = [(p: string) => ops(p).slice(0, 5), (p: string) => ops(p).slice(5)]
  await Promise.all(first(batched).map(async op => await log.append(op)))
  for (const op of first(alone)) await log.append(op)
  for (const project of [batched, alone]) {
    const { epoch } = await log.head(project)
    t.match(await snapshots.put({ project, epoch, seq: 4, state: 'at 4' }), { stored: true })
  }
  await Promise.all(second(batched).map(async op => await log.append(op)))
  for (const op of second(alone)) await log.append(op)

  const state = async (project: string): Promise<unknown> => {
    const keys = redisKeys(prefix).opLog(project)
    const meta = await shared.hGetAll(keys.meta)
    const read = await log.read(project, 0, 100)
    const oldest = await log.read(project, 11 - (await shared.lLen(keys.sizes)), 100)
    return {
      seq: meta.seq,
      bytes: meta.bytes,
      sizes: await shared.lRange(keys.sizes, 0, -1),
      ids: { ...await shared.hGetAll(keys.ids) },
      oldIds: { ...await shared.hGetAll(keys.oldIds) },
      resetFromStart: read.reset,
      kept: oldest.ops.map(op => [op.seq, op.id])
    }
  }
  const [b, a] = [await state(batched), await state(alone)]
  t.strictSame(b, a, 'the same history, byte counter, sizes and ids')
  t.match(b, { seq: '11', resetFromStart: true }, 'and it was trimmed')
  t.equal(Number((b as { bytes: string }).bytes), (b as { sizes: string[] }).sizes.reduce((sum, s) => sum + Number(s), 0), 'bytes: the sum of the kept sizes')
  const last = ops(batched)[10] as NewOp
  t.equal((b as { sizes: string[] }).sizes.at(-1), String(Buffer.byteLength(storedOpJson(last))), 'a size is the op\'s stored JSON')
  t.equal((b as { ids: Record<string, string> }).ids[idempotencyKey('u', 'same-10')], '11', 'the newest id is in the newest generation')
  t.equal((await log.append(last)).duplicate, true, 'a remembered id is still a duplicate')
})

t.test('a re-sync after an outage appends the outage buffer in one call per batch of the buffer, in order', async t => {
  const spy = recording(shared)
  const primary = openLog(t, spy.client)
  const breaker = new CircuitBreaker({ probe: async () => {}, probeDelayMs: 60_000 })
  t.teardown(() => { breaker.dispose() })
  const { port: log, control } = FailoverOperationLog.create({
    breaker,
    watchdog: new Watchdog(5000),
    timeoutMs: 5000,
    isOutage: isRedisOutage,
    primary,
    fallback: () => new MemoryOperationLog({ historyLimit: 1000 })
  })
  t.teardown(async () => { await log.close() })
  const project = uniqueProject()
  breaker.trip(new Error('test outage'))
  for (const i of range(1, 250)) await log.append(newOp(project, i))
  t.equal(control.buffered, 250)
  spy.commands.length = 0
  await control.resync()
  t.equal(control.serving, 'primary')
  t.strictSame(appendCalls(spy.commands), [1, 100, 100, 49], 'the first op alone (it loads the script), then 100 ops per call')
  const read = await primary.read(project, 0, 1000)
  t.strictSame(read.ops.map(op => op.data), range(1, 250), 'every buffered op, once, in the order it was accepted')
})
