/**
 * The client against a real Flow server (memory adapters), in Node with the
 * `ws` package: collaboration, connections cut by a TCP proxy with ops in
 * flight, a server restart (new epoch), and token expiry.
 */
import t from 'tap'
import { FlowClient, type Ack, type ProjectHandle, type Status } from '../../client/index.js'
import { startServer } from '../helpers/server.js'
import { startProxy } from '../helpers/proxy.js'
import { hs256, nowSeconds, SECRET } from '../helpers/jwt.js'
import { withDeadline } from '../helpers/wait.js'
import { flow, until } from '../helpers/flow-client.js'

interface Step {
  readonly kind: 'op' | 'ack'
  readonly seq: number
  readonly id: string
}

/**
 * What an app builds from one project's events: the ops and its own acks in
 * the order handed over, cut into segments at each reset.
 */
class Watch {
  readonly segments: Array<{ epoch: string, base: number, steps: Step[] }> = [{ epoch: '', base: 0, steps: [] }]
  readonly acks = new Map<string, number>()
  readonly ops = new Map<string, number>()
  readonly statuses: Array<{ status: Status, code?: number, reason?: string }> = []

  constructor (client: FlowClient, project: string) {
    client.on('op', (p, op) => {
      if (p !== project) return
      this.ops.set(op.id, (this.ops.get(op.id) ?? 0) + 1)
      this.#last.steps.push({ kind: 'op', seq: op.seq, id: op.id })
    })
    client.on('ack', (p, ack) => {
      if (p !== project) return
      this.acks.set(ack.id, (this.acks.get(ack.id) ?? 0) + 1)
      if (!ack.stale) this.#last.steps.push({ kind: 'ack', seq: ack.seq, id: ack.id })
    })
    client.on('reset', (p, epoch, seq) => {
      if (p === project) this.segments.push({ epoch, base: seq, steps: [] })
    })
    client.on('status', (status, retry) => { this.statuses.push({ status, code: retry?.code, reason: retry?.reason }) })
  }

  get #last (): { steps: Step[] } {
    return this.segments.at(-1) as { steps: Step[] }
  }

  /** Every op and ack, in the order handed over. */
  get steps (): Step[] {
    return this.segments.flatMap((s) => s.steps)
  }

  ids (): string[] {
    return this.steps.map((s) => s.id)
  }

  /** The first segment whose steps do not run base+1, base+2, ...; null when all do. */
  gap (): string | null {
    for (const s of this.segments) {
      const bad = s.steps.findIndex((step, i) => step.seq !== s.base + 1 + i)
      if (bad !== -1) return `epoch ${s.epoch || '(first)'} from ${s.base}: step ${bad} is ${JSON.stringify(s.steps[bad])}`
    }
    return null
  }

  opens (): number {
    return this.statuses.filter((s) => s.status === 'open').length
  }
}

function portOf (url: string): number {
  return Number(new URL(url).port)
}

/** Counts how often each value occurs more than once. */
function repeated (values: readonly string[]): string[] {
  const seen = new Set<string>()
  return values.filter((v) => seen.has(v) || !seen.add(v))
}

t.test('two clients collaborate: members with presence, presence updates, and ops both ways', async (t) => {
  const server = await startServer(t)
  const ann = flow(t, `${server.ws}?userId=ann`)
  const bob = flow(t, `${server.ws}?userId=bob`)
  const wa = new Watch(ann, 'board')
  const wb = new Watch(bob, 'board')
  const ha = ann.join('board', { presence: { color: 'red' } })
  await withDeadline(ha.ready, 'ann joined', 5000)
  const hb = bob.join('board', { presence: { color: 'blue' } })
  await withDeadline(hb.ready, 'bob joined', 5000)
  await until('ann to see bob', () => ha.members.length === 2)
  const byUser = (h: ProjectHandle): Record<string, unknown> => Object.fromEntries(h.members.map((m) => [m.userId, m.presence]))
  t.same(byUser(ha), { ann: { color: 'red' }, bob: { color: 'blue' } }, 'ann lists both, with their presence')
  t.same(byUser(hb), { ann: { color: 'red' }, bob: { color: 'blue' } }, 'bob lists both')
  t.ok(hb.members.some((m) => m.sessionId === hb.sessionId), 'the own entry is in the list')

  const presence: unknown[] = []
  ann.on('presence', (_p, sessionId, userId, state) => { presence.push({ sessionId, userId, state }) })
  hb.setPresence({ color: 'blue', cursor: 7 })
  await until('bob\'s presence at ann', () => presence.length === 1)
  t.same(presence, [{ sessionId: hb.sessionId, userId: 'bob', state: { color: 'blue', cursor: 7 } }])
  t.same(byUser(ha).bob, { color: 'blue', cursor: 7 }, 'ann\'s member list follows')

  const first = await ha.send({ text: 'hello' })
  t.match(first, { seq: 1, epoch: ha.epoch })
  const replies = await Promise.all([hb.send({ text: 'hi' }), hb.send({ text: 'how are you' })])
  t.same(replies.map((r) => r.seq), [2, 3])
  await until('every op on both sides', () => wa.steps.length === 3 && wb.steps.length === 3)
  t.same(wa.steps.map((s) => [s.kind, s.seq]), [['ack', 1], ['op', 2], ['op', 3]])
  t.same(wb.steps.map((s) => [s.kind, s.seq]), [['op', 1], ['ack', 2], ['ack', 3]])
  t.same(wa.ids(), wb.ids(), 'one order on both sides')
  t.equal(ha.seq, 3)
  t.equal(hb.seq, 3)

  await hb.leave()
  await until('bob to leave ann\'s list', () => ha.members.length === 1)
  t.same(ha.members.map((m) => m.userId), ['ann'])
})

