/**
 * A Redis that lost the newest ops of a log it had acked (a failover to a
 * replica that lagged, a restart that lost the end of its AOF) still holds
 * the log's meta with the same epoch and a lower head. The instances that
 * saw the lost seqs move the log to a new epoch before anything else is
 * appended (adapters/redis/watermarks.ts, FENCE in scripts.ts), so no
 * (epoch, seq) ever names two ops. The loss is made here as a lagging
 * replica leaves it: the log's keys copied at an earlier head (COPY), more
 * ops appended and acked, then the keys put back as they were copied.
 */
import t, { type Test } from 'tap'
import { createRedisOperationLog, type RedisOperationLog } from '../../adapters/redis/operation-log.js'
import { RedisBroadcaster } from '../../adapters/redis/broadcaster.js'
import { RedisSnapshotStore } from '../../adapters/redis/snapshot-store.js'
import { LogWatermarks } from '../../adapters/redis/watermarks.js'
import { redisKeys } from '../../adapters/redis/keys.js'
import type { BroadcastMessage } from '../../ports/broadcaster.js'
import type { Op } from '../../lib/types.js'
import { redisClient, startRedis, uniquePrefix, type TestRedisClient } from '../helpers/redis.js'
import { accepted, newOp } from '../helpers/ops.js'
import { waitFor } from '../helpers/wait.js'

const redis = await startRedis(t)
const shared = await redisClient(t, redis.url)

function openLog (t: Test, prefix: string, options: { watermarks?: LogWatermarks, publishOrigin?: string, client?: TestRedisClient } = {}): RedisOperationLog {
  const { client, ...rest } = options
  const log = createRedisOperationLog({ client: client ?? shared, keyPrefix: prefix, ...rest })
  t.teardown(async () => { await log.close() })
  return log
}

/** The log's keys as they are now; `restore()` puts them back so (what a replica that stopped here would hold). */
async function copyKeys (prefix: string, project: string): Promise<{ restore: () => Promise<void> }> {
  const keys = redisKeys(prefix).opLog(project).all
  const copied: Array<[string, string]> = []
  for (const key of keys) {
    const backup = `${key}:copy`
    if (await shared.copy(key, backup, { REPLACE: true })) copied.push([key, backup])
  }
  return {
    restore: async () => {
      await shared.del([...keys])
      for (const [key, backup] of copied) await shared.copy(backup, key)
    }
  }
}

async function appendAll (log: RedisOperationLog, project: string, n: number): Promise<Op[]> {
  const ops: Op[] = []
  for (let i = 0; i < n; i++) ops.push(accepted(await log.append(newOp(project))))
  return ops
}

t.test('an append by the instance that acked the lost ops moves the log to a new epoch and keeps the ops that are left', async (t) => {
  const prefix = uniquePrefix()
  const project = 'doc'
  const log = openLog(t, prefix)
  const snapshots = new RedisSnapshotStore({ client: shared, keyPrefix: prefix })
  const kept = await appendAll(log, project, 5)
  const { epoch } = await log.head(project)
  t.same(await snapshots.put({ project, epoch, seq: 3, state: { upTo: 3 } }), { stored: true }, 'a snapshot at seq 3')
  const copy = await copyKeys(prefix, project)
  const lost = await appendAll(log, project, 3)
  t.same(lost.map((op) => op.seq), [6, 7, 8], 'three more ops acked at seqs 6..8')
  await copy.restore()

  const next = await log.append(newOp(project))
  if (next.duplicate) throw new Error('a duplicate')
  t.not(next.epoch, epoch, 'the append answers in a new epoch')
  t.equal(next.op.seq, 6, 'and continues after the ops Redis still has')
  t.equal(log.fenced, 1, 'the log counts one fence')

  const page = await log.read(project, 0, 100)
  t.equal(page.epoch, next.epoch)
  t.same(page.ops.map((op) => [op.seq, op.id]), [...kept, next.op].map((op) => [op.seq, op.id]),
    'the new epoch holds the ops that survived at their seqs, then the new op: no lost op and no lost seq is in it')
  const old = await log.read(project, 5, 100, epoch)
  t.ok(old.reset, 'a client resuming in the old epoch is told to reset')
  t.same(await snapshots.get(project), { project, epoch: next.epoch, seq: 3, state: { upTo: 3 } },
    'the snapshot, which covers only ops that survived, moved to the new epoch')
})

t.test('an instance that only heard of the lost ops by broadcast fences the log when it opens it', async (t) => {
  const prefix = uniquePrefix()
  const project = 'board'
  const writer = openLog(t, prefix, { publishOrigin: 'a' })
  const watermarks = new LogWatermarks()
  const subscriber = await redisClient(t, redis.url)
  const bClient = await redisClient(t, redis.url)
  const broadcaster = new RedisBroadcaster({ client: bClient, subscriber, keyPrefix: prefix, origin: 'b', watermarks })
  t.teardown(async () => { await broadcaster.close() })
  const heard: BroadcastMessage[] = []
  await broadcaster.subscribe(project, (message) => { heard.push(message) })
  const reader = openLog(t, prefix, { watermarks, client: bClient })

  await appendAll(writer, project, 3)
  const copy = await copyKeys(prefix, project)
  const { epoch } = await writer.head(project)
  await appendAll(writer, project, 2)
  await waitFor(() => heard.length === 5, { what: 'instance b to hear the five ops', timeoutMs: 5000, intervalMs: 10 })
  t.match(watermarks.all(project)[0], { epoch, seq: 5 }, 'b knows the log reached seq 5')
  await copy.restore()

  const opened = await reader.open(project)
  t.not(opened.epoch, epoch, 'b opens the log in a new epoch')
  t.equal(opened.seq, 3, 'at the head Redis still has')
  t.equal(opened.created, false, 'not a new log: its ops are kept')
  t.same((await reader.read(project, 0, 10)).ops.map((op) => op.seq), [1, 2, 3])
  const next = await writer.append(newOp(project))
  t.same(next.duplicate ? null : [next.epoch, next.op.seq], [opened.epoch, 4], 'the writer appends in the new epoch too')
})

