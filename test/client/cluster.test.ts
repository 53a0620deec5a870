/**
 * The client against two Flow instances sharing a real redis-server: one
 * order for 500 ops from three clients on both instances, and a Redis outage
 * with ops in flight (the instances fall back, reset their members, and
 * reset them again when Redis returns).
 */
import t from 'tap'
import { FlowClient, type Ack, type ResetInfo } from '../../client/index.js'
import { startRedis } from '../helpers/redis.js'
import { startCluster } from '../helpers/cluster.js'
import type { TestServer } from '../helpers/server.js'
import { withDeadline } from '../helpers/wait.js'
import { flow, until } from '../helpers/flow-client.js'

const redis = await startRedis(t)
/** Short timings, so an outage is seen and left within a second or two. */
const KNOBS = { redisCommandTimeoutMs: 300, redisProbeIntervalMs: 200, redisConnectWaitMs: 200 }

interface LoggedOp { readonly seq: number, readonly id: string }
interface Page { readonly epoch: string, readonly seq: number, readonly ops: LoggedOp[], readonly reset: boolean }

/** The ops of `project` from `since` up to `upTo`, read over HTTP from one instance, in `epoch`; null if the epoch moved on. */
async function history (s: TestServer, project: string, epoch: string | undefined, upTo: number): Promise<{ epoch: string, ops: LoggedOp[] } | null> {
  const ops: LoggedOp[] = []
  let seen: string | undefined
  for (let since = 0; since < upTo || seen === undefined;) {
    const res = await fetch(`${s.http}/projects/${project}/ops?since=${since}&limit=1000`)
    const page = await res.json() as Page
    if (res.status !== 200 || page.reset) throw new Error(`history of ${project} from ${since}: ${res.status}`)
    if ((epoch !== undefined && page.epoch !== epoch) || (seen !== undefined && page.epoch !== seen)) return null
    seen = page.epoch
    const wanted = page.ops.filter((o) => o.seq <= (upTo === Infinity ? page.seq : upTo))
    ops.push(...wanted.map((o) => ({ seq: o.seq, id: o.id })))
    if (upTo === Infinity) upTo = page.seq
    if (page.ops.length === 0 || wanted.length < page.ops.length) break
    since = (page.ops.at(-1) as LoggedOp).seq
  }
  return { epoch: seen, ops }
}

/**
 * An app's copy of a project: reloaded over HTTP on every reset (up to the
 * reset's seq), then built from `op` and fresh `ack` events.
 */
class Replica {
  readonly bySeq = new Map<number, string>()
  head = 0
  resets = 0
  /** steps that did not follow the head: none may happen */
  readonly violations: string[] = []
  readonly #server: TestServer
  readonly #project: string

  constructor (client: FlowClient, server: TestServer, project: string) {
    this.#server = server
    this.#project = project
    const step = (seq: number, id: string): void => {
      if (seq !== this.head + 1) this.violations.push(`${id} at ${seq} after ${this.head}`)
      this.head = seq
      this.bySeq.set(seq, id)
    }
    client.on('op', (p, op) => { if (p === project) step(op.seq, op.id) })
    client.on('ack', (p, ack) => { if (p === project && !ack.stale) step(ack.seq, ack.id) })
  }