t.test('a connection cut while acks are lost: every op acked once, none twice at the other client, one order', async (t) => {
  const server = await startServer(t)
  const proxy = await startProxy(t, portOf(server.http))
  const ann = flow(t, `${proxy.ws()}?userId=ann`)
  const bob = flow(t, `${server.ws}?userId=bob`)
  const wa = new Watch(ann, 'doc')
  const wb = new Watch(bob, 'doc')
  const ha = ann.join('doc')
  const hb = bob.join('doc')
  await withDeadline(Promise.all([ha.ready, hb.ready]), 'both joined', 5000)

  // The server takes ann's ops, but what it sends her is lost.
  proxy.dropReplies()
  const annSends: Array<Promise<Ack>> = []
  const bobSends: Array<Promise<Ack>> = []
  for (let n = 0; n < 20; n++) annSends.push(ha.send({ n }, { id: `a${n}` }))
  for (let n = 0; n < 10; n++) bobSends.push(hb.send({ n }, { id: `b${n}` }))
  await until('bob to see ann\'s first 20 ops', () => [...wb.ops.keys()].filter((id) => id.startsWith('a')).length === 20)
  t.equal(wa.acks.size, 0, 'no ack reached ann')
  proxy.cut()
  // More ops on both sides while ann reconnects.
  for (let n = 20; n < 40; n++) annSends.push(ha.send({ n }, { id: `a${n}` }))
  for (let n = 10; n < 20; n++) bobSends.push(hb.send({ n }, { id: `b${n}` }))

  const annAcks = await withDeadline(Promise.all(annSends), 'every send of ann', 10_000)
  await withDeadline(Promise.all(bobSends), 'every send of bob', 5000)
  await until('both to have all 60', () => wa.steps.length === 60 && wb.steps.length === 60)

  t.ok(proxy.accepted >= 2, 'ann reconnected')
  t.same(annAcks.map((a) => a.id), Array.from({ length: 40 }, (_, n) => `a${n}`))
  t.same(repeated(annAcks.map((a) => String(a.seq))), [], 'every op of ann has its own seq')
  t.ok(annAcks.every((a, i) => i === 0 || a.seq > (annAcks[i - 1] as Ack).seq), 'ann\'s ops are in the log in the order she sent them')
  t.same([...wa.acks.values()].filter((n) => n !== 1), [], 'one ack event per op of ann')
  t.equal(wa.acks.size, 40)
  t.same([...wa.ops.keys()].filter((id) => id.startsWith('a')), [], 'ann is never handed her own op as someone else\'s')
  t.same([...wb.ops.values()].filter((n) => n !== 1), [], 'bob gets every op of ann exactly once')
  t.equal(wa.gap(), null, 'ann: seqs 1..60 in order, no gap, no repeat')
  t.equal(wb.gap(), null, 'bob: seqs 1..60 in order, no gap, no repeat')
  t.same(wa.ids(), wb.ids(), 'both in the same order')
  const seqOfBob = new Map(wb.steps.map((s) => [s.id, s.seq]))
  t.same(annAcks.filter((a) => seqOfBob.get(a.id) !== a.seq), [], 'each promise resolved with the seq bob saw the op at')
  t.equal(wa.segments.length, 1, 'no reset')
  t.same(wa.statuses.map((s) => s.status).slice(-2), ['reconnecting', 'open'])
})

