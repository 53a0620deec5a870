/**
 * Redis outages with traffic running (docs/protocol.md guarantees 3 and 5, and
 * docs/outages.md): real redis-server processes are frozen, killed and
 * restarted, their connections dropped, or absent at boot, while senders on
 * two instances keep sending ops with ids they choose. Afterwards the Redis
 * log is checked exactly against what the senders saw acknowledged, and each
 * client's view against the log.
 */
import { setTimeout as delay } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { startRedis, redisClient, type TestRedis } from '../helpers/redis.js'
import { readLog, startCluster, type Cluster, type Log } from '../helpers/cluster.js'
import { startServer, type TestServer } from '../helpers/server.js'
import { connect, type Frame } from '../helpers/client.js'
import { createTraffic, type Sender, type Traffic } from '../helpers/traffic.js'
import { freePort } from '../helpers/process.js'
import { startProxy } from '../helpers/proxy.js'
import { deferred, waitFor, withDeadline } from '../helpers/wait.js'
import { TestLog } from '../helpers/logs.js'
import { CircuitBreaker } from '../../lib/breaker.js'
import type { AppendResult, NewOp, OpenedLog, ReadResult } from '../../ports/operation-log.js'
import { FailoverOperationLog } from '../../adapters/failover/index.js'
import { isRedisOutage } from '../../adapters/redis/connection-health.js'
import { Watchdog } from '../../lib/watchdog.js'
import { MemoryOperationLog } from '../../adapters/memory/operation-log.js'
import { redisKeys } from '../../adapters/redis/keys.js'
import { OPERATION_LOG_SCRIPTS } from '../../adapters/redis/scripts.js'

/** Short timings, so an outage is seen and left within a second or two. */
const KNOBS = { redisCommandTimeoutMs: 300, redisProbeIntervalMs: 200, redisConnectWaitMs: 200 }
const PROJECT = 'doc'
/** senders per instance */
const SENDERS = 3
/** acks each sender must get in every phase (before, during, after) */
const PHASE_ACKS = 20
/**
 * Longest wait for every instance to be back on Redis once Redis is: at most
 * 2 s of reconnect backoff, a probe, then the re-sync, which must outpace the
 * traffic that keeps coming meanwhile.
 */
const RECOVERY_MS = 5000

interface PortHealth {
  readonly adapter: string
  readonly circuit: string | null
  readonly serving: string
}

interface Health {
  readonly status: string
  readonly ports: Record<'sessions' | 'broadcaster' | 'log', PortHealth>
}

/** What one client saw of one epoch: from `joined` or a `reset`, the op and ack frames that followed. */
interface Segment {
  readonly epoch: string
  readonly base: number
  readonly frames: Frame[]
}

async function health (s: TestServer): Promise<Health> {
  return (await s.app.inject({ url: '/health' })).json<Health>()
}

async function stats (s: TestServer): Promise<{ fallbacks: number, recoveries: number }> {
  return (await s.app.inject({ url: '/ws/stats' })).json<{ fallbacks: number, recoveries: number }>()
}

/** Polls /health on every instance until all say `status`; resolves their reports. */
async function waitStatus (instances: readonly TestServer[], status: 'ok' | 'degraded', timeoutMs = 15_000): Promise<Health[]> {
  let reports: Health[] = []
  await waitFor(async () => {
    reports = await Promise.all(instances.map(health))
    return reports.every((h) => h.status === status)
  }, { what: `/health to say ${status} on every instance`, timeoutMs, intervalMs: 20 }).catch((err: unknown) => {
    const states = reports.map((h) => Object.fromEntries(Object.entries(h.ports).map(([name, p]) => [name, `${String(p.circuit)}/${p.serving}`])))
    throw new Error(`${String(err)}; the last reports: ${JSON.stringify(states)}`)
  })
  return reports
}

/**
 * A client's frames of the project cut into epochs. An ack of an op acked
 * before (a resent op whose first attempt also landed: the retry is acked
 * again with the original seq) is left out.
 */
