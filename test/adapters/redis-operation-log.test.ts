import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { createRedisOperationLog, type RedisOperationLog } from '../../adapters/redis/operation-log.js'
import { RedisSnapshotStore } from '../../adapters/redis/snapshot-store.js'
import { idempotencyKey } from '../../lib/ids.js'
import { redisKeys } from '../../adapters/redis/keys.js'
import { decodeEnvelope, decodeMessage } from '../../adapters/redis/codec.js'
import { opFrame, storedOpJson } from '../../lib/protocol/op-frame.js'
import { APPEND, OPERATION_LOG_SCRIPTS, type RedisCommandClient } from '../../adapters/redis/scripts.js'
import type { AppendResult, NewOp } from '../../ports/operation-log.js'
import { NO_EPOCH, type Op } from '../../lib/types.js'
import { operationLogContract } from '../contracts/operation-log.js'
import { keysUnder, redisClient, startRedis, uniquePrefix, recording, type TestRedisClient } from '../helpers/redis.js'
import { accepted, newOp, range } from '../helpers/ops.js'
import { Recorder, waitFor } from '../helpers/wait.js'

const redis = await startRedis(t)
const shared = await redisClient(t, redis.url)

operationLogContract(t, 'RedisOperationLog', async (options) => {
  const log = createRedisOperationLog({ client: shared, keyPrefix: uniquePrefix(), ...options })
  return { log, close: async () => { await log.close() } }
})

let counter = 0

function uniqueProject (): string {
  counter += 1
  return `project-${counter}-${randomBytes(3).toString('hex')}`
}

function isIncreasing (values: readonly number[]): boolean {
  return values.every((value, i) => i === 0 || value > (values[i - 1] as number))
}

interface LogOptions {
  prefix?: string
  historyLimit?: number
  historyBytes?: number
  idRetention?: number
  publishOrigin?: string
  idleTtlMs?: number
}

/** A log on `client` under a prefix of its own, closed at the end of `t`. */
function openLog (t: Test, client: RedisCommandClient, options: LogOptions = {}): RedisOperationLog {
  const { prefix, ...rest } = options
  const log = createRedisOperationLog({ client, keyPrefix: prefix ?? uniquePrefix(), historyLimit: 1000, ...rest })
  t.teardown(async () => { await log.close() })
  return log
}

/** What Redis Cluster hashes to find a key's slot: the part between the first `{` and the next `}`, when not empty. */
function hashTag (key: string): string {
  const open = key.indexOf('{')
  const close = open === -1 ? -1 : key.indexOf('}', open + 1)
  return close > open + 1 ? key.slice(open + 1, close) : key
}

async function waitUntilReady (client: TestRedisClient): Promise<void> {
  const pong = async (): Promise<boolean> => await client.ping().then(reply => reply === 'PONG', () => false)
  await waitFor(async () => client.isReady && await pong(), { what: 'the client to reconnect', timeoutMs: 10_000, intervalMs: 20 })
}

t.test('gives two instances sharing one Redis one contiguous seq sequence under concurrent appends', async t => {
  const prefix = uniquePrefix()
  const other = await redisClient(t, redis.url)
  const logs = [openLog(t, shared, { prefix }), openLog(t, other, { prefix })]
  const project = uniqueProject()
  const calls: Array<Array<Promise<AppendResult>>> = [[], []]
  for (let i = 0; i < 300; i++) {
    for (const [n, log] of logs.entries()) calls[n]?.push(log.append(newOp(project, { n, i })))
  }
  const perInstance = await Promise.all(calls.map(async c => (await Promise.all(c)).map(accepted)))
  const seqs = perInstance.map(ops => ops.map(op => op.seq))
  for (const [n, list] of seqs.entries()) t.ok(isIncreasing(list), `instance ${n} got increasing seqs in call order`)
  t.strictSame(seqs.flat().sort((a, b) => a - b), range(1, 600), 'seqs 1..600, each once, across both instances')
  const epochs = new Set(await Promise.all(logs.map(async log => (await log.head(project)).epoch)))
  t.equal(epochs.size, 1, 'both instances see one epoch')
  const read = await logs[1]?.read(project, 0, 1000)
  t.strictSame(read?.ops, perInstance.flat().sort((a, b) => a.seq - b.seq), 'either instance reads every op at its seq')
})

