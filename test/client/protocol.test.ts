/**
 * The client against a fake WebSocket the test drives frame by frame: the
 * exact sequences a server could send (gaps, duplicates, replays of our own
 * ops, resets, refusals), checked against what the app is handed and what
 * the client sends back.
 */
import t, { type Test } from 'tap'
import { FlowClient, FlowError, type Ack, type AckEvent, type CloseEventLike, type FlowClientOptions, type Member, type MessageEventLike, type Op, type Presence, type RetryInfo, type Status, type WebSocketLike } from '../../client/index.js'
import { waitFor, withDeadline } from '../helpers/wait.js'

type Sent = Record<string, unknown> & { type: string }

class FakeSocket implements WebSocketLike {
  readonly url: string
  readyState = 0
  readonly sent: Sent[] = []
  closedWith: { code?: number, reason?: string } | undefined
  /** answer every ping with a pong, as a live server does */
  autoPong = false
  onopen: ((event: unknown) => void) | null = null
  onmessage: ((event: MessageEventLike) => void) | null = null
  onclose: ((event: CloseEventLike) => void) | null = null
  onerror: ((event: unknown) => void) | null = null

  constructor (url: string) {
    this.url = url
  }

  send (data: string): void {
    if (this.readyState !== 1) throw new Error('not open')
    const frame = JSON.parse(data) as Sent
    this.sent.push(frame)
    if (this.autoPong && frame.type === 'ping') queueMicrotask(() => { this.receive({ type: 'pong', ts: Date.now() }) })
  }

  close (code?: number, reason?: string): void {
    this.closedWith = { code, reason }
    this.readyState = 3
  }

  // ---- driven by the test

  open (): void {
    this.readyState = 1
    this.onopen?.({})
  }

  receive (...frames: object[]): void {
    for (const f of frames) this.onmessage?.({ data: JSON.stringify(f) })
  }

  drop (code = 1006, reason = ''): void {
    this.readyState = 3
    this.onclose?.({ code, reason })
  }

  /** Sent frames of a type. */
  all (type: string): Sent[] {
    return this.sent.filter((f) => f.type === type)
  }

  last (type: string): Sent {
    const f = this.all(type).at(-1)
    if (f === undefined) throw new Error(`no ${type} frame sent; sent: ${JSON.stringify(this.sent)}`)
    return f
  }
}

interface Harness {
  readonly client: FlowClient
  readonly sockets: FakeSocket[]
  /** the n-th socket the client made (0-based), once it exists */
  socket (n: number): Promise<FakeSocket>
  readonly ops: Op[]
  readonly acks: AckEvent[]
  readonly resets: Array<{ epoch: string, seq: number }>
  readonly statuses: Array<{ status: Status, retry?: RetryInfo }>
  readonly errors: FlowError[]
  readonly members: Array<readonly Member[]>
}

function harness (t: Test, options: Partial<FlowClientOptions> = {}): Harness {
  const sockets: FakeSocket[] = []
  class WebSocket extends FakeSocket {
    constructor (url: string) {
      super(url)
      sockets.push(this)
    }
  }
  const client = new FlowClient({ url: 'ws://flow.test/ws', WebSocket, pingIntervalMs: 0, reconnect: { minDelayMs: 1, maxDelayMs: 4 }, ...options })
  const h: Harness = {
    client,
    sockets,
    socket: async (n) => await waitFor(() => sockets[n], { what: `socket ${n}`, timeoutMs: 2000, intervalMs: 2 }),
    ops: [],
    acks: [],
    resets: [],
    statuses: [],
    errors: [],
    members: []
  }
  client.on('op', (_p, op) => { h.ops.push(op) })
  client.on('ack', (_p, ack) => { h.acks.push(ack) })
  client.on('reset', (_p, epoch, seq) => { h.resets.push({ epoch, seq }) })
  client.on('status', (status, retry) => { h.statuses.push(retry === undefined ? { status } : { status, retry }) })
  client.on('error', (err) => { h.errors.push(err) })
  client.on('members', (_p, members) => { h.members.push(members) })
  t.teardown(() => { client.close() })
  return h
}

const me = (sessionId: string, presence: Presence = {}): Member => ({ sessionId, userId: 'me', presence, joinedAt: 1 })
const other = (sessionId: string, userId = 'bob', presence: Presence = {}): Member => ({ sessionId, userId, presence, joinedAt: 2 })

