/**
 * The stitching race (issue 14): writers on two instances sharing one Redis
 * append continuously while joiners arrive on both instances with `since`
 * older than the history (or none), all taking state (`snapshot: true`).
 * Each joiner's snapshot folded with the ops after it must equal the fold
 * of the whole op sequence at every position it reached: no gap, no
 * duplicate, no reordering, never `reset`. The fold is an order-sensitive
 * hash chain, so one missing, doubled or swapped op changes it.
 *
 * The reference is the op sequence as delivered to two members that joined
 * the project before its first op and never reconnected (one per instance);
 * the test checks they agree with each other and with every writer's acks.
 */
import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { setTimeout as delay } from 'node:timers/promises'
import { startRedis } from '../helpers/redis.js'
import { startCluster } from '../helpers/cluster.js'
import { connect, type Frame, type TestClient } from '../helpers/client.js'
import { opsOf, until } from '../helpers/protocol.js'
import type { TestServer } from '../helpers/server.js'
import type { FlowOptions } from '../../app.js'
import type { Op } from '../../lib/types.js'

const redis = await startRedis(t)

/** The state: ops counted, a hash chain over their ids in order, the last five ids. */
interface Fold {
  readonly n: number
  readonly h: string
  readonly last: readonly string[]
}

const INITIAL: Fold = { n: 0, h: '0', last: [] }

function step (state: Fold, id: string): Fold {
  return {
    n: state.n + 1,
    h: createHash('sha1').update(`${state.h}|${id}`).digest('hex').slice(0, 16),
    last: [...state.last, id].slice(-5)
  }
}

/** Ops between two snapshots, the reducer's or the uploading client's. */
const EVERY = 50
/** Ops the Redis log keeps (it keeps more after a snapshot, up to twice this). */
const HISTORY = 200
/** Ops appended before the first joiner: far past the history, so `since: 1` cannot be served from it. */
const WARM_UP = 3 * HISTORY
/** Ops per second each writer aims at (one writer per instance, one op in flight). */
const WRITER_RATE = 150
/** Joiner loops per instance, and joiners per loop. */
const LOOPS_PER_INSTANCE = 2
const JOINS_PER_LOOP = 30
/** Live ops a joiner waits for past the head its `joined` gave. */
const LIVE_OPS = 15

const reducer = {
  initial: INITIAL,
  every: EVERY,
  reduce: (state: unknown, op: Op) => step(state as Fold, op.id)
}

/** What one joiner got: its frames for the project after `joined`. */
interface Joined {
  readonly name: string
  readonly head: number
  readonly target: number
  readonly frames: readonly Frame[]
}

/** The reference: the op sequence as seen by members present since before the first op. */
class Reference {
  readonly ids: string[] = []
  /** folds[X] = the fold of ops 1..X */
  readonly folds: Fold[] = [INITIAL]

  constructor (ops: readonly Op[]) {
    for (const op of ops) {
      this.ids.push(op.id)
      this.folds.push(step(this.folds.at(-1) as Fold, op.id))
    }
  }

  get head (): number {
    return this.ids.length
  }
}

/** Appends ops with ids `${name}-n`, one in flight, at most `perSecond`, until `stop()`; resolves with the acks. */
async function write (client: TestClient, project: string, name: string, stop: () => boolean): Promise<Frame[]> {
  const acks: Frame[] = []
  const started = Date.now()
  for (let n = 0; !stop(); n++) {
    const ack = await client.request({ type: 'op', project, id: `${name}-${n}`, data: n })
    if (ack.type !== 'ack') throw new Error(`${name}: op ${n} answered ${JSON.stringify(ack)}`)
    acks.push(ack)
    // Pacing the load, not synchronising: the next op waits for its slot in the schedule.
    const wait = started + ((n + 1) * 1000) / WRITER_RATE - Date.now()
    if (wait > 0) await delay(wait)
  }
  return acks
}

/** The seq of the newest op a client has received for the project (0 if none). */
function headOf (client: TestClient, project: string): number {
  return opsOf(client, project).at(-1)?.seq ?? 0
}

/**
 * One joiner: connects, joins taking state, reads until it has seen an op
 * at or past `joined.seq + LIVE_OPS` (so live ops are included), leaves.
 */
async function join (t: Test, server: TestServer, project: string, name: string, position: Record<string, unknown>): Promise<Joined> {
  const client = await connect(t, `${server.ws}?userId=${name}`, { timeoutMs: 10_000 })
  const joined = await client.join(project, { ...position, snapshot: true })
  const from = client.received.indexOf(joined) + 1
  const head = joined.seq as number
  const target = head + LIVE_OPS
  await until(client, () => headOf(client, project) >= target || client.all('reset').length > 0, `${name}: seq ${target}`, 10_000)
  client.close()
  const frames = client.received.slice(from).filter((f) => f.project === project && f.type !== 'member' && f.type !== 'presence')
  return { name, head, target, frames }
}