t.test('creates one epoch for a project when instances open it at the same time', async t => {
  const prefix = uniquePrefix()
  const other = await redisClient(t, redis.url)
  const logs = [openLog(t, shared, { prefix }), openLog(t, other, { prefix })]
  const project = uniqueProject()
  const opened = await Promise.all(range(1, 50).flatMap(() => logs.map(async log => await log.open(project))))
  t.equal(new Set(opened.map(head => head.epoch)).size, 1, 'one epoch')
  t.equal(opened.filter(head => head.created).length, 1, 'created once')
  t.strictSame(new Set(opened.map(head => head.seq)), new Set([0]), 'head 0')
})

t.test('keeps the stream near historyLimit and the ids near idRetention while the last historyLimit ops stay readable', async t => {
  const historyLimit = 200
  const idRetention = 500
  const prefix = uniquePrefix()
  const log = openLog(t, shared, { prefix, historyLimit, idRetention })
  const project = uniqueProject()
  const keys = redisKeys(prefix).opLog(project)
  const nodeEntries = Number((await shared.configGet('stream-node-max-entries'))['stream-node-max-entries'])
  t.ok(nodeEntries > 0, `stream-node-max-entries is ${nodeEntries}`)
  const total = 3000
  const acked: Op[] = []
  for (let i = 0; i < total; i += 250) {
    acked.push(...(await Promise.all(range(1, 250).map(async () => await log.append(newOp(project))))).map(accepted))
    const length = await shared.xLen(keys.ops)
    t.ok(length <= historyLimit + nodeEntries, `after ${acked.length} appends the stream holds ${length} entries`)
  }
  const length = await shared.xLen(keys.ops)
  t.ok(length >= historyLimit && length <= historyLimit + nodeEntries, `the stream holds ${length} entries at the end`)
  t.equal(await shared.lLen(keys.sizes), historyLimit, 'the sizes count exactly the kept ops')
  const ids = await shared.hLen(keys.ids) + await shared.hLen(keys.oldIds)
  t.ok(ids >= idRetention && ids <= 2 * idRetention, `${ids} ids are remembered, in two generations of at most idRetention`)
  const read = await log.read(project, total - historyLimit, total)
  t.equal(read.reset, false)
  t.strictSame(read.ops, acked.slice(-historyLimit), 'the last historyLimit ops are readable')
  t.equal((await log.read(project, 0, 10)).reset, true, 'the first ops are gone')
  const old = acked[total - 2 * idRetention - 1] as Op
  const recent = acked[total - idRetention] as Op
  t.equal((await log.append(newOp(project, null, recent.id))).duplicate, true, 'an id within the retention is a duplicate')
  t.equal(accepted(await log.append(newOp(project, null, old.id))).seq, total + 1, 'an id beyond twice the retention is appended again')
})