function op (seq: number, id = `o${seq}`, sessionId = 'peer'): object {
  return { type: 'op', project: 'p', seq, id, userId: 'bob', sessionId, data: { n: seq }, ts: 1 }
}

/** Connects, opens the first socket, answers its join with `joined`. */
async function joined (h: Harness, extra: { epoch?: string, seq?: number, members?: Member[], sessionId?: string } = {}): Promise<FakeSocket> {
  if (h.client.status === 'closed') h.client.connect()
  const socket = await h.socket(h.sockets.length === 0 ? 0 : h.sockets.length - 1)
  if (socket.readyState === 0) socket.open()
  const join = socket.last('join')
  const sessionId = extra.sessionId ?? 's1'
  socket.receive({ type: 'joined', project: join.project, sessionId, userId: 'me', epoch: extra.epoch ?? 'e1', seq: extra.seq ?? 0, members: extra.members ?? [me(sessionId)], ref: join.ref })
  return socket
}

const seqs = (ops: readonly Op[]): number[] => ops.map((o) => o.seq)

t.test('ops are handed over in seq order; a gap sends sync instead of skipping ahead; duplicates are dropped', async (t) => {
  const h = harness(t)
  const handle = h.client.join('p')
  const s = await joined(h)
  t.match(s.last('join'), { type: 'join', project: 'p', since: 0 }, 'a first join asks for the history from 0')
  s.receive(op(1), op(3))
  t.same(seqs(h.ops), [1], 'op 3 is held: op 2 is missing')
  t.match(s.last('sync'), { type: 'sync', project: 'p', since: 1, epoch: 'e1' }, 'the gap asks for what follows 1')
  s.receive(op(4))
  t.equal(s.all('sync').length, 1, 'one sync while one is in flight')
  t.same(seqs(h.ops), [1])
  // The replay of the sync, overlapping what was held, then synced.
  s.receive(op(2), op(3), op(4), { type: 'synced', project: 'p', epoch: 'e1', seq: 4, ref: s.last('sync').ref })
  t.same(seqs(h.ops), [1, 2, 3, 4], 'everything in order, once')
  s.receive(op(4), op(2), op(5))
  t.same(seqs(h.ops), [1, 2, 3, 4, 5], 'replayed ops are not handed over again')
  t.equal(handle.seq, 5)
  t.equal(handle.epoch, 'e1')
  t.equal(s.all('sync').length, 1, 'no sync without a gap')
})

t.test('a gap that a synced does not close is asked for again', async (t) => {
  const h = harness(t)
  h.client.join('p')
  const s = await joined(h)
  s.receive(op(1), op(4))
  s.receive({ type: 'synced', project: 'p', epoch: 'e1', seq: 1, ref: s.last('sync').ref })
  await waitFor(() => s.all('sync').length === 2, { what: 'a second sync', timeoutMs: 2000, intervalMs: 2 })
  t.match(s.last('sync'), { since: 1 })
  s.receive(op(2), op(3), { type: 'synced', project: 'p', epoch: 'e1', seq: 4, ref: s.last('sync').ref })
  t.same(seqs(h.ops), [1, 2, 3, 4])
})