function segments (sender: Sender): Segment[] {
  const out: Segment[] = []
  const acked = new Set<string>()
  for (const f of sender.client.received) {
    if (f.project !== sender.project) continue
    if (f.type === 'joined' || f.type === 'reset') out.push({ epoch: f.epoch as string, base: f.seq as number, frames: [] })
    if (f.type === 'ack') {
      if (acked.has(f.id as string)) continue
      acked.add(f.id as string)
    }
    if (f.type === 'op' || f.type === 'ack') out.at(-1)?.frames.push(f)
  }
  return out
}

/**
 * The first place where a segment's ops and acks do not run base+1, base+2,
 * ... in arrival order, or null. Allowed besides: an ack at or below the base
 * (its op is in the state the `reset` points at); and, with `trailingAcks`
 * (a segment an epoch change cut short), a gap followed only by acks in
 * increasing order (ops appended behind ops the instance never received:
 * their acks are due before the `reset`).
 */
function firstGap (segment: Segment, trailingAcks: boolean): string | null {
  const frames = segment.frames.filter((f) => !(f.type === 'ack' && (f.seq as number) <= segment.base))
  const where = `epoch ${segment.epoch} from ${segment.base}`
  let expected = segment.base + 1
  for (const [i, f] of frames.entries()) {
    if (f.seq === expected) {
      expected++
      continue
    }
    const rest = frames.slice(i)
    const onlyAcks = trailingAcks && rest.every((r, j) => r.type === 'ack' && (r.seq as number) >= expected && (j === 0 || (r.seq as number) > ((rest[j - 1] as Frame).seq as number)))
    if (onlyAcks) return null
    const late = frames.findIndex((r, j) => j > i && r.seq === expected)
    const found = late === -1 ? 'never' : `${late - i} frames later, as ${String((frames[late] as Frame).type)} ${String((frames[late] as Frame).id)}`
    return `${where}: expected seq ${expected}, got ${f.type} ${String(f.id)} seq ${String(f.seq)}; seq ${expected} came ${found}`
  }
  return null
}

/** The highest seq a client saw in its last segment (its base when none). */
function lastSeen (sender: Sender): { epoch: string, seq: number } {
  const last = segments(sender).at(-1)
  if (last === undefined) return { epoch: '', seq: -1 }
  const seqs = last.frames.map((f) => f.seq as number)
  return { epoch: last.epoch, seq: Math.max(last.base, ...seqs) }
}

/** Every reset a sender got whose epoch differs from the one before it. */
function epochChanges (sender: Sender): Segment[] {
  return segments(sender).filter((s, i, all) => i > 0 && s.epoch !== (all[i - 1] as Segment).epoch)
}

/** During the outage: /health of every instance is degraded, with every Redis port open and serving from memory. */
async function expectDegraded (t: Test, instances: readonly TestServer[]): Promise<void> {
  const reports = await waitStatus(instances, 'degraded', 10_000)
  reports.forEach((h, i) => {
    for (const [name, port] of Object.entries(h.ports)) {
      t.equal(port.adapter, 'redis', `instance ${i}: the ${name} port is configured on Redis`)
      t.ok(port.circuit === 'open' || port.circuit === 'half-open', `instance ${i}: the ${name} port's circuit is not closed (${String(port.circuit)})`)
      t.equal(port.serving, 'memory', `instance ${i}: the ${name} port serves from memory`)
    }
  })
}

/**
 * The checks every outage ends with: traffic stops and every op sent is
 * acked; /health is ok everywhere; the Redis log, read from every instance,
 * holds every acked op exactly once, each sender's ops in the order sent,
 * seqs 1..N; every client continues gaplessly in the Redis epoch up to the
 * head. Returns the log.
 */
