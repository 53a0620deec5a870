/**
 * Membership through faults, with real processes (docs/protocol.md guarantee
 * 4, docs/outages.md): instances sharing one Redis, all three Redis flags on,
 * short session TTL and instance lease. After a stall past the lease, a
 * FLUSHALL, an outage of one instance, or any mix of them under random joins
 * and leaves, every instance's `GET /members` and every connected client's
 * view (its `joined` list, then the `member` events after it) come back to
 * the sessions actually connected, within two refresh intervals (a third of
 * the session TTL each, lib/hub/session-keeper.ts) of the fault's end.
 */
import { setTimeout as delay } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { connect, TestClient, type Frame } from '../helpers/client.js'
import { redisClient, startRedis, uniquePrefix } from '../helpers/redis.js'
import { startProxy } from '../helpers/proxy.js'
import { ensureBuilt } from '../helpers/process.js'
import { DeadlineError, waitFor } from '../helpers/wait.js'
import {
  eventsAbout, healthOf, listedIds, listMembers, sameIds, startLocalInstance, startProcessInstance, stall, thaw, viewIds, viewOf, waitHealthy,
  type ClusterSettings, type Instance
} from '../helpers/members.js'
import type { Member } from '../../lib/protocol/wire.js'

const TTL_SECONDS = 6
const LEASE_MS = 2000
/** The session keeper's refresh interval: a third of the TTL. */
const REFRESH_MS = TTL_SECONDS * 1000 / 3
/**
 * Headroom over a documented bound, for a loaded machine (two cores shared
 * with other test files): timers fire late and Redis answers late there.
 */
const SLACK_MS = 2000
/** Lists and views equal the connected sessions within two refresh intervals of a fault's end (session-keeper.ts). */
const CONVERGE_MS = 2 * REFRESH_MS + SLACK_MS
/** Outage detection and recovery in a second or two (as test/integration/outages.test.ts). */
const KNOBS = { redisCommandTimeoutMs: 300, redisProbeIntervalMs: 200, redisConnectWaitMs: 200 }
/** Longest a recovery takes once Redis is reachable again: the probe's backoff (at most 2 s), then the re-sync. */
const RECOVERY_MS = 5000

t.before(ensureBuilt)

function settingsFor (redisUrl: string, keyPrefix = uniquePrefix()): ClusterSettings {
  return { redisUrl, keyPrefix, sessionTtlSeconds: TTL_SECONDS, instanceLeaseMs: LEASE_MS }
}

/** A client's session in a project. */
interface Seat {
  readonly name: string
  readonly client: TestClient
  readonly project: string
  readonly sessionId: string
  readonly joined: Frame
}

/** Connects a client named `name` (its userId) to the instance and joins `project`. */
async function seat (t: Test, instance: Instance, project: string, name: string): Promise<Seat> {
  const client = await connect(t, `${instance.ws}?userId=${name}`)
  const joined = await client.join(project)
  return { name, client, project, sessionId: joined.sessionId as string, joined }
}

async function seats (t: Test, instance: Instance, project: string, names: readonly string[]): Promise<Seat[]> {
  const out: Seat[] = []
  for (const name of names) out.push(await seat(t, instance, project, name))
  return out
}

/** What differs from "every list and every view equals the seats", or null. */
async function divergence (instances: readonly Instance[], connected: readonly Seat[], projects: readonly string[]): Promise<string | null> {
  const problems: string[] = []
  const name = new Map(connected.map((s) => [s.sessionId, s.name]))
  const show = (ids: readonly string[]): string => ids.map((id) => name.get(id) ?? `ghost:${id}`).join(',')
  for (const project of projects) {
    const expected = connected.filter((s) => s.project === project).map((s) => s.sessionId).sort()
    const lists = await Promise.all(instances.map(async (i) => await listedIds(i.http, project)))
    lists.forEach((listed, n) => {
      const instance = (instances[n] as Instance).name
      if (typeof listed === 'string') problems.push(`${instance} ${project}: ${listed}`)
      else if (!sameIds(listed, expected)) problems.push(`${instance} lists ${project} as [${show(listed)}], connected [${show(expected)}]`)
    })
    for (const s of connected.filter((c) => c.project === project)) {
      const view = viewIds(s.client, project)
      if (!sameIds(view, expected)) problems.push(`${s.name}'s view of ${project} is [${show(view)}], connected [${show(expected)}]`)
    }
  }
  return problems.length === 0 ? null : problems.join('; ')
}