t.test('own ops resolve once, in order among the others; unacked ones are sent again with the same id after a reconnect', async (t) => {
  const h = harness(t)
  const handle = h.client.join('p')
  const s1 = await joined(h)
  const resolved: Array<{ id: string, ack: Ack }> = []
  const sendA = handle.send({ a: 1 }, { id: 'A' }).then((ack) => { resolved.push({ id: 'A', ack }) })
  const sendB = handle.send({ b: 1 }, { id: 'B' }).then((ack) => { resolved.push({ id: 'B', ack }) })
  const sendC = handle.send({ c: 1 }).then((ack) => { resolved.push({ id: ack.id, ack }) })
  const frames = s1.all('op')
  t.same(frames.map((f) => f.id).slice(0, 2), ['A', 'B'])
  const cId = frames[2]?.id as string
  t.match(cId, /^[A-Za-z0-9_-]{21}$/, 'a missing id is generated')
  t.same(handle.pending.map((p) => p.id), ['A', 'B', cId])
  // Another session's op 1, then our A as 2: A waits for op 1 even if its ack comes first.
  s1.receive({ type: 'ack', project: 'p', id: 'A', seq: 2, ref: frames[0]?.ref })
  t.same(h.acks, [], 'an ack ahead of a gap waits')
  s1.receive(op(1))
  await sendA
  t.same(h.ops.map((o) => o.seq), [1])
  t.match(h.acks, [{ id: 'A', seq: 2, epoch: 'e1', data: { a: 1 }, stale: false }])
  t.equal(handle.seq, 2)

  s1.drop()
  const s2 = await h.socket(1)
  s2.open()
  t.match(s2.last('join'), { project: 'p', since: 2, epoch: 'e1' }, 'the rejoin asks from the last seq seen, in its epoch')
  t.equal(s2.all('op').length, 0, 'ops wait for joined')
  s2.receive({ type: 'joined', project: 'p', sessionId: 's2', userId: 'me', epoch: 'e1', seq: 4, members: [me('s2'), me('s1')], ref: s2.last('join').ref })
  t.same(s2.all('op').map((f) => f.id), ['B', cId], 'unacked ops go again, same ids, same order')
  t.same(handle.members.map((m) => m.sessionId), ['s2'], 'our old session is not listed as a member')
  // The replay: B had landed before the drop (as 3, from the old session); C had not.
  s2.receive({ ...op(3, 'B', 's1'), data: { b: 1 } })
  await sendB
  s2.receive(op(4))
  s2.receive({ type: 'ack', project: 'p', id: 'B', seq: 3, ref: s2.all('op')[0]?.ref }, { type: 'ack', project: 'p', id: cId, seq: 5, ref: s2.all('op')[1]?.ref })
  await sendC
  t.same(h.ops.map((o) => o.seq), [1, 4], 'our own op B is not handed over as an op')
  t.same(h.acks.map((a) => [a.id, a.seq, a.stale]), [['A', 2, false], ['B', 3, false], [cId, 5, false]], 'one ack event per op, in seq order')
  t.same(resolved.map((r) => [r.id, r.ack.seq]), [['A', 2], ['B', 3], [cId, 5]], 'each promise resolved once with its seq')
  t.same(handle.pending, [])
})

t.test('a send with the id of a pending op returns the same promise', async (t) => {
  const h = harness(t)
  const handle = h.client.join('p')
  const s = await joined(h)
  const first = handle.send(1, { id: 'same' })
  t.equal(handle.send(2, { id: 'same' }), first)
  t.equal(s.all('op').length, 1)
})

t.test('a reset calls the callback, holds live ops until it settles, then continues from its seq', async (t) => {
  let release: () => void = () => {}
  const calls: Array<{ epoch: string, seq: number, seen: number }> = []
  const h = harness(t)
  const handle = h.client.join('p', {
    onReset: async (reset) => {
      calls.push({ epoch: reset.epoch, seq: reset.seq, seen: h.ops.length })
      await new Promise<void>((resolve) => { release = resolve })
    }
  })
  const s = await joined(h)
  s.receive(op(1))
  const x = handle.send('x', { id: 'X' })
  s.receive({ type: 'reset', project: 'p', epoch: 'e2', seq: 10 })
  t.same(h.resets, [{ epoch: 'e2', seq: 10 }])
  t.equal(handle.epoch, 'e2')
  t.equal(handle.seq, 10)
  await waitFor(() => calls.length === 1, { what: 'the callback', timeoutMs: 5000, intervalMs: 20 })
  t.same(calls, [{ epoch: 'e2', seq: 10, seen: 1 }])
  s.receive(op(11), { type: 'ack', project: 'p', id: 'X', seq: 12 })
  t.same(seqs(h.ops), [1], 'live ops wait while the app reloads')
  t.equal(s.all('sync').length, 0, 'no sync while holding')
  release()
  await x
  t.same(seqs(h.ops), [1, 11], 'then they come, from the reset seq on')
  t.match(h.acks, [{ id: 'X', seq: 12, epoch: 'e2', stale: false }])
  t.equal(handle.seq, 12)
})

t.test('an ack at or below a reset seq resolves the send, marked stale (the reloaded state has it)', async (t) => {
  const h = harness(t)
  const handle = h.client.join('p')
  const s = await joined(h)
  const y = handle.send('y', { id: 'Y' })
  s.receive({ type: 'reset', project: 'p', epoch: 'e3', seq: 20 })
  s.receive({ type: 'ack', project: 'p', id: 'Y', seq: 15 })
  t.same(await y, { id: 'Y', seq: 15, epoch: 'e3' })
  t.match(h.acks, [{ id: 'Y', seq: 15, stale: true }])
  s.receive(op(21))
  t.same(seqs(h.ops), [21])
})