async function verifyRecovered (t: Test, cluster: Cluster, traffic: Traffic): Promise<Log> {
  await traffic.stop()
  const reports = await waitStatus(cluster.instances, 'ok')
  reports.forEach((h, i) => {
    t.same(Object.values(h.ports).map((p) => [p.circuit, p.serving]), [['closed', 'redis'], ['closed', 'redis'], ['closed', 'redis']],
      `instance ${i}: every port is back on Redis with its circuit closed`)
  })

  const logs = await Promise.all(cluster.instances.map(async (s) => await readLog(s, PROJECT)))
  const log = logs[0] as Log
  logs.slice(1).forEach((other, i) => {
    t.same(other, log, `instance ${i + 1} serves the same history as instance 0`)
  })
  const seqs = log.ops.map((o) => o.seq)
  t.ok(seqs.every((seq, i) => seq === i + 1) && log.head === seqs.length, `seqs are contiguous 1..${log.head} (got ${seqs.length} ops)`)

  const count = new Map<string, number>()
  for (const o of log.ops) count.set(o.id, (count.get(o.id) ?? 0) + 1)
  t.same([...count].filter(([, n]) => n > 1), [], 'no op id is in the log twice')
  const acked = traffic.senders.flatMap((s) => [...s.acks.keys()])
  t.same(acked.filter((id) => !count.has(id)), [], `every acked op (${acked.length}) is in the Redis log`)
  const ackedSet = new Set(acked)
  t.same(log.ops.filter((o) => !ackedSet.has(o.id)).map((o) => o.id), [], 'the log holds no op that was not acked')

  const seqOf = new Map(log.ops.map((o) => [o.id, o.seq]))
  for (const s of traffic.senders) {
    t.same(s.errors, [], `${s.name} got no error but unavailable`)
    // A resent op may sit at its first or its resent place: only the others are ordered.
    const placed = s.sent.filter((id) => !s.resent.has(id)).map((id) => ({ id, seq: seqOf.get(id) ?? -1 }))
    const swapped = placed.findIndex((p, i) => i > 0 && p.seq <= (placed[i - 1] as { seq: number }).seq)
    t.equal(swapped, -1, `${s.name}'s ${placed.length} ops are in the log in the order it sent them` +
      (swapped === -1 ? '' : ` (${JSON.stringify(placed.slice(Math.max(0, swapped - 2), swapped + 2))})`))
  }

  // What the clients saw: each catches up to the head in the Redis epoch, gaplessly.
  await waitFor(() => traffic.senders.every((s) => {
    const seen = lastSeen(s)
    return seen.epoch === log.epoch && seen.seq >= log.head
  }), {
    what: 'every client to reach the head in the Redis epoch',
    timeoutMs: 10_000,
    intervalMs: 20
  }).catch((err: unknown) => {
    t.fail(String(err), { seen: traffic.senders.map((s) => ({ sender: s.name, ...lastSeen(s) })), log: { epoch: log.epoch, head: log.head } })
  })
  const idAt = new Map(log.ops.map((o) => [o.seq, o.id]))
  for (const s of traffic.senders) {
    const all = segments(s)
    // Trailing acks after a gap are checked against the log: only in the Redis epoch.
    t.same(all.map((seg, i) => firstGap(seg, i < all.length - 1 && seg.epoch === log.epoch)).filter((gap) => gap !== null), [],
      `${s.name} saw ops and acks in seq order with no gap and no duplicate within each of its ${all.length} epochs`)
    const last = all.at(-1) as Segment
    t.equal(last.epoch, log.epoch, `${s.name} ends in the Redis epoch`)
    t.ok(last.frames.some((f) => (f.seq as number) > last.base), `${s.name} saw live ops after its last reset`)
    const inRedisEpoch = all.filter((seg) => seg.epoch === log.epoch).flatMap((seg) => seg.frames)
    t.same(inRedisEpoch.filter((f) => idAt.get(f.seq as number) !== f.id).map((f) => ({ type: f.type, seq: f.seq, id: f.id })), [],
      `${s.name}'s ${inRedisEpoch.length} ops and acks in the Redis epoch are the Redis log's, seq for seq`)
  }
  const retried = traffic.senders.reduce((n, s) => n + s.resent.size, 0)
  t.comment(`${log.head} ops, ${retried} resent after unavailable, ${traffic.senders.map((s) => epochChanges(s).length).join('/')} epoch changes per client`)
  return log
}

/**
 * Two instances, both on Redis before anyone joins: boot does not wait for
 * Redis, and a join on an instance still on its fallback would start in
 * that instance's own epoch (seen on a loaded machine, with the 300 ms
 * command timeout of KNOBS).
 */
async function cluster (t: Test, redis: TestRedis | string, options: { outageBufferOps?: number } = {}): Promise<Cluster> {
  const c = await startCluster(t, typeof redis === 'string' ? redis : redis.url, 2, { ...KNOBS, ...options })
  // A URL alone is a Redis that is not there yet: the instances boot degraded.
  if (typeof redis !== 'string') await waitStatus(c.instances, 'ok')
  return c
}

