/**
 * The client's snapshots (protocol 1.2) against a real Flow server with a
 * host reducer and a short history: a joiner beyond the history gets
 * `onSnapshot` and the ops after it, a reconnect beyond the history gets a
 * snapshot instead of a reset, uploads are answered, and a client that does
 * not ask for snapshots still gets `onReset`.
 */
import t from 'tap'
import { FlowClient, FlowError, type JoinOptions, type Op, type ProjectHandle, type SnapshotInfo } from '../../client/index.js'
import { startServer, type TestServer } from '../helpers/server.js'
import { startProxy } from '../helpers/proxy.js'
import { deferred, waitFor, withDeadline } from '../helpers/wait.js'
import { flow } from '../helpers/flow-client.js'

interface Count { readonly n: number, readonly sum: number }

/** The server's reducer and the app's: a count of ops and the sum of their data. */
const reduce = (state: unknown, op: Pick<Op, 'data'>): Count => {
  const s = state as Count
  return { n: s.n + 1, sum: s.sum + (op.data as number) }
}
const reducer = { initial: { n: 0, sum: 0 }, reduce }

const sumTo = (n: number): number => n * (n - 1) / 2

/**
 * What an app builds from one project with `snapshot: true`: its state,
 * from each snapshot and the ops and fresh acks after it, and what it was
 * handed, in order.
 */
class Board {
  state: Count | undefined
  readonly snapshots: SnapshotInfo[] = []
  readonly resets: number[] = []
  readonly seqs: number[] = []
  readonly handle: ProjectHandle

  constructor (client: FlowClient, project: string, options: JoinOptions = {}) {
    client.on('op', (p, op) => {
      if (p !== project) return
      this.seqs.push(op.seq)
      this.state = reduce(this.state, op)
    })
    client.on('ack', (p, ack) => {
      if (p !== project || ack.stale) return
      this.seqs.push(ack.seq)
      this.state = reduce(this.state, ack)
    })
    this.handle = client.join(project, {
      snapshot: true,
      onSnapshot: (state, info) => {
        this.snapshots.push(info)
        // A server without a reducer starts projects at null.
        this.state = (state ?? reducer.initial) as Count
      },
      onReset: ({ seq }) => { this.resets.push(seq) },
      ...options
    })
  }
}

async function append (handle: ProjectHandle, count: number, from: number): Promise<void> {
  const sends = []
  for (let i = 0; i < count; i++) sends.push(handle.send(from + i))
  await withDeadline(Promise.all(sends), `${count} acks`, 20_000)
}

async function snapshotAt (server: TestServer, project: string, seq: number): Promise<void> {
  await waitFor(async () => ((await server.app.flow.ports.snapshots.get(project))?.seq ?? -1) >= seq,
    { what: `a snapshot of ${project} at ${seq}`, timeoutMs: 10_000 })
}

/** The servers' reducer folds every EVERY ops, in the background. */
const EVERY = 40

/**
 * Appends in steps of EVERY ops, each once the server stored the snapshot
 * the step before made: a writer far ahead of the folds would have the
 * history trimmed past the last snapshot before the next fold reads it.
 */
async function appendPaced (server: TestServer, handle: ProjectHandle, count: number, from: number): Promise<void> {
  for (let done = 0; done < count;) {
    const step = Math.min(EVERY, count - done)
    await append(handle, step, from + done)
    done += step
    await snapshotAt(server, handle.project, Math.floor((from + done) / EVERY) * EVERY)
  }
}

t.test('a joiner beyond the history gets onSnapshot and the ops after it, and ends with the writer\'s fold', async (t) => {
  const server = await startServer(t, { historyMemory: 50, snapshotEvery: EVERY, snapshots: reducer })
  const writer = new Board(flow(t, `${server.ws}?userId=w`), 'board')
  await withDeadline(writer.handle.ready, 'the writer joined', 5000)
  await waitFor(() => writer.state !== undefined, { what: 'the writer\'s snapshot' })
  t.same(writer.snapshots.map((s) => s.seq), [0], 'a first join without since gets the state at 0')
  t.same(writer.state, { n: 0, sum: 0 }, 'the reducer\'s initial state')
  await appendPaced(server, writer.handle, 300, 0)

  const gate = deferred()
  const reader = new Board(flow(t, `${server.ws}?userId=r`), 'board', {
    onSnapshot: async (state, info) => {
      reader.snapshots.push(info)
      await gate.promise
      reader.state = state as Count
    }
  })
  await waitFor(() => reader.snapshots.length === 1, { what: 'onSnapshot' })
  const at = reader.snapshots[0] as SnapshotInfo
  t.ok(at.seq >= 280 && at.seq < 300, `the snapshot is the reducer's newest (${at.seq}), beyond the history's start`)
  t.equal(at.epoch, writer.handle.epoch)
  t.equal(reader.handle.seq, at.seq, 'the handle is at the snapshot')
  t.same(reader.seqs, [], 'no op while onSnapshot runs')
  gate.resolve()
  await waitFor(() => reader.handle.seq === 300, { what: 'the tail' })
  t.same(reader.seqs, Array.from({ length: 300 - at.seq }, (_, i) => at.seq + 1 + i), 'exactly the ops after it, in order')
  t.same(reader.state, { n: 300, sum: sumTo(300) }, 'the same fold as the writer')
  t.same(writer.state, reader.state)

  await append(writer.handle, 5, 300)
  await waitFor(() => reader.handle.seq === 305, { what: 'live ops' })
  t.same(reader.state, { n: 305, sum: sumTo(305) })
  t.same(reader.resets, [], 'no reset')
})