t.test('acks waiting behind a gap when the epoch changes resolve before the reset; the stale sync answer is ignored', async (t) => {
  const resets: number[] = []
  const h = harness(t)
  const handle = h.client.join('p', { onReset: (r) => { resets.push(r.seq) } })
  const s = await joined(h)
  const z = handle.send('z', { id: 'Z' })
  s.receive(op(1), { type: 'ack', project: 'p', id: 'Z', seq: 3 })
  const sync = s.last('sync')
  t.match(sync, { since: 1, epoch: 'e1' })
  s.receive({ type: 'reset', project: 'p', epoch: 'e2', seq: 7 })
  t.same(await z, { id: 'Z', seq: 3, epoch: 'e1' }, 'the ack that waited resolves, in the epoch it was given in')
  t.match(h.acks, [{ id: 'Z', stale: true }])
  // The server answers the sync (sent from e1) with a reset to e2, the epoch we are in: nothing new.
  s.receive({ type: 'reset', project: 'p', epoch: 'e2', seq: 7 }, { type: 'synced', project: 'p', epoch: 'e2', seq: 7, ref: sync.ref })
  await waitFor(() => resets.length >= 1, { what: 'the reset callback', timeoutMs: 5000, intervalMs: 20 })
  s.receive(op(8))
  t.same(resets, [7], 'one reset, not two')
  t.same(h.resets.length, 1)
  t.same(seqs(h.ops), [1, 8])
})

t.test('a reconnect whose epoch is gone gets a reset from the join replay', async (t) => {
  const h = harness(t)
  const handle = h.client.join('p')
  const s1 = await joined(h)
  s1.receive(op(1), op(2))
  s1.drop(1001, 'server shutting down')
  const s2 = await h.socket(1)
  s2.open()
  t.match(s2.last('join'), { since: 2, epoch: 'e1' })
  s2.receive({ type: 'joined', project: 'p', sessionId: 's2', userId: 'me', epoch: 'e9', seq: 0, members: [me('s2')], ref: s2.last('join').ref })
  t.equal(handle.epoch, 'e1', 'joined alone does not move the position')
  s2.receive({ type: 'reset', project: 'p', epoch: 'e9', seq: 0 }, op(1, 'n1'))
  await waitFor(() => h.ops.length === 3, { what: 'op 1 of the new epoch', timeoutMs: 5000, intervalMs: 20 })
  t.same(h.ops.map((o) => o.id), ['o1', 'o2', 'n1'])
  t.same(h.resets, [{ epoch: 'e9', seq: 0 }])
})

t.test('snapshot: true: the first join omits since, rejoins and syncs send the position, all with snapshot: true', async (t) => {
  const h = harness(t)
  const states: unknown[] = []
  const handle = h.client.join('p', { snapshot: true, onSnapshot: (state) => { states.push(state) } })
  const s1 = await joined(h, { seq: 5 })
  const join = s1.last('join')
  t.match(join, { type: 'join', project: 'p', snapshot: true })
  t.notOk('since' in join, 'no since: the app has no state yet')
  s1.receive({ type: 'snapshot', project: 'p', epoch: 'e1', seq: 4, state: { n: 4 } }, op(5))
  await waitFor(() => h.ops.length === 1, { what: 'op 5', timeoutMs: 5000, intervalMs: 20 })
  t.same(states, [{ n: 4 }])
  t.equal(handle.seq, 5)
  s1.receive(op(7))
  t.match(s1.last('sync'), { type: 'sync', since: 5, epoch: 'e1', snapshot: true }, 'a gap asks for the position, taking state')
  s1.drop()
  const s2 = await h.socket(1)
  s2.open()
  t.match(s2.last('join'), { type: 'join', since: 5, epoch: 'e1', snapshot: true }, 'a rejoin sends the position')
})

t.test('a connection lost before the first snapshot joins again without since', async (t) => {
  const h = harness(t)
  h.client.join('p', { snapshot: true })
  const s1 = await joined(h, { seq: 5 })
  s1.drop()
  const s2 = await h.socket(1)
  s2.open()
  const join = s2.last('join')
  t.match(join, { snapshot: true })
  t.notOk('since' in join, 'still no state: no position')
})

