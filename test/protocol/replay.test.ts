import t, { type Test } from 'tap'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { startServer, type TestServer } from '../helpers/server.js'
import { connect, type Frame, type TestClient } from '../helpers/client.js'
import { collect, range, seqsOf, until } from '../helpers/protocol.js'
import { MemoryOperationLog } from '../../adapters/memory/operation-log.js'
import { MemorySessionStore } from '../../adapters/memory/session-store.js'
import type { ReadResult } from '../../ports/operation-log.js'
import type { Member } from '../../lib/types.js'
import { REPLAY_SLICE_BYTES } from '../../lib/hub/replay.js'

/** Appends `count` ops to a project through a member, waiting for every ack. */
async function append (client: TestClient, project: string, count: number): Promise<void> {
  const start = client.all('ack').length
  for (let i = 0; i < count; i++) client.send({ type: 'op', project, data: i })
  await collect(client, (f) => f.type === 'ack' && f.project === project, start + count, 'acks')
}

/** A writer with `count` ops in `project`, and its joined frame. */
async function writerWith (t: Test, server: TestServer, project: string, count: number): Promise<{ writer: TestClient, joined: Frame }> {
  const writer = await connect(t, `${server.ws}?userId=writer`)
  const joined = await writer.join(project)
  await append(writer, project, count)
  return { writer, joined }
}

t.test('join with since replays the ops after since in order, then live ops without gap or duplicate', async (t) => {
  const server = await startServer(t)
  const { writer, joined: wj } = await writerWith(t, server, 'doc', 10)
  const reader = await connect(t, server.ws)
  const joined = await reader.join('doc', { since: 4, epoch: wj.epoch })
  t.match(joined, { type: 'joined', seq: 10, epoch: wj.epoch })
  await until(reader, () => seqsOf(reader, 'doc').length === 6, 'the replay')
  const replayed = reader.received.filter((f) => f.type === 'op')
  t.same(replayed.map((f) => f.seq), range(5, 10))
  t.match(replayed[0], { type: 'op', project: 'doc', id: String, userId: 'writer', sessionId: wj.sessionId, data: 4, ts: Number })
  t.ok(reader.received.indexOf(joined) < reader.received.indexOf(replayed[0] as Frame), 'joined comes first')
  await append(writer, 'doc', 2)
  await until(reader, () => seqsOf(reader, 'doc').includes(12), 'live op 12')
  t.same(seqsOf(reader, 'doc'), range(5, 12))
  t.same(reader.all('reset'), [])
})

t.test('join with since equal to the head replays nothing and continues live', async (t) => {
  const server = await startServer(t)
  const { writer, joined: wj } = await writerWith(t, server, 'doc', 3)
  const reader = await connect(t, server.ws)
  t.equal((await reader.join('doc', { since: 3, epoch: wj.epoch })).seq, 3)
  await append(writer, 'doc', 1)
  await until(reader, () => seqsOf(reader, 'doc').length > 0, 'an op')
  t.same(seqsOf(reader, 'doc'), [4])
  t.same(reader.all('reset'), [])
})

t.test('a replay includes the joiner\'s own earlier ops, as for a reconnect', async (t) => {
  const server = await startServer(t)
  const first = await connect(t, `${server.ws}?userId=alice`)
  const { epoch } = await first.join('doc')
  await append(first, 'doc', 3)
  first.close()
  const again = await connect(t, `${server.ws}?userId=alice`)
  await again.join('doc', { since: 1, epoch })
  await until(again, () => seqsOf(again, 'doc').length === 2, 'the replay')
  t.same(seqsOf(again, 'doc'), [2, 3])
})

t.test('joining again with since replays again without a new session', async (t) => {
  const server = await startServer(t)
  const { writer } = await writerWith(t, server, 'doc', 0)
  const reader = await connect(t, server.ws)
  const first = await reader.join('doc')
  await append(writer, 'doc', 4)
  await until(reader, () => seqsOf(reader, 'doc').length === 4, 'four live ops')
  const again = await reader.join('doc', { since: 2, epoch: first.epoch })
  t.match(again, { sessionId: first.sessionId, seq: 4 })
  await until(reader, () => seqsOf(reader, 'doc').length === 6, 'the replay')
  await append(writer, 'doc', 1)
  await until(reader, () => seqsOf(reader, 'doc').length === 7, 'the next live op')
  t.same(seqsOf(reader, 'doc'), [1, 2, 3, 4, 3, 4, 5], 'live, then the requested replay, then live from the head')
})