/**
 * What is wrong with a joiner's stitching, as sentences (none: right):
 * exactly one snapshot, first; its state is the reference's fold at its seq;
 * then the ops after it, contiguous, each the reference's op at that seq;
 * and the snapshot folded with them is the reference's fold at the last one.
 */
function problemsOf (j: Joined, ref: Reference, epoch: string): string[] {
  const problems: string[] = []
  const resets = j.frames.filter((f) => f.type === 'reset')
  if (resets.length > 0) problems.push(`${j.name}: got reset ${JSON.stringify(resets[0])}`)
  const snapshots = j.frames.filter((f) => f.type === 'snapshot')
  if (snapshots.length !== 1) problems.push(`${j.name}: ${snapshots.length} snapshots`)
  const [first] = j.frames
  if (first?.type !== 'snapshot') {
    problems.push(`${j.name}: the first frame after joined is ${JSON.stringify(first)}`)
    return problems
  }
  const at = first.seq as number
  if (first.epoch !== epoch) problems.push(`${j.name}: snapshot of epoch ${String(first.epoch)}`)
  if (at > ref.head) {
    problems.push(`${j.name}: snapshot at ${at}, past the reference's head ${ref.head}`)
    return problems
  }
  let state = first.state as Fold
  if (JSON.stringify(state) !== JSON.stringify(ref.folds[at])) {
    problems.push(`${j.name}: snapshot at ${at} is ${JSON.stringify(state)}, the fold of ops 1..${at} is ${JSON.stringify(ref.folds[at])}`)
  }
  const others = j.frames.slice(1).filter((f) => f.type !== 'op' && f.type !== 'snapshot' && f.type !== 'reset')
  if (others.length > 0) problems.push(`${j.name}: unexpected frames ${JSON.stringify(others.slice(0, 2))}`)
  const ops = j.frames.filter((f) => f.type === 'op') as unknown as Op[]
  let expected = at + 1
  for (const op of ops) {
    if (op.seq !== expected) {
      problems.push(`${j.name}: after the snapshot at ${at}, op ${op.seq} where ${expected} was due (seqs ${ops.slice(0, 5).map((o) => o.seq).join(',')}...)`)
      return problems
    }
    if (op.id !== ref.ids[op.seq - 1]) problems.push(`${j.name}: op ${op.seq} is ${op.id}, the reference has ${String(ref.ids[op.seq - 1])}`)
    state = step(state, op.id)
    expected++
  }
  const last = expected - 1
  if (last < j.target) problems.push(`${j.name}: stopped at ${last}, before ${j.target}`)
  if (last > ref.head) {
    problems.push(`${j.name}: got op ${last}, past the reference's head ${ref.head}`)
  } else if (JSON.stringify(state) !== JSON.stringify(ref.folds[last])) {
    problems.push(`${j.name}: its fold at ${last} differs from the fold of ops 1..${last}`)
  }
  return problems
}

interface Race {
  readonly ref: Reference
  readonly joiners: readonly Joined[]
  readonly epoch: string
  /** frames the reference members received that were not ops (there should be none of reset) */
  readonly referenceResets: number
}

/**
 * The race on two instances sharing the test's Redis: references and one
 * writer per instance, a warm-up past the history, then joiner loops on
 * both instances while the writers go on. `onReference` sees the reference
 * member of instance 0 (the client case uploads its fold from it).
 */