t.test('a snapshot holds live ops while onSnapshot runs, confirms own acks it covers as stale, keeps the later ones', async (t) => {
  let release: () => void = () => {}
  const calls: Array<{ state: unknown, epoch: string, seq: number, seen: number }> = []
  const h = harness(t)
  const handle = h.client.join('p', {
    snapshot: true,
    since: 0,
    onSnapshot: async (state, info) => {
      calls.push({ state, epoch: info.epoch, seq: info.seq, seen: h.ops.length })
      await new Promise<void>((resolve) => { release = resolve })
    }
  })
  const s = await joined(h)
  t.match(s.last('join'), { since: 0, snapshot: true }, 'since given: sent')
  s.receive(op(1))
  const a = handle.send('a', { id: 'A' })
  const b = handle.send('b', { id: 'B' })
  // A gap: the acks wait; the sync is answered by a snapshot at 3, which has A's op.
  s.receive({ type: 'ack', project: 'p', id: 'A', seq: 3 }, { type: 'ack', project: 'p', id: 'B', seq: 6 })
  s.receive({ type: 'snapshot', project: 'p', epoch: 'e1', seq: 3, state: { upTo: 3 } })
  t.same(await a, { id: 'A', seq: 3, epoch: 'e1' })
  t.match(h.acks, [{ id: 'A', stale: true }], 'A is in the snapshot')
  t.equal(handle.seq, 3)
  await waitFor(() => calls.length === 1, { what: 'onSnapshot', timeoutMs: 5000, intervalMs: 20 })
  t.same(calls, [{ state: { upTo: 3 }, epoch: 'e1', seq: 3, seen: 1 }])
  s.receive(op(4), op(5))
  t.same(seqs(h.ops), [1], 'live ops wait')
  release()
  await b
  t.same(seqs(h.ops), [1, 4, 5], 'then the ops after the snapshot')
  t.match(h.acks, [{ id: 'A', stale: true }, { id: 'B', seq: 6, stale: false }], 'B, after it, is a fresh ack')
  t.equal(handle.seq, 6)
  // A snapshot of this epoch below where the app is (a late answer): ignored.
  s.receive({ type: 'snapshot', project: 'p', epoch: 'e1', seq: 5, state: {} }, op(6, 'x6'), op(7))
  t.equal(calls.length, 1, 'no callback')
  t.same(seqs(h.ops), [1, 4, 5, 7])
})

t.test('uploadSnapshot: answered by stored, rejected by an error frame, unavailable when the connection drops', async (t) => {
  const h = harness(t)
  const handle = h.client.join('p')
  const early = handle.uploadSnapshot({}).then(() => null, (err: unknown) => err)
  t.match(await early, { code: 'invalid_frame' }, 'no position before the first joined')
  const s1 = await joined(h, { seq: 2 })
  s1.receive(op(1), op(2))
  const stored = handle.uploadSnapshot({ n: 2 })
  const up = s1.last('snapshot')
  t.match(up, { type: 'snapshot', project: 'p', epoch: 'e1', seq: 2, state: { n: 2 } })
  s1.receive({ type: 'stored', project: 'p', epoch: 'e1', seq: 2, stored: false, reason: 'older', ref: up.ref })
  t.same(await stored, { stored: false, reason: 'older' })
  const refused = handle.uploadSnapshot('big', { epoch: 'e1', seq: 1 })
  s1.receive({ type: 'error', code: 'limit_exceeded', message: 'too big', project: 'p', ref: s1.last('snapshot').ref })
  t.match(await refused.then(() => null, (err: unknown) => err), { code: 'limit_exceeded', project: 'p' })
  const lost = handle.uploadSnapshot({})
  s1.drop()
  t.match(await lost.then(() => null, (err: unknown) => err), { code: 'unavailable' })
  const queued = handle.uploadSnapshot({ n: 2 })
  const s2 = await h.socket(1)
  s2.open()
  t.equal(s2.all('snapshot').length, 0, 'not sent before joined')
  s2.receive({ type: 'joined', project: 'p', sessionId: 's2', userId: 'me', epoch: 'e1', seq: 2, members: [me('s2')], ref: s2.last('join').ref })
  const again = s2.last('snapshot')
  s2.receive({ type: 'stored', project: 'p', epoch: 'e1', seq: 2, stored: true, ref: again.ref })
  t.same(await queued, { stored: true }, 'sent once joined')
  const big = await handle.uploadSnapshot('x'.repeat(70_000)).then(() => null, (err: unknown) => err)
  t.match(big, { code: 'invalid_frame' }, 'over maxFrameBytes: not sent')
})