t.test('sync replays since < seq <= head in order, then synced with the epoch and head', async (t) => {
  const server = await startServer(t)
  const { writer, joined: wj } = await writerWith(t, server, 'doc', 0)
  const reader = await connect(t, server.ws)
  await reader.join('doc')
  await append(writer, 'doc', 6)
  await until(reader, () => seqsOf(reader, 'doc').length === 6, 'six live ops')
  const synced = await reader.request({ type: 'sync', project: 'doc', since: 3, epoch: wj.epoch })
  t.same(synced, { type: 'synced', project: 'doc', epoch: wj.epoch, seq: 6, ref: synced.ref })
  t.same(seqsOf(reader, 'doc'), [1, 2, 3, 4, 5, 6, 4, 5, 6], 'the replay came before synced')
  t.same((await reader.request({ type: 'sync', project: 'doc', since: 6, epoch: wj.epoch })).seq, 6, 'a sync at the head replays nothing')
  t.equal(seqsOf(reader, 'doc').length, 9)
  // The writer's own ops are part of what it asked for.
  await writer.request({ type: 'sync', project: 'doc', since: 4, epoch: wj.epoch })
  t.same(seqsOf(writer, 'doc'), [5, 6])
  t.same(reader.all('reset'), [])
})

t.test('since above the head gets reset with the head, then live ops from there', async (t) => {
  const server = await startServer(t)
  const { writer, joined: wj } = await writerWith(t, server, 'doc', 3)
  const reader = await connect(t, server.ws)
  const joined = await reader.join('doc', { since: 4, epoch: wj.epoch })
  t.same(await reader.next('reset'), { type: 'reset', project: 'doc', epoch: wj.epoch, seq: 3 })
  t.equal(joined.seq, 3)
  const reset = reader.next('reset')
  const synced = await reader.request({ type: 'sync', project: 'doc', since: 100, epoch: wj.epoch })
  t.same(await reset, { type: 'reset', project: 'doc', epoch: wj.epoch, seq: 3 }, 'sync above the head gets reset')
  t.match(synced, { type: 'synced', project: 'doc', epoch: wj.epoch, seq: 3 }, 'and synced ends it')
  t.ok(reader.received.findIndex((f) => f.type === 'reset' && reader.received.indexOf(f) > reader.received.indexOf(joined)) < reader.received.indexOf(synced))
  await append(writer, 'doc', 1)
  await until(reader, () => seqsOf(reader, 'doc').length > 0, 'a live op')
  t.same(seqsOf(reader, 'doc'), [4], 'live ops continue from the head')
})

t.test('history that no longer reaches back gets reset; since at the oldest kept op replays', async (t) => {
  const server = await startServer(t, { historyMemory: 5 })
  const { writer, joined: wj } = await writerWith(t, server, 'doc', 20)
  for (const since of [0, 1, 10, 14]) {
    const reader = await connect(t, server.ws)
    await reader.join('doc', { since, epoch: wj.epoch })
    t.same(await reader.next('reset'), { type: 'reset', project: 'doc', epoch: wj.epoch, seq: 20 }, `join since ${since}: reset`)
    t.same(seqsOf(reader, 'doc'), [], 'no op is replayed with a reset')
    const reset = reader.next('reset')
    const synced = await reader.request({ type: 'sync', project: 'doc', since, epoch: wj.epoch })
    t.same(await reset, { type: 'reset', project: 'doc', epoch: wj.epoch, seq: 20 }, `sync since ${since}: reset`)
    t.match(synced, { type: 'synced', seq: 20 }, 'synced after the reset')
    reader.close()
  }
  // The memory log keeps at least the last 5: since 15 is answered exactly.
  const reader = await connect(t, server.ws)
  await reader.join('doc', { since: 15, epoch: wj.epoch })
  await until(reader, () => seqsOf(reader, 'doc').length === 5, 'ops 16..20')
  t.same(seqsOf(reader, 'doc'), range(16, 20))
  await append(writer, 'doc', 1)
  await until(reader, () => seqsOf(reader, 'doc').length === 6, 'op 21')
  t.same(seqsOf(reader, 'doc'), range(16, 21))
  t.same(reader.all('reset'), [])
})