/**
 * Polls until every instance lists exactly the connected seats of each
 * project and every connected seat's view equals that; resolves how long it
 * took, rejects after `timeoutMs` with what still differs.
 */
async function converge (instances: readonly Instance[], connected: readonly Seat[], timeoutMs: number, what: string): Promise<number> {
  const projects = [...new Set(connected.map((s) => s.project))]
  const started = Date.now()
  let last: string | null = null
  try {
    await waitFor(async () => {
      last = await divergence(instances, connected, projects)
      return last === null
    }, { what, timeoutMs, intervalMs: 50 })
  } catch (err) {
    if (!(err instanceof DeadlineError)) throw err
    throw new Error(`${what}: still different after ${timeoutMs} ms: ${String(last)}`)
  }
  return Date.now() - started
}

/** Resolves once each of `observers` has heard `event` as the last word about `subject`. */
async function heard (observers: readonly Seat[], subject: Seat, event: 'join' | 'leave', timeoutMs: number): Promise<void> {
  await waitFor(() => observers.every((o) => eventsAbout(o.client, subject.project, subject.sessionId).at(-1) === event), {
    what: `${observers.map((o) => o.name).join(',')} to hear ${subject.name} ${event}`,
    timeoutMs,
    intervalMs: 20
  })
}

/** Sends `leave` and resolves `left`. */
async function leave (s: Seat): Promise<void> {
  const left = await s.client.request({ type: 'leave', project: s.project })
  if (left.type !== 'left') throw new Error(`${s.name}'s leave was answered ${JSON.stringify(left)}`)
}

t.test('a stall past the lease reaps live members; after the thaw every list and view holds them again, and a real leave reaches everyone', async (t) => {
  const redis = await startRedis(t)
  const settings = settingsFor(redis.url)
  const a = await startProcessInstance(t, 'a', settings)
  const b = await startLocalInstance(t, 'b', settings)
  const project = 'stall'
  const onA = await seats(t, a, project, ['a1', 'a2', 'a3'])
  const onB = await seats(t, b, project, ['b1', 'b2'])
  const everyone = [...onA, ...onB]
  await converge([a, b], everyone, CONVERGE_MS, 'every list and view before the stall')

  // Longer than the lease (2 s, then a reap within 1 s), shorter than node-redis' socket timeout (5 s).
  const STALL_MS = 3500
  const stoppedAt = Date.now()
  stall(a)
  try {
    await waitFor(() => onB.every((o) => onA.every((s) => eventsAbout(o.client, project, s.sessionId).includes('leave'))), {
      what: 'B\'s members to hear A\'s members leave while A is stalled',
      timeoutMs: 4500,
      intervalMs: 20
    })
    t.pass(`B reaped A's sessions ${Date.now() - stoppedAt} ms into the stall and its members heard them leave`)
    t.same(await listedIds(b.http, project), onB.map((s) => s.sessionId).sort(), 'B lists only its own members during the stall')
    // The fault lasts its duration: A stays frozen until then.
    await delay(Math.max(0, STALL_MS - (Date.now() - stoppedAt)))
  } finally {
    thaw(a)
  }
  const took = await converge([a, b], everyone, CONVERGE_MS, 'every list and view after the thaw')
  t.comment(`stalled ${STALL_MS} ms; lists and views converged ${took} ms after the thaw`)
  for (const o of onB) {
    for (const s of onA) {
      const events = eventsAbout(o.client, project, s.sessionId)
      t.equal(events.at(-1), 'join', `${o.name} heard ${s.name} join again after its leave (${events.join(',')})`)
    }
  }
  for (const o of onA) {
    t.same(onA.filter((s) => s !== o).flatMap((s) => eventsAbout(o.client, project, s.sessionId).filter((e) => e === 'leave')), [],
      `${o.name} never heard the members of its own instance leave`)
  }

  const [gone, ...rest] = onA as [Seat, ...Seat[]]
  await leave(gone)
  const stay = [...rest, ...onB]
  await heard(stay, gone, 'leave', 3000)
  t.pass(`${stay.map((s) => s.name).join(', ')} heard ${gone.name} leave for real`)
  await converge([a, b], stay, CONVERGE_MS, 'every list and view after the real leave')
})

