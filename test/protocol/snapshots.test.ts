import t from 'tap'
import { startServer } from '../helpers/server.js'
import { connect, type Frame, type TestClient } from '../helpers/client.js'
import { collect, expectError, range, seqsOf, until } from '../helpers/protocol.js'
import type { Op } from '../../lib/types.js'
import { waitFor } from '../helpers/wait.js'

/** The board of the tests: a count of ops and the sum of their data. */
const reducer = {
  initial: { n: 0, sum: 0 },
  reduce: (state: unknown, op: Op) => {
    const s = state as { n: number, sum: number }
    return { n: s.n + 1, sum: s.sum + (op.data as number) }
  }
}

async function append (client: TestClient, project: string, count: number, from = 0): Promise<void> {
  const start = client.all('ack').length
  for (let i = 0; i < count; i++) client.send({ type: 'op', project, data: from + i })
  await collect(client, (f) => f.type === 'ack' && f.project === project, start + count, 'acks', 20_000)
}

/** The state a joiner ends with: its snapshot folded with the ops after it. */
function foldOf (client: TestClient, project: string): { n: number, sum: number } {
  const snapshot = client.all('snapshot').find((f) => f.project === project) as Frame & { state: { n: number, sum: number } }
  let state = snapshot.state
  for (const op of client.received.filter((f) => f.type === 'op' && f.project === project)) {
    state = reducer.reduce(state, op as unknown as Op)
  }
  return state
}

const sumTo = (n: number): number => n * (n - 1) / 2

t.test('a joiner beyond the history gets the reducer\'s snapshot and the ops after it, never reset', async (t) => {
  const server = await startServer(t, { historyMemory: 100, snapshotEvery: 40, snapshots: reducer })
  const writer = await connect(t, `${server.ws}?userId=w`)
  const { epoch } = await writer.join('board')
  await append(writer, 'board', 130)
  const reader = await connect(t, server.ws)
  // The folds run in the background (every 40 ops, each to the head): wait until one reached op 120.
  await waitFor(async () => ((await server.app.flow.ports.snapshots.get('board'))?.seq ?? 0) >= 120, { what: 'a snapshot at 120 or later', timeoutMs: 15_000 })
  const joined = await reader.join('board', { snapshot: true })
  t.match(joined, { type: 'joined', epoch, seq: 130 })
  const snapshot = await reader.next('snapshot')
  const at = snapshot.seq as number
  t.ok(at >= 120 && at <= 130, `a snapshot past the 100-op history: at ${at}`)
  t.match(snapshot, { type: 'snapshot', project: 'board', epoch, state: { n: at, sum: sumTo(at) } }, 'the fold of ops 1..seq')
  await until(reader, () => seqsOf(reader, 'board').length === 130 - at, 'the ops after the snapshot')
  t.same(seqsOf(reader, 'board'), range(at + 1, 130), 'exactly the ops after it')
  t.same(foldOf(reader, 'board'), { n: 130, sum: sumTo(130) }, 'the snapshot and the tail fold into the full state')
  await append(writer, 'board', 5, 130)
  await until(reader, () => seqsOf(reader, 'board').length === 135 - at, 'live ops')
  t.same(seqsOf(reader, 'board'), range(at + 1, 135))
  t.same(reader.all('reset'), [], 'no reset')

  const old = await connect(t, server.ws)
  await old.join('board', { since: 3, epoch, snapshot: true })
  const oldAt = (await old.next('snapshot')).seq as number
  await until(old, () => seqsOf(old, 'board').length === 135 - oldAt, 'since beyond the history: snapshot and tail')
  t.same(foldOf(old, 'board'), { n: 135, sum: sumTo(135) })

  const v1 = await connect(t, server.ws)
  await v1.join('board', { since: 3, epoch })
  const reset = await v1.next('reset')
  t.match(reset, { type: 'reset', project: 'board', epoch, seq: 135 }, 'a client that does not ask for snapshots gets reset, as in 1.0')
  t.same(v1.all('snapshot'), [])
})

t.test('without a reducer and a stored snapshot, a joiner that takes state gets the initial state and the whole history', async (t) => {
  const server = await startServer(t)
  const writer = await connect(t, server.ws)
  const { epoch } = await writer.join('doc')
  await append(writer, 'doc', 5)
  const reader = await connect(t, server.ws)
  await reader.join('doc', { snapshot: true })
  t.match(await reader.next('snapshot'), { type: 'snapshot', epoch, seq: 0, state: null })
  await until(reader, () => seqsOf(reader, 'doc').length === 5, 'the history')
  t.same(seqsOf(reader, 'doc'), range(1, 5))
})