/** Each sender saw, in an epoch other than the Redis log's, ops of the other senders on its instance: they kept collaborating. */
function expectLocalCollaboration (t: Test, tr: Traffic, redisEpoch: string): void {
  for (const s of tr.senders) {
    const instance = s.name.slice(0, s.name.indexOf('c'))
    const peers = new Set(tr.senders.filter((p) => p !== s && p.name.startsWith(`${instance}c`)).map((p) => p.name))
    const seen = new Set(segments(s).filter((seg) => seg.epoch !== redisEpoch)
      .flatMap((seg) => seg.frames.filter((f) => f.type === 'op').map((f) => (f.data as { from: string }).from)))
    t.same([...peers].filter((p) => !seen.has(p)), [], `${s.name} received ops of every sender on its instance during the outage`)
  }
}

async function traffic (t: Test, c: Cluster): Promise<Traffic> {
  return await createTraffic(t, c.instances.map((s) => s.ws), SENDERS, { project: PROJECT, window: 8, intervalMs: 5 })
}

/** The epoch every sender got in `joined` (they joined one log, so one epoch). */
function joinedEpoch (t: Test, tr: Traffic): string {
  const epochs = new Set(tr.senders.map((s) => s.joined?.epoch as string))
  t.equal(epochs.size, 1, 'every sender joined the same epoch')
  return [...epochs][0] as string
}

/** Each sender was reset to an epoch other than `from` (its instance's fallback) and back to `to`. */
function expectFallbackResets (t: Test, tr: Traffic, from: string, to: string): void {
  for (const s of tr.senders) {
    const changes = epochChanges(s).map((seg) => seg.epoch)
    t.ok(changes.some((e) => e !== from && e !== to), `${s.name} got reset to its instance's fallback epoch (${JSON.stringify(changes)})`)
    t.equal(changes.at(-1), to, `${s.name}'s last reset is to the Redis epoch`)
  }
}

t.test('a frozen Redis: every port serves from memory, ops are acked, and after the thaw every acked op is in the Redis log once, in order', async (t) => {
  const redis = await startRedis(t, { appendOnly: true })
  const c = await cluster(t, redis)
  const tr = await traffic(t, c)
  const epoch = joinedEpoch(t, tr)
  tr.start()
  await tr.acked(PHASE_ACKS, 'before the freeze')
  redis.stop()
  await expectDegraded(t, c.instances)
  await tr.acked(PHASE_ACKS, 'while Redis is frozen')
  redis.cont()
  await waitStatus(c.instances, 'ok', RECOVERY_MS)
  await tr.acked(PHASE_ACKS, 'after the thaw')
  const log = await verifyRecovered(t, c, tr)
  t.equal(log.epoch, epoch, 'the Redis epoch is the one the members joined')
  expectFallbackResets(t, tr, epoch, epoch)
  expectLocalCollaboration(t, tr, log.epoch)
})

t.test('a killed Redis restarted with its AOF: the outage buffers are appended to the surviving log once, in order, and ops refused with a full buffer land once when resent', async (t) => {
  const redis = await startRedis(t, { appendOnly: true })
  // The smallest outage buffer: it fills during the outage, and senders resend what it refused.
  const c = await cluster(t, redis, { outageBufferOps: 100 })
  const tr = await traffic(t, c)
  const epoch = joinedEpoch(t, tr)
  tr.start()
  await tr.acked(PHASE_ACKS, 'before the kill')
  await redis.kill()
  await expectDegraded(t, c.instances)
  await tr.acked(PHASE_ACKS, 'while Redis is dead')
  await waitFor(() => [0, 1].every((i) => tr.senders.some((s) => s.name.startsWith(`i${i}c`) && s.unavailable > 0)), {
    what: 'a full outage buffer to refuse ops with unavailable on each instance', timeoutMs: 10_000, intervalMs: 20
  })
  await redis.restart()
  await waitStatus(c.instances, 'ok', RECOVERY_MS)
  await tr.acked(PHASE_ACKS, 'after the restart')
  const log = await verifyRecovered(t, c, tr)
  t.equal(log.epoch, epoch, 'the log survived the crash: same epoch as at join')
  t.ok(tr.senders.every((s) => s.resent.size > 0), 'every sender resent ops refused during the outage (each is in the log once, checked above)')
  expectFallbackResets(t, tr, epoch, epoch)
  expectLocalCollaboration(t, tr, log.epoch)
})