t.test('FLUSHALL under connected instances: every list comes back to the connected sessions, and a later leave is announced', async (t) => {
  // A Redis of its own: this test flushes it.
  const redis = await startRedis(t)
  const settings = settingsFor(redis.url)
  const a = await startLocalInstance(t, 'a', settings)
  const b = await startLocalInstance(t, 'b', settings)
  const everyone = [
    ...await seats(t, a, 'flush', ['a1', 'a2']),
    ...await seats(t, b, 'flush', ['b1', 'b2']),
    ...await seats(t, a, 'flush-2', ['a3']),
    ...await seats(t, b, 'flush-2', ['b3'])
  ]
  await converge([a, b], everyone, CONVERGE_MS, 'every list and view before the flush')
  const admin = await redisClient(t, redis.url)
  await admin.flushAll()
  t.same(await listedIds(a.http, 'flush'), [], 'the flush emptied the lists')
  const took = await converge([a, b], everyone, CONVERGE_MS, 'every list and view after FLUSHALL')
  t.comment(`lists and views converged ${took} ms after FLUSHALL`)

  const byName = new Map(everyone.map((s) => [s.name, s]))
  const leaver = byName.get('a1') as Seat
  await leave(leaver)
  const closer = byName.get('b3') as Seat
  closer.client.close()
  const stay = everyone.filter((s) => s !== leaver && s !== closer)
  await heard(stay.filter((s) => s.project === leaver.project), leaver, 'leave', 3000)
  await heard(stay.filter((s) => s.project === closer.project), closer, 'leave', 3000)
  t.pass('a leave and a disconnect after the flush were announced to every other member')
  await converge([a, b], stay, CONVERGE_MS, 'every list and view after the leaves')
})