t.test('an epoch that is not the current one gets reset; the current one replays', async (t) => {
  const server = await startServer(t)
  const { joined: wj } = await writerWith(t, server, 'doc', 4)
  const reader = await connect(t, server.ws)
  const joined = await reader.join('doc', { since: 0, epoch: 'an-old-epoch' })
  t.equal(joined.epoch, wj.epoch, 'joined names the current epoch')
  t.same(await reader.next('reset'), { type: 'reset', project: 'doc', epoch: wj.epoch, seq: 4 })
  t.same(seqsOf(reader, 'doc'), [])
  const reset = reader.next('reset')
  const synced = await reader.request({ type: 'sync', project: 'doc', since: 2, epoch: 'an-old-epoch' })
  t.same(await reset, { type: 'reset', project: 'doc', epoch: wj.epoch, seq: 4 }, 'sync with an old epoch: reset')
  t.match(synced, { type: 'synced', epoch: wj.epoch, seq: 4 })
  const exact = await reader.request({ type: 'sync', project: 'doc', since: 2, epoch: wj.epoch })
  t.match(exact, { type: 'synced', seq: 4 })
  t.same(seqsOf(reader, 'doc'), [3, 4], 'the current epoch replays')
  t.equal(reader.all('reset').length, 2)
})

t.test('since above 0 without its epoch gets reset: the position cannot be placed in a life of the log', async (t) => {
  const server = await startServer(t)
  const { joined: wj } = await writerWith(t, server, 'doc', 4)
  const reader = await connect(t, server.ws)
  await reader.join('doc', { since: 2 })
  t.same(await reader.next('reset'), { type: 'reset', project: 'doc', epoch: wj.epoch, seq: 4 }, 'join: reset to the head')
  t.same(seqsOf(reader, 'doc'), [], 'nothing replayed')
  const reset = reader.next('reset')
  const synced = await reader.request({ type: 'sync', project: 'doc', since: 3 })
  t.same(await reset, { type: 'reset', project: 'doc', epoch: wj.epoch, seq: 4 }, 'sync: reset to the head')
  t.match(synced, { type: 'synced', seq: 4 })
  const fresh = await connect(t, server.ws)
  await fresh.join('doc', { since: 0 })
  await until(fresh, () => seqsOf(fresh, 'doc').length === 4, 'the whole history')
  t.same(seqsOf(fresh, 'doc'), [1, 2, 3, 4], 'since 0 needs no epoch: the whole history is replayed')
  t.same(fresh.all('reset'), [])
})

t.test('epoch without since is ignored', async (t) => {
  const server = await startServer(t)
  const { writer } = await writerWith(t, server, 'doc', 2)
  const reader = await connect(t, server.ws)
  const joined = await reader.join('doc', { epoch: 'not-the-current-one' })
  t.equal(joined.seq, 2)
  // A sync is answered after anything the join sent.
  t.match(await reader.request({ type: 'sync', project: 'doc', since: 2, epoch: joined.epoch }), { type: 'synced', seq: 2 })
  t.same(reader.all('reset'), [], 'no reset')
  t.same(seqsOf(reader, 'doc'), [], 'no replay')
  await append(writer, 'doc', 1)
  await until(reader, () => seqsOf(reader, 'doc').length > 0, 'a live op')
  t.same(seqsOf(reader, 'doc'), [3])
})

/** A memory log whose reads give way to the event loop, as a network store would. */
class YieldingLog extends MemoryOperationLog {
  override async read (project: string, since: number, limit: number, epoch?: string): Promise<ReadResult> {
    await nextTurn()
    const result = await super.read(project, since, limit, epoch)
    await nextTurn()
    return result
  }
}