for (const type of ['pubsub', 'normal'] as const) {
  const which = type === 'pubsub' ? 'Pub/Sub' : 'command'
  t.test(`dropped ${which} connections (CLIENT KILL TYPE ${type}) lose no acked op: subscriptions come back and missed ops are read from the log`, async (t) => {
    const redis = await startRedis(t, { appendOnly: true })
    const c = await cluster(t, redis)
    const admin = await redisClient(t, redis.url)
    const channel = redisKeys(c.keyPrefix).channel(PROJECT)
    const subscribers = async (): Promise<number> => {
      const reply = await admin.sendCommand<[string, number]>(['PUBSUB', 'NUMSUB', channel])
      return Number(reply[1])
    }
    const tr = await traffic(t, c)
    const epoch = joinedEpoch(t, tr)
    t.equal(await subscribers(), 2, 'both instances subscribe to the project channel')
    tr.start()
    await tr.acked(PHASE_ACKS, 'before the kill')
    const killed = Number(await admin.sendCommand(['CLIENT', 'KILL', 'TYPE', type]))
    t.ok(killed >= 2, `CLIENT KILL dropped ${killed} connections`)
    await tr.acked(PHASE_ACKS, 'after the kill')
    await waitFor(async () => await subscribers() === 2, { what: 'both instances to subscribe again', timeoutMs: RECOVERY_MS, intervalMs: 20 })
    // Whatever the drop did to the breaker, each instance is back: every fallback recovered.
    await waitFor(async () => (await Promise.all(c.instances.map(stats))).every((s) => s.recoveries === s.fallbacks), {
      what: 'every fallback to have recovered', timeoutMs: RECOVERY_MS, intervalMs: 20
    })
    await waitStatus(c.instances, 'ok', RECOVERY_MS)
    await tr.acked(PHASE_ACKS, 'after the reconnect')
    const log = await verifyRecovered(t, c, tr)
    t.equal(log.epoch, epoch, 'the Redis epoch did not change')
    const fellBack = await Promise.all(c.instances.map(stats))
    tr.senders.forEach((s, i) => {
      const instance = Math.floor(i / SENDERS)
      if ((fellBack[instance]?.fallbacks ?? 0) > 0) {
        t.ok(epochChanges(s).some((seg) => seg.epoch !== epoch), `${s.name}'s instance fell back: it got reset to the fallback epoch`)
      }
    })
    t.equal(await subscribers(), 2, 'the project channel has both subscribers at the end')
  })
}

t.test('instances booted while Redis is down serve from memory and move their ops into Redis once it starts', async (t) => {
  const port = await freePort()
  const c = await cluster(t, `redis://127.0.0.1:${port}`)
  await expectDegraded(t, c.instances)
  const tr = await traffic(t, c)
  const fallbackEpochs = new Set(tr.senders.map((s) => s.joined?.epoch as string))
  t.equal(fallbackEpochs.size, 2, 'each instance serves its own fallback epoch')
  tr.start()
  await tr.acked(PHASE_ACKS, 'while Redis is absent')
  await startRedis(t, { port, appendOnly: true })
  await waitStatus(c.instances, 'ok', RECOVERY_MS)
  await tr.acked(PHASE_ACKS, 'after Redis started')
  const log = await verifyRecovered(t, c, tr)
  t.notOk(fallbackEpochs.has(log.epoch), 'the Redis epoch is not a fallback epoch')
  expectLocalCollaboration(t, tr, log.epoch)
  for (const s of tr.senders) {
    const changes = epochChanges(s).map((seg) => seg.epoch)
    t.equal(changes.at(-1), log.epoch, `${s.name} got reset from its fallback epoch to the Redis epoch`)
  }
})

// ---------------------------------------------------------------------------
// The races behind those guarantees, one at a time and deterministically:
// each was found by the tests above (which hit it in some runs only), and
// each test fails without its fix.

/**
 * A shared log (as Redis is) that the test drives: it can hold reads, and
 * lose its data (a new epoch), as when an instance falls back.
 */