t.test('an instance cut off from Redis keeps its own member list; after the cut its members see what happened elsewhere', async (t) => {
  const redis = await startRedis(t)
  const proxy = await startProxy(t, redis.port)
  const settings = settingsFor(redis.url)
  const a = await startLocalInstance(t, 'a', { ...settings, redisUrl: `redis://127.0.0.1:${proxy.port}` }, KNOBS)
  const b = await startLocalInstance(t, 'b', settings, KNOBS)
  const project = 'outage'
  const onA = await seats(t, a, project, ['a1', 'a2', 'a3', 'a4'])
  const onB = await seats(t, b, project, ['b1', 'b2'])
  await converge([a, b], [...onA, ...onB], CONVERGE_MS, 'every list and view before the cut')

  proxy.refuse(true)
  proxy.cut()
  await waitFor(async () => await healthOf(a.http) === 'degraded', { what: 'A to be degraded', timeoutMs: 10_000, intervalMs: 20 })
  const ids = (list: readonly Seat[]): string[] => list.map((s) => s.sessionId).sort()
  t.same(await listedIds(a.http, project), ids(onA), 'during the outage A lists its own members')
  const a5 = await seat(t, a, project, 'a5')
  const joinedIds = (a5.joined.members as Member[]).map((m) => m.sessionId)
  t.same(ids([...onA, a5]).filter((id) => !joinedIds.includes(id)), [], 'a joiner on A gets A\'s members in joined')
  const [a1, a2, a3, a4] = onA as [Seat, Seat, Seat, Seat]
  t.same(viewIds(a5.client, project), viewIds(a1.client, project), 'the joiner knows what A\'s other members know')
  await leave(a4)
  await heard([a1, a2, a3, a5], a4, 'leave', 3000)
  t.pass('a leave on A was announced to A\'s other members during the outage')
  t.same(await listedIds(a.http, project), ids([a1, a2, a3, a5]), 'A lists the leave')
  const [b1, b2] = onB as [Seat, Seat]
  const b3 = await seat(t, b, project, 'b3')
  await leave(b1)
  await heard([b2, b3], b1, 'leave', 3000)

  proxy.refuse(false)
  const restoredAt = Date.now()
  await waitHealthy([a], RECOVERY_MS)
  const connected = [a1, a2, a3, a5, b2, b3]
  const took = await converge([a, b], connected, RECOVERY_MS + CONVERGE_MS, 'every list and view after the cut')
  t.comment(`A recovered and lists and views converged ${Date.now() - restoredAt} ms after the proxy was restored (${took} ms after /health said ok)`)
  for (const s of [a1, a2, a3, a5]) {
    const view = viewOf(s.client, project)
    t.notOk(view.has(b1.sessionId), `${s.name} no longer sees b1, which left during the outage`)
    t.ok(view.has(b3.sessionId), `${s.name} sees b3, which joined during the outage`)
  }
})

t.test('presence is last writer wins: after 300 updates back to back, with or without a Redis blip among them, every list, view and later joiner shows the last one', async (t) => {
  const redis = await startRedis(t)
  const proxy = await startProxy(t, redis.port)
  // A lease longer than any blip here: the writer's session stays in Redis through it, and only its presence is behind.
  const settings = { ...settingsFor(redis.url), instanceLeaseMs: 10_000 }
  const a = await startLocalInstance(t, 'a', { ...settings, redisUrl: `redis://127.0.0.1:${proxy.port}` }, KNOBS)
  const b = await startLocalInstance(t, 'b', settings, KNOBS)
  const project = 'presence'
  const writer = await seat(t, a, project, 'writer')
  const neighbour = await seat(t, a, project, 'neighbour')
  const watcher = await seat(t, b, project, 'watcher')
  const UPDATES = 300
  const presenceIn = (members: readonly Member[]): unknown => members.find((m) => m.sessionId === writer.sessionId)?.presence
  const rounds = ['back to back', 'with a blip of the writer\'s Redis connection halfway', 'back to back', 'with a blip of the writer\'s Redis connection halfway']
  for (const [round, how] of rounds.entries()) {
    const blip = how !== 'back to back'
    const last = { round, n: UPDATES - 1 }
    const startedAt = Date.now()
    for (let n = 0; n < UPDATES; n++) {
      if (blip && n === UPDATES / 2) {
        proxy.refuse(true)
        proxy.cut()
      }
      writer.client.send({ type: 'presence', project, state: { round, n } })
    }
    await writer.client.request({ type: 'ping' })
    if (blip) {
      await waitFor(async () => await healthOf(a.http) === 'degraded', { what: 'A to see the blip', timeoutMs: 5000, intervalMs: 10 })
      proxy.refuse(false)
      await waitHealthy([a], RECOVERY_MS)
    }
    const shows = async (): Promise<string | null> => {
      const problems: string[] = []
      for (const instance of [a, b]) {
        const listed = presenceIn(await listMembers(instance.http, project))
        if (JSON.stringify(listed) !== JSON.stringify(last)) problems.push(`${instance.name} lists ${JSON.stringify(listed)}`)
      }
      for (const s of [neighbour, watcher]) {
        const seen = viewOf(s.client, project).get(writer.sessionId)?.presence
        if (JSON.stringify(seen) !== JSON.stringify(last)) problems.push(`${s.name} sees ${JSON.stringify(seen)}`)
      }
      return problems.length === 0 ? null : problems.join('; ')
    }
    let problems: string | null = null
    await waitFor(async () => (problems = await shows()) === null, { what: `round ${round}: the last presence everywhere`, timeoutMs: CONVERGE_MS, intervalMs: 20 })
      .catch(() => { t.fail(`round ${round} (${how}): not the last presence after ${CONVERGE_MS} ms: ${String(problems)}`) })
    t.comment(`round ${round} (${how}): the last presence was everywhere ${Date.now() - startedAt} ms after the first update`)
    for (const instance of [a, b]) {
      const late = await seat(t, instance, project, `late-${instance.name}-${round}`)
      t.same(presenceIn(late.joined.members as Member[]), last, `round ${round} (${how}): a later joiner on ${instance.name} gets the last presence`)
      late.client.close()
    }
    // Nothing older lands afterwards: a whole refresh later (its reconcile included), it is still the last one everywhere.
    // (A hold, not a synchronisation: the check is that nothing changes during it.)
    await delay(REFRESH_MS + 200)
    t.equal(await shows(), null, `round ${round} (${how}): every list and view still shows the last presence a refresh interval later`)
  }
})