t.test('stores a project under exactly the documented keys, all in one hash slot', async t => {
  const prefix = uniquePrefix()
  const log = openLog(t, shared, { prefix })
  const project = uniqueProject()
  t.strictSame(await keysUnder(shared, prefix), [], 'nothing before the first call')
  await log.head(project)
  await log.read(project, 0, 10)
  await log.read(project, 5, 10, 'some-epoch')
  await log.touch([project])
  t.equal((await log.append({ ...newOp(project), create: false })).missing, true)
  t.strictSame(await keysUnder(shared, prefix), [], 'head, read, touch and an append with create: false create nothing')
  await log.open(project)
  const keys = redisKeys(prefix).opLog(project)
  t.strictSame(await keysUnder(shared, prefix), [keys.meta], 'open() creates the meta hash only')
  const first = accepted(await log.append(newOp(project, { a: 1 })))
  t.strictSame(await keysUnder(shared, prefix), [keys.ids, keys.meta, keys.ops, keys.sizes].sort(), 'an append writes the ops, their sizes and the ids')
  const base = `${prefix}:{${project}}`
  t.strictSame(keys.all, [`${base}:meta`, `${base}:ops`, `${base}:sizes`, `${base}:ids`, `${base}:ids:old`, `${base}:snap`])
  t.strictSame([keys.meta, keys.ops, keys.sizes, keys.ids, keys.oldIds, keys.snap], keys.all)
  t.equal(redisKeys(prefix).channel(project), `${prefix}:{${project}}:ch`)
  t.strictSame(await Promise.all([keys.meta, keys.ops, keys.sizes, keys.ids].map(async key => await shared.type(key))), ['hash', 'stream', 'list', 'hash'])
  t.strictSame(keys.all.map(hashTag), keys.all.map(() => project), 'the project is the hash tag of every key: one slot')
  const meta = await shared.hGetAll(keys.meta)
  t.strictSame(Object.keys(meta).sort(), ['bytes', 'epoch', 'seq'])
  t.equal(meta.seq, '1')
  const size = Buffer.byteLength(storedOpJson(first))
  t.equal(meta.bytes, String(size), 'bytes: the size of the kept ops')
  t.strictSame(await shared.lRange(keys.sizes, 0, -1), [String(size)], 'one size per kept op')
  const entries = await shared.xRange(keys.ops, '-', '+') ?? []
  t.equal(entries.length, 1)
  t.equal(entries[0]?.id, '1-0', 'the entry id is the seq')
  t.strictSame(Object.keys(entries[0]?.message ?? {}), ['op'], 'one field, op')
  t.strictSame(JSON.parse(entries[0]?.message.op ?? 'null'), { id: first.id, userId: 'user-1', sessionId: 'session-1', data: { a: 1 }, ts: first.ts },
    'the op as JSON, without project and seq')
  t.equal(await shared.hGet(keys.ids, idempotencyKey('user-1', first.id)), '1', 'the op id, within its sender\'s, maps to its seq')
})

t.test('rejects an invalid project id, op id or key prefix before any command reaches Redis', async t => {
  const prefix = uniquePrefix()
  const spy = recording(shared)
  const log = openLog(t, spy.client, { prefix })
  const bad = ['', 'has space', 'x{y}', 'a:b', 'new\nline', 'é', 'a'.repeat(129), '*']
  for (const project of bad) {
    await t.rejects(log.append(newOp(project)), TypeError, `append to ${JSON.stringify(project)}`)
    await t.rejects(log.read(project, 0, 10), TypeError, `read of ${JSON.stringify(project)}`)
    await t.rejects(log.head(project), TypeError, `head of ${JSON.stringify(project)}`)
    await t.rejects(log.open(project), TypeError, `open of ${JSON.stringify(project)}`)
    await t.rejects(log.touch([uniqueProject(), project]), TypeError, `touch of ${JSON.stringify(project)}`)
  }
  for (const id of ['', 'with space', 'a'.repeat(65), 'a.b']) {
    await t.rejects(log.append(newOp(uniqueProject(), null, id)), TypeError, `op id ${JSON.stringify(id)}`)
  }
  await t.rejects(log.append({ ...newOp(uniqueProject()), data: undefined }), TypeError, 'data that is not a JSON value')
  await t.rejects(log.read(uniqueProject(), -1, 10), RangeError, 'a negative since')
  t.strictSame(spy.commands, [], 'no command was sent')
  t.strictSame(await keysUnder(shared, prefix), [], 'no key was created')
  for (const keyPrefix of ['', 'a b', 'x{y}', 'a'.repeat(65), 'p*']) {
    t.throws(() => createRedisOperationLog({ client: spy.client, keyPrefix }), TypeError, `prefix ${JSON.stringify(keyPrefix)}`)
  }
  t.throws(() => createRedisOperationLog({ client: spy.client, historyLimit: 0 }), RangeError, 'historyLimit 0')
  t.throws(() => createRedisOperationLog({ client: spy.client, historyLimit: 100, idRetention: 99 }), RangeError, 'idRetention below historyLimit')
  for (const name of ['historyBytes', 'pageBytes', 'idleTtlMs', 'idRetention']) {
    t.throws(() => createRedisOperationLog({ client: spy.client, [name]: 0 }), RangeError, `${name} 0`)
  }
  const good = uniqueProject()
  await log.head(good)
  t.match(spy.commands[0]?.[0], /^EVAL(SHA)?$/, 'a valid project does reach Redis')
})