async function race (t: Test, project: string, options: FlowOptions, onReference?: (ref0: TestClient, epoch: string, stop: () => boolean) => Promise<void>): Promise<Race> {
  const { instances } = await startCluster(t, redis.url, 2, { historyRedis: HISTORY, ...options })
  const [i0, i1] = instances as [TestServer, TestServer]
  const ref0 = await connect(t, `${i0.ws}?userId=ref0`, { timeoutMs: 10_000 })
  const ref1 = await connect(t, `${i1.ws}?userId=ref1`, { timeoutMs: 10_000 })
  const { epoch } = await ref0.join(project) as Frame & { epoch: string }
  const joined1 = await ref1.join(project)
  t.equal(joined1.epoch, epoch, 'one epoch on both instances')
  t.equal(joined1.seq, 0, 'the references joined before the first op')

  let stopped = false
  const stop = (): boolean => stopped
  const side = onReference?.(ref0, epoch, stop)
  const writers = await Promise.all([i0, i1].map(async (s, i) => await connect(t, `${s.ws}?userId=w${i}`, { timeoutMs: 10_000 })))
  for (const w of writers) await w.join(project)
  const writing = writers.map(async (w, i) => await write(w, project, `w${i}`, stop))
  // Stop the writers if the race fails, so their loops end with the test.
  let acks: Frame[][] = []
  const joiners: Joined[] = []
  try {
    await until(ref0, () => headOf(ref0, project) >= WARM_UP, `the warm-up's ${WARM_UP} ops`, 20_000)
    const positions: Array<(head: number) => Record<string, unknown>> = [
      () => ({}),
      () => ({ since: 1, epoch }),
      () => ({ since: 0, epoch }),
      (head) => ({ since: Math.max(1, head - 3 * HISTORY), epoch })
    ]
    const loops: Array<Promise<void>> = []
    for (const [s, server] of [i0, i1].entries()) {
      for (let l = 0; l < LOOPS_PER_INSTANCE; l++) {
        loops.push((async () => {
          for (let n = 0; n < JOINS_PER_LOOP; n++) {
            const position = (positions[(n + l) % positions.length] as (head: number) => Record<string, unknown>)(headOf(ref0, project))
            joiners.push(await join(t, server, project, `j${s}.${l}.${n}`, position))
          }
        })())
      }
    }
    await Promise.all(loops)
  } finally {
    stopped = true
    acks = await Promise.all(writing)
    // A frame for the reference, so a wait of `onReference` looks at stop() again.
    await ref0.request({ type: 'ping' })
    await side
  }
  const last = Math.max(...acks.flat().map((a) => a.seq as number))
  for (const r of [ref0, ref1]) await until(r, () => headOf(r, project) >= last, `the reference's last op ${last}`, 10_000)

  const seq0 = opsOf(ref0, project)
  const seq1 = opsOf(ref1, project)
  t.same(seq0.map((op) => op.seq), Array.from({ length: last }, (_, i) => i + 1), 'the reference on instance 0 got ops 1..head, in order, once')
  t.same(seq1.map((op) => op.id), seq0.map((op) => op.id), 'the reference on instance 1 got the same ops in the same order')
  const ref = new Reference(seq0)
  const wrongAcks = acks.flat().filter((a) => ref.ids[(a.seq as number) - 1] !== a.id)
  t.same(wrongAcks, [], 'every writer\'s ack names the op the references have at that seq')
  const referenceResets = ref0.all('reset').length + ref1.all('reset').length
  return { ref, joiners, epoch, referenceResets }
}

function judge (t: Test, { ref, joiners, epoch, referenceResets }: Race): void {
  t.equal(referenceResets, 0, 'the references were never reset')
  t.equal(joiners.length, 2 * LOOPS_PER_INSTANCE * JOINS_PER_LOOP, 'every joiner finished')
  const problems = joiners.flatMap((j) => problemsOf(j, ref, epoch))
  t.same(problems, [], 'every joiner\'s snapshot plus the ops after it folds to the reference at each seq: no reset, no gap, no duplicate')
  const behind = joiners.filter((j) => (j.frames[0]?.seq as number) < j.head).length
  t.ok(behind > 0, `some joiners stitched a snapshot older than their head to the replay (${behind} of ${joiners.length})`)
  const at = joiners.map((j) => j.frames[0]?.seq as number)
  const ahead = joiners.filter((j) => (j.frames[0]?.seq as number) > j.head).length
  t.comment(`${ref.head} ops; ${joiners.length} joiners; ${new Set(at).size} snapshot positions (${Math.min(...at)}..${Math.max(...at)}); ` +
    `${behind} snapshots behind the joiner's head, ${ahead} ahead of it (folded on the other instance further than this one delivered)`)
}

t.test('joiners racing writers on two instances stitch the reducer\'s snapshot to the ops after it', async (t) => {
  const result = await race(t, 'stitch-reducer', { snapshots: reducer })
  judge(t, result)
})

t.test('joiners racing writers on two instances stitch a client\'s uploaded snapshot to the ops after it', async (t) => {
  const project = 'stitch-upload'
  const stored: Frame[] = []
  const result = await race(t, project, {}, async (ref0, epoch, stop) => {
    // The uploader folds what it receives and uploads its state every EVERY ops, until the writers stop.
    let state = INITIAL
    let folded = 0
    for (let next = EVERY; !stop(); next += EVERY) {
      await until(ref0, () => stop() || headOf(ref0, project) >= next, `op ${next} to upload its fold`, 10_000)
      if (stop()) break
      for (const op of opsOf(ref0, project).slice(folded, next)) state = step(state, op.id)
      folded = next
      stored.push(await ref0.request({ type: 'snapshot', project, epoch, seq: next, state }))
    }
  })
  t.ok(stored.length >= WARM_UP / EVERY, `the client uploaded ${stored.length} snapshots`)
  t.same(stored.filter((f) => f.type !== 'stored' || f.stored !== true), [], 'every upload was stored')
  judge(t, result)
})