// ---------------------------------------------------------------------------
// Property: random joins and leaves under random faults converge.

/** How long the clients join and leave at random (FLOW_MEMBERSHIP_PROPERTY_MS, default 20 s). */
const PROPERTY_MS = Number(process.env.FLOW_MEMBERSHIP_PROPERTY_MS ?? 20_000)
/** The seed of the run (FLOW_MEMBERSHIP_SEED to replay one's choices; timing is the machine's). */
const SEED = Number(process.env.FLOW_MEMBERSHIP_SEED ?? Math.floor(Math.random() * 2 ** 31))
if (PROPERTY_MS > 30_000) t.setTimeout(PROPERTY_MS + 120_000)

/** mulberry32: a small seeded PRNG, floats in [0, 1). */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** One of the random test's clients: at most one socket at a time, and its sessions by project. */
interface Sim {
  readonly name: string
  client: TestClient | null
  /** the instance slot its socket is on */
  slot: number
  /** project -> session id, for the projects it joined and did not leave */
  readonly sessions: Map<string, string>
  busy: boolean
}

/** An instance slot of the random test: what runs there now, and whether it may take new clients. */
interface Slot {
  instance: Instance
  up: boolean
  /** how many times it was restarted (a restarted process gets a new instance id, as a new container would) */
  restarts: number
  readonly kind: 'process' | 'proxied'
}