class SharedLog extends TestLog {
  readonly readStarted = deferred()
  readonly #readsGo = deferred()
  #holdReads = false

  constructor () { super({ publishesOps: true }) }
  holdReads (): void { this.#holdReads = true }
  releaseReads (): void { this.#readsGo.resolve() }
  override async read (project: string, since: number, limit: number, epoch?: string): Promise<ReadResult> {
    if (this.#holdReads) {
      this.readStarted.resolve()
      await this.#readsGo.promise
    }
    return await super.read(project, since, limit, epoch)
  }
}

t.test('an op still waiting on a lost broadcast when the epoch changes is acked before the reset, in the epoch its seq belongs to', async (t) => {
  const log = new SharedLog()
  const server = await startServer(t, { ports: { log } })
  t.teardown(() => { log.releaseReads() })
  const client = await connect(t, server.ws)
  const joined = await client.join('gap')
  // Another instance's op, whose broadcast never arrived: seq 1.
  await log.inner.append({ project: 'gap', id: 'theirs', userId: 'other', sessionId: null, data: 0, ts: Date.now() })
  log.holdReads()
  client.send({ type: 'op', project: 'gap', id: 'mine', ref: 'mine', data: 1 })
  // The gap fill reads the log: 'mine' (seq 2) is waiting for seq 1, and so is its ack.
  await log.readStarted.promise
  t.equal(client.all('ack').length, 0, 'the ack waits for the op to be delivered in order')
  log.inner = new MemoryOperationLog()
  await server.app.flow.hub.resyncAll()
  await waitFor(() => client.all('ack').length > 0 && client.all('reset').length > 0, { what: 'the ack and the reset', timeoutMs: 5000 })
  const order = client.received.filter((f) => f.type === 'ack' || f.type === 'reset')
  t.match(order, [{ type: 'ack', id: 'mine', seq: 2 }, { type: 'reset', seq: 0 }], 'the ack, with its seq in the old epoch, comes before the reset')
  t.not(order[1]?.epoch, joined.epoch, 'the members are reset to the new epoch')
})

/** A primary whose appends each take `latencyMs` (a busy Redis, far away). */
class SlowLog extends TestLog {
  readonly #latencyMs: number

  constructor (latencyMs: number) {
    super({ historyLimit: 100_000 })
    this.#latencyMs = latencyMs
  }

  override async append (op: NewOp): Promise<AppendResult> {
    await delay(this.#latencyMs)
    return await super.append(op)
  }
}

/** What plugins/ports.ts gives an op log decorator: the breaker, a watchdog, Redis' outage test, a memory fallback. */
function decorated (breaker: CircuitBreaker, timeoutMs: number): Omit<Parameters<typeof FailoverOperationLog.create>[0], 'primary'> {
  return { breaker, watchdog: new Watchdog(timeoutMs), timeoutMs, isOutage: isRedisOutage, fallback: () => new MemoryOperationLog({ historyLimit: 1000 }) }
}

t.test('the re-sync drains the outage buffer in order faster than ops keep arriving, so the log gets back to Redis under load', async (t) => {
  const primary = new SlowLog(5)
  const breaker = new CircuitBreaker({ probe: async () => { throw new Error('stays down: the test runs the re-sync') } })
  t.teardown(() => { breaker.dispose() })
  const { port: log, control } = FailoverOperationLog.create({ ...decorated(breaker, 1000), primary })
  breaker.trip(new Error('outage'))
  let n = 0
  const append = async (): Promise<AppendResult> => await log.append({ project: 'p', id: `op-${n++}`, userId: 'u', sessionId: null, data: n, ts: Date.now() })
  for (let i = 0; i < 200; i++) await append()
  t.equal(control.buffered, 200, 'the outage buffer holds the ops of the outage')
  // About one op per millisecond keeps arriving, more than one append per round trip (5 ms) could drain.
  const arriving: Array<Promise<AppendResult>> = []
  const feeder = setInterval(() => { arriving.push(append()) }, 1)
  try {
    await withDeadline(control.resync(), 'the re-sync to catch up with the arriving ops', 3000)
  } finally {
    clearInterval(feeder)
  }
  await Promise.all(arriving)
  t.equal(control.serving, 'primary', 'the log is back on its primary')
  const page = await primary.inner.read('p', 0, 100_000)
  t.same(page.ops.map((o) => o.id), Array.from({ length: n }, (_, i) => `op-${i}`), `all ${n} ops are in the primary once, in the order they were accepted`)
})

/** A primary whose appends wait until the test answers them: they land (in `inner`) or fail. */
class HeldLog extends TestLog {
  hold = true
  readonly #held = new Map<string, { land: () => void, fail: (err: Error) => void }>()

  override async append (op: NewOp): Promise<AppendResult> {
    if (this.hold) await new Promise<void>((resolve, reject) => { this.#held.set(op.id, { land: resolve, fail: reject }) })
    return await super.append(op)
  }

  isHeld (id: string): boolean { return this.#held.has(id) }
  answer (id: string, err?: Error): void {
    const held = this.#held.get(id)
    this.#held.delete(id)
    if (err === undefined) held?.land()
    else held?.fail(err)
  }
}

t.test('an op in flight on Redis when the log falls back keeps its place before the ops sent after it', async (t) => {
  for (const outcome of ['fails', 'lands'] as const) {
    t.test(`when its Redis append ${outcome}`, async (t) => {
      const primary = new HeldLog()
      const breaker = new CircuitBreaker({ probe: async () => { throw new Error('stays down: the test runs the re-sync') } })
      t.teardown(() => { breaker.dispose() })
      const { port: log, control } = FailoverOperationLog.create({ ...decorated(breaker, 5000), primary })
      const op = (id: string): NewOp => ({ project: 'p', id, userId: 'u', sessionId: null, data: id, ts: Date.now() })
      const first = log.append(op('first'))
      t.ok(primary.isHeld('first'), 'the first op is in flight on the primary')
      // Another port's call failed: every port falls back, this append still in flight.
      breaker.trip(new Error('another port timed out'))
      const second = log.append(op('second'))
      primary.answer('first', outcome === 'fails' ? new Error('Socket closed unexpectedly') : undefined)
      const [a, b] = await Promise.all([first, second])
      const fallback = await log.head('p')
      t.match(a, { duplicate: false, epoch: fallback.epoch, op: { id: 'first', seq: 1 } }, 'the first op has the fallback\'s first seq (the epoch the members are in now)')
      t.match(b, { duplicate: false, epoch: fallback.epoch, op: { id: 'second', seq: 2 } }, 'the second op comes after it')
      primary.hold = false
      await control.resync()
      t.same((await primary.inner.read('p', 0, 10)).ops.map((o) => o.id), ['first', 'second'], 'the re-sync puts both in the primary in that order, once')
    })
  }
})

/** A shared log whose appends land at once but answer the caller only when the test says so (a slow reply). */
class SlowReplyLog extends TestLog {
  readonly #replies = deferred()
  readonly landed = deferred()

  constructor () { super({ publishesOps: true }) }
  override async append (op: NewOp): Promise<AppendResult> {
    const result = await super.append(op)
    this.landed.resolve()
    await this.#replies.promise
    return result
  }

  reply (): void { this.#replies.resolve() }
}

t.test('an own op that a catch-up reads from the log before its append answered is acked in seq order, once', async (t) => {
  const log = new SlowReplyLog()
  const server = await startServer(t, { ports: { log } })
  t.teardown(() => { log.reply() })
  const client = await connect(t, server.ws)
  await client.join('catch')
  client.send({ type: 'op', project: 'catch', id: 'mine', ref: 'mine', data: 1 })
  await log.landed.promise
  // Another instance's op lands behind it, its broadcast lost; a catch-up (after a subscriber reconnect) reads both.
  await log.inner.append({ project: 'catch', id: 'theirs', userId: 'other', sessionId: null, data: 2, ts: Date.now() })
  await server.app.flow.hub.resyncAll()
  await waitFor(() => client.all('op').length > 0, { what: 'the other op', timeoutMs: 5000 })
  log.reply()
  await client.request({ type: 'ping' })
  t.match(client.received.filter((f) => f.type === 'ack' || f.type === 'op'), [{ type: 'ack', id: 'mine', seq: 1 }, { type: 'op', id: 'theirs', seq: 2 }],
    'the ack comes before the op after it, and only once')
  t.equal(client.all('ack').length, 1, 'one ack')
})

t.test('after a Redis restart the op log\'s scripts are loaded before the instance serves from Redis again, with no op sent', async (t) => {
  const redis = await startRedis(t)
  const admin = await redisClient(t, redis.url)
  const loaded = async (): Promise<number[]> => await admin.sendCommand<number[]>(['SCRIPT', 'EXISTS', ...OPERATION_LOG_SCRIPTS.map((s) => s.sha1)])
  // The instance reaches Redis through a proxy, held shut while the test looks at the restarted Redis.
  const proxy = await startProxy(t, redis.port)
  const c = await startCluster(t, `redis://127.0.0.1:${proxy.port}`, 1, KNOBS)
  proxy.refuse(true)
  proxy.cut()
  await redis.restart()
  t.same(await loaded(), OPERATION_LOG_SCRIPTS.map(() => 0), 'the restarted Redis starts with an empty script cache')
  proxy.refuse(false)
  await waitFor(async () => (await stats(c.instances[0] as TestServer)).recoveries >= 1, { what: 'the instance to recover', timeoutMs: RECOVERY_MS, intervalMs: 20 })
  await waitStatus(c.instances, 'ok', RECOVERY_MS)
  t.same(await loaded(), OPERATION_LOG_SCRIPTS.map(() => 1), 'loaded once the instance is back on the restarted Redis')
})

/** A shared log that can lose its data (a new epoch), answer appends late and hold position reads (open), as the test says. */
class SteppedLog extends TestLog {
  holdHeads = false
  readonly landed = deferred()
  readonly #reply = deferred()
  readonly #heads: Array<() => void> = []

  constructor () { super({ publishesOps: true }) }
  override async append (op: NewOp): Promise<AppendResult> {
    const result = await super.append(op)
    this.landed.resolve()
    await this.#reply.promise
    return result
  }

  reply (): void { this.#reply.resolve() }
  get heldHeads (): number { return this.#heads.length }
  releaseHeads (): void {
    this.holdHeads = false
    for (const go of this.#heads.splice(0)) go()
  }

  /** The position when asked, answered when released. */
  override async open (project: string): Promise<OpenedLog> {
    const position = await super.open(project)
    if (this.holdHeads) await new Promise<void>((resolve) => { this.#heads.push(resolve) })
    return position
  }
}

t.test('an op appended to an epoch the members are not in yet is acked after their reset to it, in seq order', async (t) => {
  const log = new SteppedLog()
  const server = await startServer(t, { ports: { log } })
  t.teardown(() => { log.reply(); log.releaseHeads() })
  const client = await connect(t, server.ws)
  const joined = await client.join('ahead')
  // The log loses its data and is created again (a new epoch: another
  // instance opens it); a resync reads its position, answered late.
  log.inner = new MemoryOperationLog()
  await log.inner.open('ahead')
  log.holdHeads = true
  const switching = server.app.flow.hub.resyncAll()
  client.send({ type: 'op', project: 'ahead', id: 'mine', ref: 'mine', data: 1 })
  await log.landed.promise
  await log.inner.append({ project: 'ahead', id: 'theirs', userId: 'other', sessionId: null, data: 2, ts: Date.now() })
  log.reply()
  // The append answered in the new epoch: the hub resyncs too, and its head read (seq 2) waits behind the first (seq 0).
  await waitFor(() => log.heldHeads === 2, { what: 'two head reads', timeoutMs: 5000 })
  log.releaseHeads()
  await switching
  await waitFor(() => client.all('op').length > 0, { what: 'the other op', timeoutMs: 5000 })
  await client.request({ type: 'ping' })
  const frames = client.received.filter((f) => f.type === 'ack' || f.type === 'op' || f.type === 'reset')
  t.match(frames, [{ type: 'reset', seq: 0 }, { type: 'ack', id: 'mine', seq: 1 }, { type: 'op', id: 'theirs', seq: 2 }],
    'reset to the new epoch, then the ack, then the op after it')
  t.equal(frames.length, 3, 'nothing else: one reset, one ack')
  t.not(frames[0]?.epoch, joined.epoch, 'the reset is to the new epoch')
})