/** A memory session store whose listings give way to the event loop. */
class YieldingSessions extends MemorySessionStore {
  override async list (project: string): Promise<Member[]> {
    await nextTurn()
    return await super.list(project)
  }
}

const TOTAL = 700
const CHUNK = 20

for (const variant of ['memory ports', 'ports that yield to the event loop'] as const) {
  t.test(`joins and syncs while another client sends ops see every op exactly once (${variant})`, async (t) => {
    const server = await startServer(t, variant === 'memory ports' ? {} : { ports: { log: new YieldingLog(), sessions: new YieldingSessions() } })
    const writer = await connect(t, `${server.ws}?userId=writer`, { timeoutMs: 15_000 })
    const { epoch } = await writer.join('live')
    // since per joiner, and the number of acks after which it joins: one
    // replays more than a page of the log (500 ops).
    const plan: Array<{ at: number, since: number }> = [
      { at: 0, since: 0 }, { at: 35, since: 20 }, { at: 100, since: 99 }, { at: 180, since: 40 },
      { at: 260, since: 255 }, { at: 340, since: 0 }, { at: 420, since: 410 }, { at: 530, since: 0 }, { at: 600, since: 333 }
    ]
    const joiners = await Promise.all(plan.map(async () => await connect(t, server.ws, { timeoutMs: 15_000 })))
    // Live members that sync part of the history again while ops flow.
    const syncers = await Promise.all([150, 450].map(async (at) => {
      const client = await connect(t, server.ws, { timeoutMs: 15_000 })
      await client.join('live')
      return { client, at, since: at - 60 }
    }))

    const acked = (): number => writer.all('ack').length
    const joinedFrames: Array<Promise<Frame>> = plan.map(async ({ at, since }, i) => {
      const client = joiners[i] as TestClient
      await until(writer, () => acked() >= at, `${at} acks`, 15_000)
      return await client.join('live', { since, epoch })
    })
    const syncedFrames: Array<Promise<Frame>> = syncers.map(async ({ client, at, since }) => {
      await until(writer, () => acked() >= at, `${at} acks`, 15_000)
      return await client.request({ type: 'sync', project: 'live', since, epoch })
    })
    for (let sent = 0; sent < TOTAL; sent += CHUNK) {
      for (let i = 0; i < CHUNK; i++) writer.send({ type: 'op', project: 'live', data: sent + i })
      await collect(writer, (f) => f.type === 'ack', sent + CHUNK, 'acks', 15_000)
    }
    const joined = await Promise.all(joinedFrames)
    const synced = await Promise.all(syncedFrames)
    t.same(writer.all('ack').map((a) => a.seq), range(1, TOTAL), 'the writer was acked 1..N in order')

    for (const [i, client] of joiners.entries()) {
      const { since } = plan[i] as { since: number }
      await until(client, () => seqsOf(client, 'live').at(-1) === TOTAL, `op ${TOTAL}`, 15_000)
      const frame = joined[i] as Frame
      t.ok((frame.seq as number) >= since && (frame.seq as number) <= TOTAL, `joiner ${i}: joined.seq ${String(frame.seq)} is between since and the end`)
      t.same(seqsOf(client, 'live'), range(since + 1, TOTAL), `joiner ${i} (since ${since}, joined at ${String(frame.seq)}): replay then live is ${since + 1}..${TOTAL} exactly`)
      t.same(client.all('reset'), [], `joiner ${i}: no reset`)
    }
    for (const [i, { client, since }] of syncers.entries()) {
      await until(client, () => seqsOf(client, 'live').at(-1) === TOTAL, `op ${TOTAL}`, 15_000)
      const frames = client.received.filter((f) => f.type === 'op' || f.type === 'synced')
      const at = frames.indexOf(synced[i] as Frame)
      const head = (synced[i] as Frame).seq as number
      const before = frames.slice(0, at).map((f) => f.seq as number)
      const after = frames.slice(at + 1).map((f) => f.seq as number)
      t.same(before.slice(before.length - (head - since)), range(since + 1, head), `syncer ${i}: the ops just before synced are ${since + 1}..${head}`)
      t.same(after, range(head + 1, TOTAL), `syncer ${i}: then live from ${head + 1} without gap or duplicate`)
      t.same(before.slice(0, before.length - (head - since)), range(1, before.length - (head - since)), `syncer ${i}: and before the sync, live from 1`)
    }
  })
}