t.test('a read or a head that finds the log below what was seen answers in the new epoch', async (t) => {
  const prefix = uniquePrefix()
  const log = openLog(t, prefix)
  const other = openLog(t, prefix)
  for (const [i, ask] of [
    async (project: string) => await log.read(project, 0, 100),
    async (project: string) => await log.head(project)
  ].entries()) {
    const project = `p${i}`
    await appendAll(log, project, 4)
    const { epoch } = await log.head(project)
    const copy = await copyKeys(prefix, project)
    await appendAll(log, project, 2)
    await copy.restore()
    const answer = await ask(project)
    t.not(answer.epoch, epoch, `${i === 0 ? 'read' : 'head'}: answered in a new epoch`)
    const position = await other.head(project)
    t.same(position, { epoch: answer.epoch, seq: 4 }, `${i === 0 ? 'read' : 'head'}: the log itself moved (another instance sees the new epoch at seq 4)`)
    if ('ops' in answer) t.same(answer.ops.map((op) => op.seq), [1, 2, 3, 4], 'the read serves the kept ops in the new epoch')
  }
  t.equal(log.fenced, 2)
  t.equal(other.fenced, 0, 'an instance that saw nothing lost does not count a fence')
})

t.test('a store that comes back to an older epoch of the log (replicas flapping) is fenced again', async (t) => {
  const prefix = uniquePrefix()
  const project = 'flap'
  const log = openLog(t, prefix)
  await appendAll(log, project, 5)
  const { epoch } = await log.head(project)
  const lagging = await copyKeys(prefix, project)
  await appendAll(log, project, 3)
  await lagging.restore()
  const first = await log.append(newOp(project))
  if (first.duplicate) throw new Error('a duplicate')
  t.not(first.epoch, epoch, 'the first loss moves the log to a new epoch')
  // The other replica, still in the old epoch at seq 5, is the primary again.
  await lagging.restore()
  const second = await log.append(newOp(project))
  if (second.duplicate) throw new Error('a duplicate')
  t.not(second.epoch, epoch, 'seq 6 of the old epoch is not given again: the old epoch is remembered too')
  t.not(second.epoch, first.epoch)
  t.equal(second.op.seq, 6)
  t.equal(log.fenced, 2)
})

t.test('no fence without a loss: a log at or past what was seen, or in another epoch, keeps its epoch', async (t) => {
  const prefix = uniquePrefix()
  const watermarks = new LogWatermarks()
  const a = openLog(t, prefix, { watermarks })
  const b = openLog(t, prefix)
  const project = 'calm'
  await appendAll(a, project, 3)
  const { epoch } = await a.head(project)
  // b appends behind a's back: a's watermark (3) is below the head, never above.
  await appendAll(b, project, 4)
  const results = [await a.append(newOp(project)), await a.open(project), await a.read(project, 0, 100), await a.head(project)]
  t.same(results.map((r) => r.epoch), [epoch, epoch, epoch, epoch], 'every call keeps the epoch')
  t.same(watermarks.all(project)[0]?.seq, 8, 'a\'s watermark follows the head')

  // The log expired and came back with another epoch: what a saw of the old one does not fence the new one.
  await shared.del([...redisKeys(prefix).opLog(project).all])
  await appendAll(b, project, 1)
  const now = await b.head(project)
  t.not(now.epoch, epoch)
  const appended = await a.append(newOp(project))
  t.same(appended.duplicate ? null : [appended.epoch, appended.op.seq], [now.epoch, 2], 'a appends in the log\'s new epoch')
  t.equal(a.fenced, 0)
})

t.test('watermarks are bounded: the least recently updated project goes first, an idle one is forgotten', async (t) => {
  const marks = new LogWatermarks({ maxProjects: 3, refreshMs: 5 })
  for (const p of ['a', 'b', 'c']) marks.saw(p, 'e', 1)
  await new Promise((resolve) => setTimeout(resolve, 10))
  marks.saw('a', 'e', 2)
  marks.saw('d', 'e', 1)
  t.same(['a', 'b', 'c', 'd'].map((p) => marks.all(p)[0]?.seq), [2, undefined, 1, 1], 'b, updated least recently, made room for d')
  t.equal(marks.size, 3)
  marks.saw('a', 'e', 1)
  t.equal(marks.all('a')[0]?.seq, 2, 'a lower seq of the same epoch never lowers the watermark')
  marks.saw('a', 'f', 1)
  t.match(marks.all('a')[0], { epoch: 'f', seq: 1 }, 'another epoch becomes the current one')
  marks.saw('a', 'e', 1)
  t.match(marks.all('a'), [{ epoch: 'e', seq: 2 }, { epoch: 'f', seq: 1 }], 'back to an earlier epoch: what was seen of it still counts')
  for (const e of ['g', 'h', 'i', 'j']) marks.saw('a', e, 1)
  t.same(marks.all('a').map((w) => w.epoch), ['j', 'i', 'h', 'g'], 'three earlier epochs at most')

  const idle = new LogWatermarks({ idleMs: 50 })
  idle.saw('x', 'e', 1)
  await new Promise((resolve) => setTimeout(resolve, 80))
  t.equal(idle.all('x')[0], undefined, 'forgotten once idle past idleMs')
  t.throws(() => new LogWatermarks({ maxProjects: 0 }), RangeError)
})