t.test('members follow joined, member and presence events, this session included', async (t) => {
  const h = harness(t)
  const handle = h.client.join('p', { presence: { color: 'red' } })
  const s = await joined(h, { members: [me('s1', { color: 'red' }), other('s2')] })
  t.match(s.last('join'), { presence: { color: 'red' } })
  t.same(handle.members.map((m) => m.sessionId), ['s1', 's2'])
  s.receive({ type: 'member', project: 'p', event: 'join', member: other('s3', 'cat') })
  s.receive({ type: 'member', project: 'p', event: 'leave', member: other('s2') })
  s.receive({ type: 'member', project: 'p', event: 'leave', member: other('s2') })
  const seen: Array<[string, string, object]> = []
  h.client.on('presence', (_p, sessionId, userId, state) => { seen.push([sessionId, userId, state]) })
  s.receive({ type: 'presence', project: 'p', sessionId: 's3', userId: 'cat', state: { x: 1 } })
  t.same(seen, [['s3', 'cat', { x: 1 }]])
  t.same(handle.members.map((m) => [m.sessionId, m.presence]), [['s1', { color: 'red' }], ['s3', { x: 1 }]])
  t.same(h.members.map((list) => list.map((m) => m.sessionId)), [['s1', 's2'], ['s1', 's2', 's3'], ['s1', 's3']], 'a members event per change, none for a repeated leave')
})

t.test('presence is throttled: the first state goes at once, the last one at the end of the interval', async (t) => {
  const h = harness(t, { presenceThrottleMs: 30 })
  const handle = h.client.join('p')
  const s = await joined(h)
  for (let n = 1; n <= 20; n++) handle.setPresence({ n })
  t.same(s.all('presence').map((f) => f.state), [{ n: 1 }], 'one frame at once')
  t.same(handle.members[0]?.presence, { n: 20 }, 'our own entry is current at once')
  await waitFor(() => s.all('presence').length === 2, { what: 'the trailing presence', timeoutMs: 2000, intervalMs: 2 })
  t.same(s.all('presence').map((f) => f.state), [{ n: 1 }, { n: 20 }])
  handle.setPresence({ n: 20 })
  t.equal(s.all('presence').length, 2, 'an unchanged state is not sent again')
  s.drop()
  handle.setPresence({ n: 21 })
  const s2 = await h.socket(1)
  s2.open()
  t.match(s2.last('join'), { presence: { n: 21 } }, 'the rejoin carries the latest presence')
})

t.test('the token function is called for every connection; a 1008 token expired of a stable connection reconnects at once', async (t) => {
  let calls = 0
  const h = harness(t, {
    token: async () => `tok${++calls}`,
    // Any other close would wait at least a minute.
    reconnect: { minDelayMs: 60_000, maxDelayMs: 60_000, stableAfterMs: 0 }
  })
  h.client.join('p')
  const s1 = await joined(h)
  t.equal(new URL(s1.url).searchParams.get('token'), 'tok1')
  s1.drop(1008, 'token expired')
  const s2 = await h.socket(1)
  t.equal(new URL(s2.url).searchParams.get('token'), 'tok2', 'a fresh token')
  t.match(h.statuses.at(-1), { status: 'reconnecting', retry: { attempt: 0, delayMs: 0, code: 1008, reason: 'token expired' } })
  s2.open()
  t.match(s2.last('join'), { project: 'p' })
  t.equal(h.client.status, 'open')
})

t.test('a token that expires before the connection was stable backs off like any failure', async (t) => {
  const h = harness(t, { token: 'static', reconnect: { minDelayMs: 1, maxDelayMs: 1, stableAfterMs: 60_000 } })
  h.client.connect()
  const s1 = await h.socket(0)
  s1.open()
  s1.drop(1008, 'token expired')
  t.match(h.statuses.at(-1), { status: 'reconnecting', retry: { attempt: 0, code: 1008 } })
  const s2 = await h.socket(1)
  s2.open()
  s2.drop(1008, 'token expired')
  t.match(h.statuses.at(-1), { retry: { attempt: 1 } }, 'the attempts count up')
})

t.test('failed attempts back off; a stable connection starts the count again', async (t) => {
  const h = harness(t, { reconnect: { minDelayMs: 2, maxDelayMs: 8, stableAfterMs: 0 } })
  h.client.connect()
  for (let n = 0; n < 4; n++) (await h.socket(n)).drop()
  const retries = h.statuses.filter((s) => s.retry !== undefined)
  t.same(retries.map((s) => [s.status, s.retry?.attempt]), [['connecting', 0], ['connecting', 1], ['connecting', 2], ['connecting', 3]], 'never open yet: connecting')
  retries.forEach((s, n) => { t.ok((s.retry?.delayMs ?? -1) >= 0 && (s.retry?.delayMs ?? 99) < Math.min(8, 2 * 2 ** n), `retry ${n} waits below its ceiling`) })
  const s = await h.socket(4)
  s.open()
  s.drop()
  t.match(h.statuses.at(-1), { status: 'reconnecting', retry: { attempt: 0 } }, 'after a stable connection: the first attempt again')
  h.client.close()
  t.equal(h.client.status, 'closed')
  t.same(h.statuses.slice(0, 1).map((s) => s.status), ['connecting'])
})