t.test(`random joins and leaves of 30 clients on 3 instances under random faults converge to the connected sessions (seed ${SEED})`, async (t) => {
  const redis = await startRedis(t) // its own: FLUSHALL is one of the faults
  const proxy = await startProxy(t, redis.port)
  const settings = settingsFor(redis.url)
  const admin = await redisClient(t, redis.url)
  const slots: Slot[] = [
    { instance: await startProcessInstance(t, 'p0', settings), up: true, restarts: 0, kind: 'process' },
    { instance: await startProcessInstance(t, 'p1', settings), up: true, restarts: 0, kind: 'process' },
    { instance: await startLocalInstance(t, 'm2', { ...settings, redisUrl: `redis://127.0.0.1:${proxy.port}` }, KNOBS), up: true, restarts: 0, kind: 'proxied' }
  ]
  const PROJECTS = ['r0', 'r1', 'r2']
  const pickFrom = <T>(random: () => number, items: readonly T[]): T => items[Math.floor(random() * items.length)] as T
  const counts = new Map<string, number>()
  const count = (what: string): void => { counts.set(what, (counts.get(what) ?? 0) + 1) }
  const sockets = new Set<TestClient>()
  t.teardown(() => { for (const c of sockets) c.socket.terminate() })

  /** A request that rejects as soon as the socket closes (a killed instance) instead of waiting out its timeout. */
  const ask = async (client: TestClient, frame: Record<string, unknown>): Promise<Frame> => {
    const reply = client.request(frame)
    reply.catch(() => {})
    return await Promise.race([reply, client.closed.then(() => { throw new Error('the socket closed') })])
  }
  const drop = (sim: Sim): void => {
    sim.client?.socket.terminate()
    sim.client = null
    sim.sessions.clear()
  }
  const connectTo = async (sim: Sim, slot: number): Promise<void> => {
    const client = new TestClient(`${(slots[slot] as Slot).instance.ws}?userId=${sim.name}`, { timeoutMs: 10_000 })
    sockets.add(client)
    // The socket closes under it (its instance was killed): its sessions go with it.
    client.socket.on('close', () => {
      if (sim.client !== client) return
      sim.client = null
      sim.sessions.clear()
    })
    sim.client = client
    sim.slot = slot
    await client.open()
  }
  const join = async (sim: Sim, project: string): Promise<void> => {
    const client = sim.client as TestClient
    const reply = await ask(client, { type: 'join', project })
    if (reply.type === 'joined' && sim.client === client) sim.sessions.set(project, reply.sessionId as string)
    else count(`join answered ${reply.type === 'error' ? String(reply.code) : reply.type}`)
  }
  const leaveProject = async (sim: Sim, project: string): Promise<void> => {
    const client = sim.client as TestClient
    const reply = await ask(client, { type: 'leave', project })
    if (reply.type !== 'left') throw new Error(`leave answered ${JSON.stringify(reply)}`)
    sim.sessions.delete(project)
  }
  const upSlots = (): number[] => slots.flatMap((s, i) => s.up ? [i] : [])

  /** One random step of one client; any failure drops its socket, so what it holds is known. */
  const step = async (sim: Sim, random: () => number): Promise<void> => {
    sim.busy = true
    try {
      const joined = [...sim.sessions.keys()]
      const free = PROJECTS.filter((p) => !sim.sessions.has(p))
      const r = random()
      if (sim.client === null) {
        const up = upSlots()
        if (up.length === 0) return
        count('connect')
        await connectTo(sim, pickFrom(random, up))
        await join(sim, pickFrom(random, PROJECTS))
      } else if ((r < 0.45 && free.length > 0) || joined.length === 0) {
        count('join')
        await join(sim, pickFrom(random, free))
      } else if (r < 0.8) {
        count('leave')
        await leaveProject(sim, pickFrom(random, joined))
      } else if (r < 0.9) {
        count('disconnect')
        const client = sim.client
        sim.client = null
        sim.sessions.clear()
        if (random() < 0.5) client.close()
        else client.socket.terminate()
      } else {
        count('move')
        drop(sim)
        const up = upSlots()
        if (up.length === 0) return
        await connectTo(sim, pickFrom(random, up))
        await join(sim, pickFrom(random, PROJECTS))
      }
    } catch (err) {
      count(`dropped after: ${String(err).slice(0, 60)}`)
      drop(sim)
    } finally {
      sim.busy = false
    }
  }

  const sims: Sim[] = Array.from({ length: 30 }, (_, i) => ({ name: `c${i}`, client: null, slot: i % 3, sessions: new Map(), busy: false }))
  const setup = prng(SEED)
  for (const sim of sims) {
    await connectTo(sim, sim.slot)
    await join(sim, pickFrom(setup, PROJECTS))
  }

  const faults: string[] = []
  let lastFaultEnd = Date.now()
  /** Random faults, one at a time, until `end`; each ends (stall thawed, proxy restored, process restarted) before the next. */
  const injectFaults = async (end: number, random: () => number): Promise<void> => {
    for (;;) {
      // The gap between two faults, and each fault's length, are the faults' timing, not synchronisation.
      await delay(500 + random() * 2000)
      if (Date.now() >= end) return
      const kind = pickFrom(random, ['stall', 'cut', 'flushall', 'restart'] as const)
      const at = ((Date.now() - end + PROPERTY_MS) / 1000).toFixed(1)
      if (kind === 'stall' || kind === 'restart') {
        const index = pickFrom(random, [0, 1])
        const slot = slots[index] as Slot
        if (kind === 'stall') {
          faults.push(`${at}s stall ${slot.instance.name}`)
          stall(slot.instance)
          slot.up = false
          try {
            await delay(LEASE_MS + 1500)
          } finally {
            thaw(slot.instance)
            slot.up = true
          }
        } else {
          faults.push(`${at}s restart ${slot.instance.name}`)
          slot.up = false
          await slot.instance.kill()
          slot.restarts++
          slot.instance = await startProcessInstance(t, `p${index}r${slot.restarts}`, settings)
          slot.up = true
        }
      } else if (kind === 'cut') {
        const ms = 1500 + Math.floor(random() * 2500)
        faults.push(`${at}s cut m2 from Redis for ${ms} ms`)
        proxy.refuse(true)
        proxy.cut()
        try {
          await delay(ms)
        } finally {
          proxy.refuse(false)
        }
      } else {
        faults.push(`${at}s FLUSHALL`)
        await admin.flushAll()
      }
      lastFaultEnd = Date.now()
    }
  }

  const startedAt = Date.now()
  const end = startedAt + PROPERTY_MS
  const faulting = injectFaults(end, prng(SEED + 1))
  const random = prng(SEED + 2)
  const steps: Array<Promise<void>> = []
  while (Date.now() < end) {
    // The pace of the clients: one step every 20 to 120 ms.
    await delay(20 + random() * 100)
    const idle = sims.filter((s) => !s.busy)
    if (idle.length > 0) steps.push(step(pickFrom(random, idle), random))
  }
  await faulting
  await Promise.all(steps)
  const quietAt = Date.now()
  t.comment(`seed ${SEED}: ${steps.length} steps (${[...counts].map(([k, n]) => `${k}: ${n}`).join(', ')})`)
  t.comment(`faults: ${faults.join('; ')}`)

  const instances = slots.map((s) => s.instance)
  const connected: Seat[] = sims.flatMap((sim) => sim.client === null
    ? []
    : [...sim.sessions].map(([project, sessionId]) => ({ name: `${sim.name}@${(slots[sim.slot] as Slot).instance.name}`, client: sim.client as TestClient, project, sessionId, joined: {} as Frame })))
  // Every project is checked, those nobody is in too.
  const projects = PROJECTS
  const bound = RECOVERY_MS + CONVERGE_MS
  let last: string | null = null
  const ok = await waitFor(async () => (last = await divergence(instances, connected, projects)) === null, {
    what: 'every list and view to equal the connected sessions', timeoutMs: bound, intervalMs: 100
  }).then(() => true, () => false)
  const took = Date.now() - quietAt
  if (!ok) {
    t.fail(`seed ${SEED}: not converged ${bound} ms after the last step (the last fault ended ${quietAt - lastFaultEnd} ms before it): ${String(last)}`)
    t.comment(`seed ${SEED}: replay its choices with FLOW_MEMBERSHIP_SEED=${SEED}`)
    return
  }
  t.pass(`${connected.length} sessions of ${new Set(connected.map((s) => s.client)).size} connected clients: every list on every instance and every view equals them`)
  t.comment(`converged ${took} ms after the last step, ${Date.now() - lastFaultEnd} ms after the last fault ended`)
  // And it stays so: a refresh interval later (a reconcile and several reaps on every instance) nothing has moved.
  await delay(REFRESH_MS + 500)
  t.equal(await divergence(instances, connected, projects), null, `seed ${SEED}: still every list and view a refresh interval later`)
})