t.test('one connection\'s replays share a budget of bytes per second: repeated small syncs wait for it too', async (t) => {
  // 64 KiB/s; the history is 40 ops of ~1.1 KiB (~45 KiB per full replay).
  const server = await startServer(t, { replayBytesPerSecond: 64 * 1024 })
  const writer = await connect(t, `${server.ws}?userId=writer`)
  const { epoch } = await writer.join('doc')
  for (let i = 0; i < 40; i++) await writer.request({ type: 'op', project: 'doc', data: 'x'.repeat(1000) })
  const reader = await connect(t, server.ws)
  await reader.join('doc')
  const start = performance.now()
  // Six replays of the whole history, ~270 KiB, against 64 KiB a second. A second's worth goes at once and the
  // last replay is not waited after: (270 - 64 - 45) / 64 = 2.5 s at least.
  for (let i = 0; i < 6; i++) {
    const synced = await reader.request({ type: 'sync', project: 'doc', since: 0, epoch })
    t.equal(synced.seq, 40)
  }
  const took = performance.now() - start
  t.equal(seqsOf(reader, 'doc').length, 240, 'every replay sent every op')
  t.ok(took >= 2000, `the budget held: six replays took ${Math.round(took)} ms, not less than ~2.5 s`)
  t.same(reader.all('reset'), [])
})

/** A memory op log that records, for each read, how many ops it returned and the event loop's turn it ran in. */
class RecordingLog extends MemoryOperationLog {
  readonly reads: Array<{ project: string, ops: number, turn: number }> = []
  turn = 0
  override async read (project: string, since: number, limit: number, epoch?: string, maxBytes?: number): Promise<ReadResult> {
    const result = await super.read(project, since, limit, epoch, maxBytes)
    this.reads.push({ project, ops: result.ops.length, turn: this.turn })
    return result
  }
}

t.test('a replay is read and sent in slices of REPLAY_SLICE_BYTES with a turn of the event loop between two', async (t) => {
  const log = new RecordingLog()
  const server = await startServer(t, { identityWriteBytesPerSecond: 64 * 1024 * 1024, ports: { log } })
  const OP_BYTES = 40_000
  const writer = await connect(t, `${server.ws}?userId=writer`)
  const { epoch } = await writer.join('big')
  // ~960 KB: under one page (FLOW_REPLAY_PAGE_BYTES, 1 MiB), which was read and sent in one go.
  for (let i = 0; i < 24; i++) await writer.request({ type: 'op', project: 'big', data: 'x'.repeat(OP_BYTES) })
  // Counts the turns of the event loop while the replay runs.
  let turning = true
  const turn = (): void => { log.turn++; if (turning) setImmediate(turn) }
  setImmediate(turn)
  t.teardown(() => { turning = false })
  log.reads.length = 0
  const reader = await connect(t, server.ws, { timeoutMs: 30_000 })
  await reader.join('big', { since: 0, epoch })
  await until(reader, () => seqsOf(reader, 'big').length === 24, 'the replay', 30_000)
  turning = false
  t.same(seqsOf(reader, 'big'), range(1, 24), 'every op, in order')
  const reads = log.reads.filter((r) => r.project === 'big' && r.ops > 0)
  const perSlice = Math.max(1, Math.floor(REPLAY_SLICE_BYTES / OP_BYTES))
  t.ok(reads.length >= Math.ceil(24 / perSlice), `read in ${reads.length} slices`)
  t.ok(reads.every((r) => r.ops <= perSlice), `each slice at most ${perSlice} ops of ${OP_BYTES} bytes (${reads.map((r) => r.ops).join(', ')})`)
  t.ok(reads.every((r, i) => i === 0 || r.turn > (reads[i - 1] as { turn: number }).turn), 'a turn of the event loop between two slices')
})