t.test('close() stops reconnecting; connect() resumes the projects from where they were', async (t) => {
  const h = harness(t)
  const handle = h.client.join('p')
  const s1 = await joined(h)
  s1.receive(op(1))
  const pending = handle.send('later', { id: 'L' })
  h.client.close()
  t.equal(s1.closedWith?.code, 1000)
  t.equal(h.client.status, 'closed')
  s1.drop(1000)
  t.equal(h.sockets.length, 1, 'no reconnect after close()')
  h.client.connect()
  const s2 = await h.socket(1)
  s2.open()
  t.match(s2.last('join'), { since: 1, epoch: 'e1' })
  s2.receive({ type: 'joined', project: 'p', sessionId: 's2', userId: 'me', epoch: 'e1', seq: 1, members: [me('s2')], ref: s2.last('join').ref })
  t.same(s2.all('op').map((f) => f.id), ['L'])
  s2.receive({ type: 'ack', project: 'p', id: 'L', seq: 2 })
  t.match(await pending, { seq: 2 })
})

t.test('refused sends reject; rate-limited and unavailable ones are retried with the same id', async (t) => {
  const h = harness(t)
  const handle = h.client.join('p')
  const s = await joined(h)
  const bad = handle.send('bad', { id: 'bad' })
  const busy = handle.send('busy', { id: 'busy' })
  const [badFrame, busyFrame] = s.all('op')
  s.receive({ type: 'error', code: 'bad_request', message: 'op: data is invalid', project: 'p', ref: badFrame?.ref })
  await t.rejects(bad, { name: 'FlowError', code: 'bad_request', project: 'p' })
  s.receive({ type: 'error', code: 'rate_limited', message: 'dropped', project: 'p', ref: busyFrame?.ref })
  await waitFor(() => s.all('op').length === 3, { what: 'the retry', timeoutMs: 2000, intervalMs: 2 })
  t.match(s.all('op')[2], { id: 'busy', data: 'busy' })
  s.receive({ type: 'error', code: 'unavailable', message: 'try again', project: 'p', ref: s.all('op')[2]?.ref })
  await waitFor(() => s.all('op').length === 4, { what: 'another retry', timeoutMs: 2000, intervalMs: 2 })
  s.receive({ type: 'ack', project: 'p', id: 'busy', seq: 1 })
  t.match(await busy, { id: 'busy', seq: 1 })
  const lost = handle.send('lost', { id: 'lost' })
  s.receive({ type: 'error', code: 'not_joined', message: 'not joined to p', project: 'p', ref: s.last('op').ref })
  t.match(s.last('join'), { project: 'p', since: 1, epoch: 'e1' }, 'not_joined: the client joins again from where it is')
  s.receive({ type: 'joined', project: 'p', sessionId: 's1', userId: 'me', epoch: 'e1', seq: 1, members: [me('s1')], ref: s.last('join').ref })
  t.match(s.last('op'), { id: 'lost' }, 'then sends the op again')
  s.receive({ type: 'ack', project: 'p', id: 'lost', seq: 2 })
  t.match(await lost, { seq: 2 })
  t.same(h.errors, [], 'errors tied to a send are not error events')
  await t.rejects(handle.send(undefined), { code: 'invalid_frame' })
  await t.rejects(handle.send(1, { id: 'no spaces' }), { code: 'invalid_frame' })
  await t.rejects(handle.send('x'.repeat(70_000)), { code: 'invalid_frame' }, 'a frame over the payload limit is not sent')
  const cyclic: Record<string, unknown> = {}
  cyclic.self = cyclic
  await t.rejects(handle.send(cyclic), { code: 'invalid_frame' })
})