t.test('keeps the epoch and the ops across adapter instances on the same Redis', async t => {
  const prefix = uniquePrefix()
  const project = uniqueProject()
  const first = openLog(t, shared, { prefix })
  const acked = [accepted(await first.append(newOp(project, 1))), accepted(await first.append(newOp(project, 2)))]
  const before = await first.head(project)
  await first.close()
  // A restarted server process: a new client and a new adapter.
  const log = openLog(t, await redisClient(t, redis.url), { prefix })
  t.strictSame(await log.head(project), before, 'same epoch and head')
  t.strictSame(await log.read(project, 0, 10, before.epoch), { epoch: before.epoch, head: 2, ops: acked, reset: false })
  t.strictSame(await log.append(newOp(project, null, acked[0]?.id)), { duplicate: true, epoch: before.epoch, seq: 1, id: acked[0]?.id }, 'ids are remembered')
})

t.test('starts a new epoch when the keys are lost, so a read with the old epoch resets', async t => {
  const prefix = uniquePrefix()
  const log = openLog(t, shared, { prefix })
  const project = uniqueProject()
  await log.append(newOp(project))
  await log.append(newOp(project))
  const old = await log.head(project)
  const keys = redisKeys(prefix).opLog(project)
  t.equal(await shared.del([...keys.all]), 4)
  const read = await log.read(project, 2, 10, old.epoch)
  t.strictSame(read, { epoch: NO_EPOCH, head: 0, ops: [], reset: true }, 'no log: the old epoch resets')
  t.strictSame(await log.head(project), { epoch: NO_EPOCH, seq: 0 })
  const next = await log.append(newOp(project))
  t.equal(accepted(next).seq, 1, 'the new epoch counts from 1')
  t.not(next.epoch, old.epoch, 'a new epoch')
})

t.test('continues seqs above the ops still stored when only the epoch is lost', async t => {
  const prefix = uniquePrefix()
  const log = openLog(t, shared, { prefix })
  const project = uniqueProject()
  const keys = redisKeys(prefix).opLog(project)
  const acked = [accepted(await log.append(newOp(project))), accepted(await log.append(newOp(project))), accepted(await log.append(newOp(project)))]
  const old = await log.head(project)

  await shared.del(keys.meta)
  const next = await log.append(newOp(project))
  t.not(next.epoch, old.epoch, 'a new epoch')
  t.equal(accepted(next).seq, 4, 'the stream\'s ops keep their seqs; the next one follows them')
  t.strictSame(await log.append(newOp(project, null, acked[0]?.id)), { duplicate: true, epoch: next.epoch, seq: 1, id: acked[0]?.id }, 'remembered ids keep their seqs')

  // An emptied stream still remembers its last id, and XADD refuses to go below it.
  await shared.del([keys.meta, keys.ids])
  await shared.xTrim(keys.ops, 'MAXLEN', 0)
  t.equal(await shared.xLen(keys.ops), 0, 'the stream is empty')
  t.equal(accepted(await log.append(newOp(project))).seq, 5, 'the seq continues above the stream\'s last id')

  // Only the ids survive: seqs continue above them, so a duplicate never names another op's seq.
  await shared.del([keys.meta, keys.ops])
  t.match(await log.open(project), { seq: 5, created: true }, 'the head continues above the remembered ids')
})

t.test('starts a new epoch when a key of a log with ops is lost alone, so its readers reset', async t => {
  const prefix = uniquePrefix()
  const log = openLog(t, shared, { prefix })
  for (const lost of ['ops', 'sizes', 'ids'] as const) {
    const project = uniqueProject()
    const k = redisKeys(prefix).opLog(project)
    const acked = [accepted(await log.append(newOp(project))), accepted(await log.append(newOp(project)))]
    const old = await log.head(project)
    t.equal(await shared.del(k[lost]), 1)
    const next = await log.append(newOp(project))
    t.match(next, { duplicate: false, created: true, op: { seq: 3 } }, `${lost} lost: the seqs go on, in a new log`)
    t.not(next.epoch, old.epoch, `${lost} lost: a new epoch`)
    t.equal((await log.read(project, 2, 10, old.epoch)).reset, true, `${lost} lost: readers of the old epoch reset`)
    t.equal((await log.read(project, 0, 10, next.epoch)).reset, true, `${lost} lost: the old history is not served in the new epoch`)
    t.strictSame((await log.read(project, 2, 10, next.epoch)).ops, [accepted(next)], `${lost} lost: the new op is`)
    if (lost !== 'ids') t.equal((await log.append(newOp(project, null, acked[0]?.id))).duplicate, true, `${lost} lost: the ids still hold`)
  }
})