t.test('the snapshot event comes with the state, before onSnapshot', async (t) => {
  const server = await startServer(t, { snapshots: reducer })
  const client = flow(t, `${server.ws}?userId=e`)
  const order: string[] = []
  client.on('snapshot', (p, state, info) => { order.push(`event ${p} ${JSON.stringify(state)} ${info.seq}`) })
  client.join('doc', { snapshot: true, onSnapshot: () => { order.push('callback') } })
  await waitFor(() => order.length === 2, { what: 'the event and the callback' })
  t.same(order, ['event doc {"n":0,"sum":0} 0', 'callback'])
})

t.test('a reconnect within the history gets the ops, beyond it a snapshot, never a reset', async (t) => {
  const server = await startServer(t, { historyMemory: 50, snapshotEvery: EVERY, snapshots: reducer })
  const proxy = await startProxy(t, Number(new URL(server.http).port))
  const writer = new Board(flow(t, `${server.ws}?userId=w`), 'doc')
  await withDeadline(writer.handle.ready, 'the writer joined', 5000)
  await append(writer.handle, 10, 0)
  const client = flow(t, `${proxy.ws()}?userId=r`)
  const reader = new Board(client, 'doc')
  await waitFor(() => reader.handle.seq === 10, { what: 'the reader at 10' })
  t.same(reader.snapshots.map((s) => s.seq), [0], 'the first join: the state at 0 and every op')

  // A short cut: the history serves the reader's position.
  proxy.refuse(true)
  proxy.cut()
  await waitFor(() => client.status === 'reconnecting', { what: 'reconnecting' })
  await append(writer.handle, 5, 10)
  proxy.refuse(false)
  await waitFor(() => reader.handle.seq === 15, { what: 'the ops missed' })
  t.same(reader.snapshots.length, 1, 'no snapshot: the history served')
  t.same(reader.seqs, Array.from({ length: 15 }, (_, i) => i + 1))

  // A long one: the history no longer reaches back.
  proxy.refuse(true)
  proxy.cut()
  await waitFor(() => client.status === 'reconnecting', { what: 'reconnecting' })
  await appendPaced(server, writer.handle, 300, 15)
  proxy.refuse(false)
  await waitFor(() => reader.handle.seq === 315, { what: 'the reader caught up' })
  t.equal(reader.snapshots.length, 2, 'a snapshot')
  t.ok((reader.snapshots[1] as SnapshotInfo).seq >= 280, 'the newest one')
  t.same(reader.resets, [], 'no reset')
  t.same(reader.state, { n: 315, sum: sumTo(315) }, 'the writer\'s fold')
  t.same(reader.state, writer.state)
})

t.test('uploadSnapshot resolves the server\'s answer: stored, older, ahead; a refused upload rejects', async (t) => {
  const server = await startServer(t, { historyMemory: 20, snapshotMaxBytes: 2048 })
  const writer = new Board(flow(t, `${server.ws}?userId=w`), 'doc')
  await withDeadline(writer.handle.ready, 'joined', 5000)
  await append(writer.handle, 10, 0)
  t.same(await writer.handle.uploadSnapshot({ upTo: 10 }), { stored: true }, 'at the handle\'s position')
  t.same(await writer.handle.uploadSnapshot({}, { epoch: writer.handle.epoch as string, seq: 9 }), { stored: false, reason: 'older' })
  t.same(await writer.handle.uploadSnapshot({}, { epoch: writer.handle.epoch as string, seq: 11 }), { stored: false, reason: 'ahead' })
  t.same(await writer.handle.uploadSnapshot({}, { epoch: 'gone', seq: 1 }), { stored: false, reason: 'epoch' })
  const tooBig = await writer.handle.uploadSnapshot('x'.repeat(4096)).then(() => null, (err: unknown) => err)
  t.ok(tooBig instanceof FlowError, 'a FlowError')
  t.match(tooBig, { code: 'limit_exceeded', project: 'doc' }, 'over FLOW_SNAPSHOT_MAX_BYTES')
  const notJson = await writer.handle.uploadSnapshot(undefined).then(() => null, (err: unknown) => err)
  t.match(notJson, { code: 'invalid_frame' }, 'undefined is not sent')

  await append(writer.handle, 30, 10)
  const reader = new Board(flow(t, `${server.ws}?userId=r`), 'doc', {
    onSnapshot: (state, info) => { reader.snapshots.push(info); reader.state = { n: (state as { upTo: number }).upTo, sum: sumTo(10) } }
  })
  await waitFor(() => reader.handle.seq === 40, { what: 'the reader at 40' })
  t.same(reader.snapshots.map((s) => s.seq), [10], 'a joiner gets the uploaded snapshot')
  t.same(reader.state, { n: 40, sum: sumTo(40) })

  await writer.handle.leave()
  const left = await writer.handle.uploadSnapshot({}).then(() => null, (err: unknown) => err)
  t.match(left, { code: 'left' }, 'after leave')
})

t.test('a client that does not ask for snapshots still gets onReset beyond the history', async (t) => {
  const server = await startServer(t, { historyMemory: 50, snapshotEvery: EVERY, snapshots: reducer })
  const writer = new Board(flow(t, `${server.ws}?userId=w`), 'doc')
  await withDeadline(writer.handle.ready, 'joined', 5000)
  await appendPaced(server, writer.handle, 300, 0)
  const client = flow(t, `${server.ws}?userId=v1`)
  const resets: number[] = []
  const snapshots: unknown[] = []
  client.on('snapshot', (...args) => { snapshots.push(args) })
  const handle = client.join('doc', { onReset: ({ seq }) => { resets.push(seq) } })
  await waitFor(() => resets.length === 1, { what: 'onReset' })
  t.same(resets, [300], 'a reset to the head, as in 1.0')
  t.equal(handle.seq, 300)
  t.same(snapshots, [], 'no snapshot')
})