  readonly onReset = async (reset: ResetInfo): Promise<void> => {
    this.resets++
    this.bySeq.clear()
    this.head = reset.seq
    const page = await history(this.#server, this.#project, reset.epoch, reset.seq)
    // null: the epoch moved on meanwhile, and another reset is on its way.
    for (const o of page?.ops ?? []) this.bySeq.set(o.seq, o.id)
  }

  /** The copy, seq 1 to head. */
  ids (): Array<string | undefined> {
    return Array.from({ length: this.head }, (_, i) => this.bySeq.get(i + 1))
  }
}

t.test('three clients on two instances send 500 ops: each sees one gapless order, its own ops as acks', async (t) => {
  const { instances: [i0, i1] } = await startCluster(t, redis.url, 2)
  const urls = [i0!.ws, i1!.ws, i0!.ws]
  const clients = urls.map((url, i) => flow(t, `${url}?userId=u${i}`))
  const streams = clients.map(() => [] as Array<{ kind: 'op' | 'ack', seq: number, id: string }>)
  clients.forEach((c, i) => {
    c.on('op', (_p, op) => { streams[i]!.push({ kind: 'op', seq: op.seq, id: op.id }) })
    c.on('ack', (_p, ack) => { streams[i]!.push({ kind: 'ack', seq: ack.seq, id: ack.id }) })
  })
  const handles = clients.map((c) => c.join('race'))
  await withDeadline(Promise.all(handles.map(async (h) => { await h.ready })), 'all joined', 5000)
  const counts = [167, 167, 166]
  const sent: string[][] = [[], [], []]
  const sends: Array<Promise<Ack>> = []
  for (let n = 0; n < 167; n++) {
    handles.forEach((h, i) => {
      if (n >= (counts[i] as number)) return
      const id = `u${i}-${n}`
      sent[i]!.push(id)
      sends.push(h.send({ n }, { id }))
    })
  }
  const acks = await withDeadline(Promise.all(sends), 'every ack', 15_000)
  await until('every client at 500', () => streams.every((s) => s.length === 500), 10_000)
  t.same(acks.map((a) => a.seq).sort((a, b) => a - b), Array.from({ length: 500 }, (_, i) => i + 1), 'the acks hold seqs 1..500, once each')
  streams.forEach((s, i) => {
    t.same(s.map((x) => x.seq), Array.from({ length: 500 }, (_, k) => k + 1), `client ${i} is handed seqs 1..500 in order`)
    // Every op of its own, as an ack. Not necessarily in the order sent: on a Redis whose script
    // cache is cold, the server may sequence a burst's first ops after later ones (see docs/client.md).
    t.same(s.filter((x) => x.kind === 'ack').map((x) => x.id).sort(), [...sent[i]!].sort(), `client ${i} gets an ack for each op it sent`)
    t.same(s.filter((x) => x.kind === 'op' && x.id.startsWith(`u${i}-`)), [], `client ${i} is not handed its own ops as ops`)
  })
  t.same(streams[1]!.map((x) => x.id), streams[0]!.map((x) => x.id), 'clients 0 and 1 (other instances) agree on the order')
  t.same(streams[2]!.map((x) => x.id), streams[0]!.map((x) => x.id), 'clients 0 and 2 agree on the order')
})

t.test('a Redis outage with ops in flight: every send resolves exactly once and the clients converge', async (t) => {
  const cluster = await startCluster(t, redis.url, 2, KNOBS)
  const [i0, i1] = cluster.instances as [TestServer, TestServer]
  const ann = flow(t, `${i0.ws}?userId=ann`)
  const bob = flow(t, `${i1.ws}?userId=bob`)
  const ra = new Replica(ann, i0, 'doc')
  const rb = new Replica(bob, i1, 'doc')
  const ha = ann.join('doc', { onReset: ra.onReset })
  const hb = bob.join('doc', { onReset: rb.onReset })
  await withDeadline(Promise.all([ha.ready, hb.ready]), 'both joined', 5000)

  const sent: string[] = []
  const settled = new Map<string, number>()
  const rejected: string[] = []
  const ackEvents = new Map<string, number>()
  for (const c of [ann, bob]) c.on('ack', (_p, ack) => { ackEvents.set(ack.id, (ackEvents.get(ack.id) ?? 0) + 1) })
  const wave = (name: string, count: number): Array<Promise<void>> => {
    const out: Array<Promise<void>> = []
    for (let n = 0; n < count; n++) {
      for (const [who, h] of [['a', ha], ['b', hb]] as const) {
        const id = `${who}-${name}-${n}`
        sent.push(id)
        out.push(h.send({ n }, { id }).then(() => { settled.set(id, (settled.get(id) ?? 0) + 1) }, () => { rejected.push(id) }))
      }
    }
    return out
  }

  await Promise.all(wave('before', 10))
  // Ops in flight as Redis freezes.
  const inFlight = wave('inflight', 10)
  redis.stop()
  try {
    await until('both clients reset to their instance\'s fallback', () => ra.resets >= 1 && rb.resets >= 1, 10_000)
    const during = wave('during', 10)
    await withDeadline(Promise.all([...inFlight, ...during]), 'the acks of the ops sent during the outage (from the fallback)', 10_000)
  } finally {
    redis.cont()
  }
  const health = async (s: TestServer): Promise<string> => (await s.app.inject({ url: '/health' })).json<{ status: string }>().status
  await until('both instances back on Redis', async () => (await health(i0)) === 'ok' && (await health(i1)) === 'ok', 15_000)
  let log = await history(i0, 'doc', undefined, Infinity)
  await until('both clients in the Redis epoch', () => ha.epoch === log?.epoch && hb.epoch === log?.epoch, 10_000)
  await Promise.all(wave('after', 10))

  log = await history(i0, 'doc', undefined, Infinity)
  const final = log
  t.ok(final !== null)
  if (final === null) return
  t.same(final.ops.map((o) => o.seq), Array.from({ length: final.ops.length }, (_, i) => i + 1), 'the Redis log is gapless')
  t.same(rejected, [], 'no send rejected')
  t.same(sent.filter((id) => settled.get(id) !== 1), [], `all ${sent.length} sends resolved, each once`)
  t.same(sent.filter((id) => ackEvents.get(id) !== 1), [], 'one ack event per send')
  t.same(final.ops.map((o) => o.id).sort(), [...sent].sort(), 'the log holds every op sent, once')

  const expected = final.ops.map((o) => o.id)
  await until('both copies to match the log', () => JSON.stringify(ra.ids()) === JSON.stringify(expected) && JSON.stringify(rb.ids()) === JSON.stringify(expected), 10_000)
  t.same(ra.violations, [], 'ann: every op and ack followed the one before it')
  t.same(rb.violations, [], 'bob: every op and ack followed the one before it')
  t.ok(ra.resets >= 2 && rb.resets >= 2, `each client reset into the fallback and back (ann ${ra.resets}, bob ${rb.resets})`)
  t.equal(ha.seq, final.ops.length)
  t.equal(hb.seq, final.ops.length)
})