t.test('formats large seqs as integers in stream ids', async t => {
  const prefix = uniquePrefix()
  const log = openLog(t, shared, { prefix })
  const project = uniqueProject()
  const keys = redisKeys(prefix).opLog(project)
  const big = 123_456_789_012_345
  await shared.hSet(keys.meta, { epoch: 'e-big', seq: String(big) })
  const op = accepted(await log.append(newOp(project, 'big')))
  t.equal(op.seq, big + 1)
  t.equal((await shared.xRange(keys.ops, '-', '+'))?.[0]?.id, `${big + 1}-0`)
  t.strictSame(await log.read(project, big, 10, 'e-big'), { epoch: 'e-big', head: big + 1, ops: [op], reset: false })
})

t.test('runs its scripts again after Redis has forgotten them (NOSCRIPT)', async t => {
  const spy = recording(shared)
  const log = openLog(t, spy.client)
  const project = uniqueProject()
  await log.append(newOp(project))
  await shared.scriptFlush()
  spy.commands.length = 0
  t.equal(accepted(await log.append(newOp(project))).seq, 2)
  t.equal((await log.read(project, 0, 10)).ops.length, 2)
  t.equal((await log.head(project)).seq, 2)
  t.strictSame(spy.commands.map(command => command[0]), ['EVALSHA', 'EVAL', 'EVAL', 'EVAL'], 'each script was sent whole once: the append retried, read and head never used before')
  spy.commands.length = 0
  await log.append(newOp(project))
  await log.read(project, 0, 10)
  t.strictSame(spy.commands.map(command => command[0]), ['EVALSHA', 'EVALSHA'], 'then by SHA')
})

t.test('sends a script whole on a connection\'s first use, so concurrent first calls cannot be reordered by NOSCRIPT retries', async t => {
  await shared.scriptFlush()
  const spy = recording(await redisClient(t, redis.url))
  const log = openLog(t, spy.client)
  const project = uniqueProject()
  const results = await Promise.all(Array.from({ length: 100 }, async (_, n) => accepted(await log.append(newOp(project, `n${n}`)))))
  t.strictSame(results.map(op => op.seq), Array.from({ length: 100 }, (_, n) => n + 1), 'seq order is call order')
  t.ok(spy.commands.every(command => command[0] === 'EVAL'), 'no EVALSHA before the script is known to be cached, so no NOSCRIPT and no retry')
  spy.commands.length = 0
  await log.append(newOp(project))
  t.strictSame(spy.commands.map(command => command[0]), ['EVALSHA'], 'then by SHA')
})

t.test('publishes each appended op once, in seq order, as broadcaster envelopes when asked to: one message per script call', async t => {
  const prefix = uniquePrefix()
  const project = uniqueProject()
  const channel = redisKeys(prefix).channel(project)
  const subscriber = shared.duplicate()
  subscriber.on('error', () => {})
  t.teardown(() => { if (subscriber.isOpen) subscriber.destroy() })
  await subscriber.connect()
  const inbox = new Recorder<string>()
  await subscriber.subscribe(channel, inbox.push)

  const silent = openLog(t, shared, { prefix })
  const log = openLog(t, shared, { prefix, publishOrigin: 'instance-a' })
  accepted(await silent.append(newOp(project, 'not published')))
  // Started in one turn: one script call, one message.
  const acked = (await Promise.all(range(1, 50).map(async i => await log.append(newOp(project, { i }))))).map(accepted)
  const retry = await log.append(newOp(project, 'retry', acked[0]?.id))
  t.equal(retry.duplicate, true)
  // The last append is published after anything the duplicate could have published.
  const last = accepted(await log.append(newOp(project, 'last')))
  const messages = await inbox.until(items => items.some(raw => raw.includes('"last"')), 'the last op')
  t.equal(messages.length, 2, 'two messages: the batch of 50, then the last op; none for the log without publishOrigin nor for the duplicate')
  const { epoch } = await log.head(project)
  const envelopes = messages.flatMap(decodeMessage)
  t.strictSame(envelopes, [...acked, last].map(op => ({ origin: 'instance-a', message: { kind: 'op', epoch, op } })),
    'one envelope per appended op, seqs 2..52 in order')
  t.strictSame(decodeEnvelope(messages[1] ?? ''), envelopes[50], 'an op appended alone is published as a plain envelope, which instances before batching read')
  t.equal(decodeEnvelope(messages[0] ?? ''), null, 'a batch of several is not one envelope')
  // Each receiver forwards the op frame cut from the script's text: the same text the hub would serialise.
  const frames = envelopes.map(e => e.message.kind === 'op' ? opFrame(e.message.op) : null)
  t.strictSame(frames, [...acked, last].map(op => opFrame({ ...op })), 'the frames taken from the published text equal freshly serialised ones, byte for byte')
})