t.test('connections cut again and again during a burst: the same guarantees', async (t) => {
  const server = await startServer(t)
  const proxy = await startProxy(t, portOf(server.http))
  const ann = flow(t, `${proxy.ws()}?userId=ann`)
  const bob = flow(t, `${proxy.ws()}?userId=bob`)
  const wa = new Watch(ann, 'doc')
  const wb = new Watch(bob, 'doc')
  const ha = ann.join('doc')
  const hb = bob.join('doc')
  await withDeadline(Promise.all([ha.ready, hb.ready]), 'both joined', 5000)
  // Ops go out one per turn of the event loop; three times, once both are connected, everything is cut
  // (ops landing, acks in flight, a replay running: whatever the moment holds).
  const sends: Array<Promise<Ack>> = []
  for (let n = 0; n < 150; n++) {
    sends.push(ha.send(n, { id: `a${n}` }))
    if (n % 3 === 0) sends.push(hb.send(n, { id: `b${n}` }))
    if (n % 50 === 30) {
      await until('both connected', () => ann.status === 'open' && bob.status === 'open')
      proxy.cut()
    }
    await new Promise((resolve) => setImmediate(resolve))
  }
  const acks = await withDeadline(Promise.all(sends), 'every send', 15_000)
  await until('both to have every op', () => wa.steps.length === 200 && wb.steps.length === 200, 10_000)
  t.ok(proxy.accepted >= 8, `connections were cut and made again (${proxy.accepted} accepted)`)
  t.same(repeated(acks.map((a) => `${a.epoch}:${a.seq}`)), [], 'every op has its own seq')
  t.equal(wa.gap(), null, 'ann: one gapless order')
  t.equal(wb.gap(), null, 'bob: one gapless order')
  t.same(wa.ids(), wb.ids())
  t.same(repeated(wa.ids()), [], 'no op twice')
  t.same([...wa.acks.values(), ...wb.acks.values()].filter((n) => n !== 1), [], 'one ack event per op')
  t.equal(wa.acks.size + wb.acks.size, 200)
})

t.test('a server restart (memory adapters): the reset callback fires with the new epoch, then ops continue live', async (t) => {
  const first = await startServer(t)
  const proxy = await startProxy(t, portOf(first.http))
  const resets: Array<{ who: string, epoch: string, seq: number }> = []
  const ann = flow(t, `${proxy.ws()}?userId=ann`)
  const bob = flow(t, `${proxy.ws()}?userId=bob`)
  const wb = new Watch(bob, 'doc')
  const ha = ann.join('doc', { onReset: (r) => { resets.push({ who: 'ann', epoch: r.epoch, seq: r.seq }) } })
  const hb = bob.join('doc', {
    onReset: async (r) => {
      resets.push({ who: 'bob', epoch: r.epoch, seq: r.seq })
      // An app reloading its state: live ops wait for it.
      await new Promise((resolve) => setImmediate(resolve))
    }
  })
  await withDeadline(Promise.all([ha.ready, hb.ready]), 'both joined', 5000)
  for (let n = 1; n <= 3; n++) await ha.send(n)
  await until('bob to see the first ops', () => hb.seq === 3)
  const oldEpoch = ha.epoch

  await first.close()
  // Sent while the server is down: kept, and sent after the rejoin.
  const offline = ha.send('sent while down', { id: 'offline' })
  const second = await startServer(t)
  proxy.retarget(portOf(second.http))

  await until('both reset', () => resets.length === 2)
  const epoch = resets[0]?.epoch
  t.ok(epoch !== undefined && epoch !== oldEpoch && resets.every((r) => r.epoch === epoch), 'both reset to the new server\'s epoch')
  const ack = await withDeadline(offline, 'the op sent while down', 5000)
  t.equal(ack.epoch, epoch, 'the op sent while down is acked in the new epoch')
  t.ok(resets.every((r) => r.seq <= ack.seq), 'a reset points at most at that op (the new log starts empty)')
  const live = await ha.send('live')
  t.equal(live.seq, ack.seq + 1)
  await until('bob to reach the live op', () => hb.seq === live.seq)
  const after = wb.segments.at(-1)
  t.same(wb.segments.length, 2, 'bob: one reset')
  t.same(wb.segments[0]?.steps.map((x) => x.seq), [1, 2, 3], 'bob: 1-3 before the restart')
  t.same(after?.steps.map((x) => x.id).at(-1), live.id, 'then live ops of the new epoch')
  t.equal(wb.gap(), null, 'from the reset seq on, without a gap')
  t.equal(hb.epoch, ha.epoch)
})

t.test('a token that expires closes the connection (1008) and the client comes back with a fresh one', async (t) => {
  const server = await startServer(t, { jwtSecret: SECRET })
  let calls = 0
  const ann = flow(t, server.ws, {
    // The first token is accepted within the 30 s clock skew and lapses for good a second later.
    token: () => hs256({ sub: 'ann', exp: ++calls === 1 ? nowSeconds() - 29 : nowSeconds() + 600 })
  })
  const wa = new Watch(ann, 'doc')
  const ha = ann.join('doc')
  await until('a close for the expired token', () => wa.statuses.some((s) => s.code === 1008 && s.reason === 'token expired'))
  await withDeadline(ha.ready, 'joined with the fresh token', 5000)
  await until('open again', () => ann.status === 'open' && ha.sessionId !== undefined)
  t.equal(calls, 2, 'the token function was called again for the new connection')
  t.same(ha.members.map((m) => m.userId), ['ann'])
  t.match(await ha.send('works'), { seq: 1 })
})