t.test('a join refused for good rejects ready and the pending sends, and is an error event', async (t) => {
  const h = harness(t)
  const handle = h.client.join('secret')
  const sent = handle.send('x')
  h.client.connect()
  const s = await h.socket(0)
  s.open()
  s.receive({ type: 'error', code: 'forbidden', message: 'not allowed to join secret', project: 'secret', ref: s.last('join').ref })
  await t.rejects(handle.ready, { code: 'forbidden' })
  await t.rejects(sent, { code: 'forbidden' })
  t.match(h.errors, [{ code: 'forbidden', project: 'secret' }])
  t.equal(handle.closed, true)
  t.equal(h.client.project('secret'), undefined)
  t.doesNotThrow(() => h.client.join('secret'), 'it can be joined again')
})

t.test('a join answered unavailable is sent again', async (t) => {
  const h = harness(t)
  const handle = h.client.join('p')
  h.client.connect()
  const s = await h.socket(0)
  s.open()
  s.receive({ type: 'error', code: 'unavailable', message: 'a dependency failed; try again', project: 'p', ref: s.last('join').ref })
  await waitFor(() => s.all('join').length === 2, { what: 'a second join', timeoutMs: 2000, intervalMs: 2 })
  s.receive({ type: 'joined', project: 'p', sessionId: 's1', userId: 'me', epoch: 'e1', seq: 0, members: [me('s1')], ref: s.last('join').ref })
  await withDeadline(handle.ready, 'ready', 5000)
  t.same(h.errors, [])
})

t.test('leave() rejects the pending sends and resolves on left', async (t) => {
  const h = harness(t)
  const handle = h.client.join('p')
  const s = await joined(h)
  const sent = handle.send('x')
  let left = false
  const leaving = handle.leave().then(() => { left = true })
  await t.rejects(sent, { code: 'left' })
  const frame = s.last('leave')
  t.match(frame, { type: 'leave', project: 'p' })
  t.equal(left, false)
  s.receive(op(1))
  t.same(h.ops, [], 'a left project hands nothing over')
  s.receive({ type: 'left', project: 'p', ref: frame.ref })
  await leaving
  t.equal(left, true)
  await t.rejects(handle.send('y'), { code: 'left' })
  t.equal(h.client.project('p'), undefined)
})

t.test('a connection silent for a whole ping interval is replaced', async (t) => {
  const h = harness(t, { pingIntervalMs: 15 })
  h.client.join('p')
  const s1 = await joined(h)
  await waitFor(() => s1.all('ping').length >= 1, { what: 'a ping', timeoutMs: 2000, intervalMs: 2 })
  const s2 = await h.socket(1)
  t.equal(s1.closedWith?.code, 4000)
  t.match(h.statuses.find((s) => s.retry?.code === 4000), { status: 'reconnecting', retry: { reason: 'no reply to ping' } })
  s2.open()
  t.equal(s2.all('join').length, 1)
})

t.test('a pong keeps the connection', async (t) => {
  const h = harness(t, { pingIntervalMs: 15 })
  h.client.connect()
  const s = await h.socket(0)
  s.autoPong = true
  s.open()
  await waitFor(() => s.all('ping').length >= 5, { what: 'five pings', timeoutMs: 2000, intervalMs: 2 })
  t.equal(h.sockets.length, 1, 'the connection outlived five intervals')
  t.equal(s.closedWith, undefined)
})

t.test('malformed frames are error events; unknown types are ignored', async (t) => {
  const h = harness(t)
  h.client.join('p')
  const s = await joined(h)
  s.onmessage?.({ data: 'not json' })
  s.receive({ type: 'op', project: 'p', seq: -1, id: 'x' }, { type: 'future-frame', project: 'p' })
  s.receive({ type: 'error', code: 'rate_limited', message: 'too many frames: this one was dropped' })
  t.match(h.errors.map((e) => e.code), ['invalid_frame', 'invalid_frame', 'rate_limited'])
  t.same(h.ops, [])
})

t.test('options are checked', async (t) => {
  class WS extends FakeSocket {}
  t.throws(() => new FlowClient({ url: 'http://x/ws', WebSocket: WS }), TypeError)
  t.throws(() => new FlowClient({ url: 'ws://x/ws' }), /WebSocket option/, 'Node 20 has no global WebSocket')
  t.throws(() => new FlowClient({ url: 'ws://x/ws', WebSocket: WS, pingIntervalMs: -1 }), RangeError)
  const c = new FlowClient({ url: 'ws://x/ws', WebSocket: WS })
  t.throws(() => c.join('bad id'), FlowError)
  c.join('p')
  t.throws(() => c.join('p'), /joined already/)
  t.throws(() => c.join('q', { since: -1 }), RangeError)
})