t.test('completes an append sent while Redis was frozen once it is thawed', async t => {
  const server = await startRedis(t)
  const client = await redisClient(t, server.url)
  const log = openLog(t, client)
  const project = uniqueProject()
  await log.append(newOp(project))
  server.stop()
  await waitFor(async () => (await readFile(`/proc/${server.pid}/stat`, 'utf8')).split(' ')[2] === 'T', { what: 'redis-server to be stopped' })
  const pending = log.append(newOp(project))
  server.cont()
  t.equal(accepted(await pending).seq, 2)
})

t.test('rejects while Redis is down and appends again once it is back', async t => {
  const server = await startRedis(t)
  const client = await redisClient(t, server.url, { disableOfflineQueue: true })
  const log = openLog(t, client)
  const project = uniqueProject()
  await log.append(newOp(project))
  await server.kill()
  await waitFor(() => !client.isReady, { what: 'the client to see the server gone' })
  await t.rejects(log.append(newOp(project)), 'append rejects')
  await t.rejects(log.read(project, 0, 10), 'read rejects')
  await t.rejects(log.head(project), 'head rejects')
  await server.restart()
  await waitUntilReady(client)
  const after = await log.append(newOp(project))
  t.equal(accepted(after).seq, 1, 'the server lost its data: a new log starts at 1')
})

t.test('resets readers of the old epoch after Redis restarts without its data', async t => {
  const server = await startRedis(t)
  const client = await redisClient(t, server.url)
  const log = openLog(t, client)
  const project = uniqueProject()
  await log.append(newOp(project))
  const old = await log.head(project)
  await server.restart()
  await waitUntilReady(client)
  const read = await log.read(project, old.seq, 10, old.epoch)
  t.equal(read.reset, true)
  t.not(read.epoch, old.epoch, 'a new epoch')
  t.equal(read.head, 0)
})

t.test('keeps the epoch and the ops across a Redis restart with an append-only file', async t => {
  const server = await startRedis(t, { appendOnly: true })
  const client = await redisClient(t, server.url)
  const log = openLog(t, client, { prefix: 'flow-aof' })
  const project = uniqueProject()
  const acked = [accepted(await log.append(newOp(project, 1))), accepted(await log.append(newOp(project, 2)))]
  const before = await log.head(project)
  await server.kill()
  await server.restart()
  await waitUntilReady(client)
  t.strictSame(await log.head(project), before, 'same epoch and head')
  t.strictSame((await log.read(project, 0, 10, before.epoch)).ops, acked)
  t.equal(accepted(await log.append(newOp(project, 3))).seq, 3, 'appends continue (after NOSCRIPT: the script cache is empty)')
})

t.test('rejects with Redis\' error when a key holds the wrong type', async t => {
  const prefix = uniquePrefix()
  const log = openLog(t, shared, { prefix })
  const project = uniqueProject()
  await shared.set(redisKeys(prefix).opLog(project).meta, 'not a hash')
  await t.rejects(log.append(newOp(project)), /WRONGTYPE/)
  await t.rejects(log.head(project), /WRONGTYPE/)
})

t.test('rejects calls after close and leaves the client open', async t => {
  const log = openLog(t, shared)
  const project = uniqueProject()
  await log.append(newOp(project))
  await log.close()
  await log.close()
  await t.rejects(log.append(newOp(project)), /closed/)
  await t.rejects(log.read(project, 0, 10), /closed/)
  await t.rejects(log.head(project), /closed/)
  await t.rejects(log.open(project), /closed/)
  await t.rejects(log.touch([project]), /closed/)
  t.equal(shared.isReady, true, 'the client is still connected')
  t.equal(await shared.ping(), 'PONG')
})