t.test('a client uploads a snapshot; it is kept when current and newer, and refused with a reason otherwise', async (t) => {
  const server = await startServer(t, { historyMemory: 20 })
  const writer = await connect(t, server.ws)
  const { epoch } = await writer.join('doc')
  await append(writer, 'doc', 10)
  writer.send({ type: 'snapshot', project: 'doc', epoch, seq: 10, state: { upTo: 10 }, ref: 1 })
  t.match(await writer.next('stored'), { type: 'stored', project: 'doc', epoch, seq: 10, stored: true, ref: 1 })
  writer.send({ type: 'snapshot', project: 'doc', epoch, seq: 9, state: {}, ref: 2 })
  t.match(await writer.next('stored'), { stored: false, reason: 'older', ref: 2 })
  writer.send({ type: 'snapshot', project: 'doc', epoch, seq: 11, state: {}, ref: 3 })
  t.match(await writer.next('stored'), { stored: false, reason: 'ahead', ref: 3 })
  writer.send({ type: 'snapshot', project: 'doc', epoch: 'other', seq: 1, state: {}, ref: 4 })
  t.match(await writer.next('stored'), { stored: false, reason: 'epoch', ref: 4 })
  await append(writer, 'doc', 30)
  const reader = await connect(t, server.ws)
  await reader.join('doc', { since: 2, epoch, snapshot: true })
  t.match(await reader.next('snapshot'), { seq: 10, state: { upTo: 10 } }, 'the uploaded snapshot serves a joiner past the history')
  await until(reader, () => seqsOf(reader, 'doc').length === 30, 'the ops after it, kept beyond the history bound')
  t.same(seqsOf(reader, 'doc'), range(11, 40))

  await expectError(t, reader, { type: 'snapshot', project: 'other', epoch, seq: 1, state: {} }, 'not_joined', 'only a member uploads')
  await expectError(t, reader, { type: 'snapshot', project: 'doc', epoch, seq: 1 }, 'bad_request', 'state is required')
})

t.test('a snapshot larger than FLOW_SNAPSHOT_MAX_BYTES is refused with limit_exceeded', async (t) => {
  const server = await startServer(t, { snapshotMaxBytes: 2048, maxPayloadBytes: 64 * 1024 })
  const writer = await connect(t, server.ws)
  const { epoch } = await writer.join('doc')
  await append(writer, 'doc', 1)
  await expectError(t, writer, { type: 'snapshot', project: 'doc', epoch, seq: 1, state: 'x'.repeat(4096) }, 'limit_exceeded', 'too big')
  writer.send({ type: 'snapshot', project: 'doc', epoch, seq: 1, state: 'x'.repeat(1000), ref: 9 })
  t.match(await writer.next('stored'), { stored: true, ref: 9 }, 'the connection goes on')
})

t.test('folds keep up with bursts of ops that stay within twice the history bound', async (t) => {
  // Bursts of 90 ops sent at once into a 50-op history, a fold every 40: each fold runs behind the appends,
  // folds to the head and stores on the way, so the ops after the last snapshot (kept up to 100) always reach it.
  const server = await startServer(t, { historyMemory: 50, snapshotEvery: 40, snapshots: reducer })
  const writer = await connect(t, `${server.ws}?userId=w`)
  await writer.join('fast')
  // The first burst stays within the plain bound: the initial snapshot (at 0) is stored just after op 1 lands.
  await append(writer, 'fast', 45)
  for (let burst = 0; burst < 4; burst++) await append(writer, 'fast', 90, 45 + burst * 90)
  await waitFor(async () => ((await server.app.flow.ports.snapshots.get('fast'))?.seq ?? 0) >= 320,
    { what: 'a snapshot near the head', timeoutMs: 15_000 })
  const reader = await connect(t, server.ws)
  await reader.join('fast', { snapshot: true })
  const at = (await reader.next('snapshot')).seq as number
  await until(reader, () => seqsOf(reader, 'fast').length === 405 - at, 'the ops after the snapshot')
  t.same(foldOf(reader, 'fast'), { n: 405, sum: sumTo(405) }, 'snapshot and tail fold into the full state')
  t.same(reader.all('reset'), [])
})