/** An op whose stored JSON is about `bytes` long. */
function bigOp (project: string, bytes: number): NewOp {
  return newOp(project, 'x'.repeat(bytes - 120))
}

/** Appends `count` ops of about `bytes` each, `batch` at a time (pipelined, in order). */
async function appendBig (log: RedisOperationLog, project: string, count: number, bytes: number, each?: () => Promise<void>): Promise<void> {
  for (let done = 0; done < count;) {
    const n = Math.min(50, count - done)
    await Promise.all(range(1, n).map(async () => accepted(await log.append(bigOp(project, bytes)))))
    done += n
    await each?.()
  }
}

t.test('serves 1,400 ops of 63 KB read with limit 1,000 in pages of at most 1 MiB, each one script call', async t => {
  const pageBytes = 1024 * 1024
  const spy = recording(shared)
  const log = openLog(t, spy.client, { historyLimit: 2000, historyBytes: 128 * 1024 * 1024 })
  const project = uniqueProject()
  const opBytes = 63 * 1024
  await appendBig(log, project, 1400, opBytes)
  spy.commands.length = 0
  const sizes: number[] = []
  let since = 0
  let reads = 0
  for (;;) {
    const page = await log.read(project, since, 1000)
    reads++
    t.equal(page.reset, false)
    const bytes = page.ops.reduce((total, op) => total + Buffer.byteLength(storedOpJson(op)), 0)
    sizes.push(bytes)
    if (bytes > pageBytes) t.fail(`a page of ${bytes} bytes`)
    const last = page.ops.at(-1)
    if (last === undefined) break
    t.equal(last.seq, since + page.ops.length, 'contiguous')
    since = last.seq
    if (since >= page.head) break
  }
  t.equal(since, 1400, 'every op was read')
  t.equal(spy.commands.length, reads, 'one command (EVALSHA) per page: one round trip')
  t.ok(Math.max(...sizes) > pageBytes - opBytes - 200, `pages are filled up to the budget (largest ${Math.max(...sizes)})`)
  t.equal(reads, Math.ceil(1400 / Math.floor(pageBytes / (opBytes + 100))), `${reads} pages of ${Math.floor(pageBytes / (opBytes + 100))} ops`)
  const huge = await log.read(project, 0, 1000, undefined, 10)
  t.equal(huge.ops.length, 1, 'a budget smaller than one op still serves that op')
})

t.test('keeps a project\'s history under historyBytes while 2,000 ops of 60 KB are appended', async t => {
  const historyBytes = 1024 * 1024
  const prefix = uniquePrefix()
  const log = openLog(t, shared, { prefix, historyLimit: 10_000, historyBytes })
  const project = uniqueProject()
  const keys = redisKeys(prefix).opLog(project)
  const opBytes = 60 * 1024
  const fit = Math.floor(historyBytes / opBytes)
  const seen = { bytes: 0, entries: 0, memory: 0 }
  await appendBig(log, project, 2000, opBytes, async () => {
    seen.bytes = Math.max(seen.bytes, Number(await shared.hGet(keys.meta, 'bytes')))
    seen.entries = Math.max(seen.entries, await shared.xLen(keys.ops))
    seen.memory = Math.max(seen.memory, Number(await shared.sendCommand(['MEMORY', 'USAGE', keys.ops, 'SAMPLES', '0'])))
  })
  t.ok(seen.bytes <= historyBytes, `the byte counter never passed historyBytes (at most ${seen.bytes})`)
  t.ok(seen.bytes > historyBytes - opBytes - 200, 'and filled it')
  t.ok(seen.entries <= fit + 1, `the stream never held more than ${fit + 1} entries (at most ${seen.entries})`)
  t.ok(seen.memory < 1.25 * historyBytes, `nor more than 1.25 x historyBytes of memory (at most ${seen.memory})`)
  t.equal(await shared.lLen(keys.sizes), fit, 'the sizes count the kept ops')
  t.equal((await log.read(project, 2000 - fit, 1, undefined, 10)).reset, false, 'the newest ops that fit are readable')
  t.equal((await log.read(project, 2000 - fit - 1, 1)).reset, true, 'the one before is gone')
})

t.test('lets every key of an idle project expire after idleTtlMs, and keeps those of a touched one', async t => {
  const server = await startRedis(t)
  const client = await redisClient(t, server.url)
  const idleTtlMs = 1500
  const prefix = uniquePrefix()
  const log = openLog(t, client, { prefix, idleTtlMs, idRetention: 1000, historyLimit: 3 })
  const [idle, touched] = [uniqueProject(), uniqueProject()]
  let epoch = ''
  for (let i = 0; i < 2001; i++) epoch = (await log.append(newOp(idle, i))).epoch
  await log.append(newOp(touched))
  // Its snapshot too: a key of the project like the others.
  const snapshots = new RedisSnapshotStore({ client, keyPrefix: prefix, historyLimit: 3, idleTtlMs })
  t.strictSame(await snapshots.put({ project: idle, epoch, seq: 2001, state: { n: 2001 } }), { stored: true })
  const keys = redisKeys(prefix).opLog(idle)
  t.equal(await client.dbSize(), 10, 'the six keys of the idle project (both id generations, its snapshot) and four of the other')
  for (const key of keys.all) {
    const ttl = await client.pTTL(key)
    t.ok(ttl > 0 && ttl <= idleTtlMs, `${key} expires in ${ttl} ms`)
  }
  t.ok(Number(await client.sendCommand(['MEMORY', 'USAGE', keys.ids])) > 0)
  await waitFor(async () => {
    await log.touch([touched])
    return await client.dbSize() === 4
  }, { what: 'the idle project\'s keys to expire', timeoutMs: 20_000, intervalMs: 50 })
  t.strictSame(await Promise.all(keys.all.map(async key => await client.sendCommand(['MEMORY', 'USAGE', key]))), keys.all.map(() => null), 'gone, all of them')
  t.equal((await log.head(touched)).seq, 1, 'the touched project is still there')
  t.match(await log.append(newOp(idle)), { created: true, op: { seq: 1 } }, 'the idle one comes back as a new log')
})

t.test('touches many projects in one round trip, and none without an idle TTL', async t => {
  const spy = recording(shared)
  const log = openLog(t, spy.client, { idleTtlMs: 60_000 })
  const projects = range(1, 20).map(() => uniqueProject())
  for (const project of projects.slice(0, 10)) await log.open(project)
  spy.commands.length = 0
  const touching = log.touch([...projects, ...projects])
  t.equal(spy.commands.length, 20, 'one script call per project, all sent before any answer')
  await touching
  const untimed = recording(shared)
  await openLog(t, untimed.client).touch(projects)
  t.equal(untimed.commands.length, 0, 'nothing to extend without an idle TTL')
})

t.test('turns the ids into a new generation by RENAME instead of trimming them on each append', async t => {
  t.notMatch(APPEND.source, /ZREMRANGEBYSCORE|ZADD|ZSCORE/, 'no sorted set work per append')
  t.match(APPEND.source, /RENAME', KEYS\[4\], KEYS\[5\]/, 'the ids turn generation by RENAME')
  for (const script of OPERATION_LOG_SCRIPTS) t.notMatch(script.source, /MAXLEN/, `${script.name}: no trim by count that the byte counter would not see`)
  const prefix = uniquePrefix()
  const log = openLog(t, shared, { prefix, historyLimit: 2, idRetention: 3 })
  const project = uniqueProject()
  const keys = redisKeys(prefix).opLog(project)
  const acked = await Promise.all(range(1, 7).map(async () => accepted(await log.append(newOp(project)))))
  t.strictSame({ ...await shared.hGetAll(keys.oldIds) }, Object.fromEntries(acked.slice(3, 6).map(op => [idempotencyKey(op.userId, op.id), String(op.seq)])), 'ids:old: the full generation before')
  t.strictSame({ ...await shared.hGetAll(keys.ids) }, { [idempotencyKey('user-1', (acked[6] as Op).id)]: '7' }, 'ids: the newest')
  t.equal((await log.append(newOp(project, null, acked[3]?.id))).duplicate, true, 'the old generation is checked too')
  t.equal((await log.append(newOp(project, null, acked[0]?.id))).duplicate, false, 'the generation before it is gone')
})
