/**
 * Flow on Redis Sentinel (REDIS_SENTINELS, REDIS_SENTINEL_NAME): two
 * instances with the three Redis flags on, connected through three real
 * sentinels to a primary with one replica; clients keep writing while the
 * primary is killed and the sentinels promote the replica. Replication is
 * asynchronous, so ops the old primary acked may be lost: the protocol's rule
 * is that a loss shows as an epoch change (`reset`), never as a silent gap or
 * one (epoch, seq) naming two ops.
 */
import t, { type Test } from 'tap'
import { startServer, type TestServer } from '../helpers/server.js'
import { connect, type Frame } from '../helpers/client.js'
import { createTraffic, type Sender } from '../helpers/traffic.js'
import { startSentinelGroup } from '../helpers/sentinel.js'
import { redisClient, uniquePrefix } from '../helpers/redis.js'
import { waitFor } from '../helpers/wait.js'
import { readLog } from '../helpers/cluster.js'

const PROJECT = 'doc'
// The default command timeout (1 s): a shorter one trips on a loaded test machine as if Redis were away.
const KNOBS = { redisProbeIntervalMs: 200 }

interface Health {
  readonly status: string
  readonly redis: { readonly primary?: string | null, readonly lastError: string | null }
  readonly ports: Record<'sessions' | 'broadcaster' | 'log', { readonly circuit: string | null, readonly serving: string }>
}

async function health (s: TestServer): Promise<Health> {
  return (await s.app.inject({ url: '/health' })).json<Health>()
}

async function waitStatus (instances: readonly TestServer[], status: 'ok' | 'degraded', what: string, timeoutMs = 30_000): Promise<Health[]> {
  let reports: Health[] = []
  await waitFor(async () => {
    reports = await Promise.all(instances.map(health))
    return reports.every((h) => h.status === status)
  }, { what: `/health to say ${status} on every instance ${what}`, timeoutMs, intervalMs: 20 }).catch((err: unknown) => {
    const last = reports.map((h) => ({ status: h.status, redis: h.redis, ports: Object.values(h.ports).map((p) => `${String(p.circuit)}/${p.serving}`) }))
    throw new Error(`${String(err)}; the last reports: ${JSON.stringify(last)}`)
  })
  return reports
}

/** What one client saw of one epoch: from `joined` or a `reset`, the ops and acks that followed. */
interface Segment {
  readonly epoch: string
  readonly base: number
  readonly frames: Frame[]
}

function segments (sender: Sender): Segment[] {
  const out: Segment[] = []
  for (const f of sender.client.received) {
    if (f.project !== sender.project) continue
    if (f.type === 'joined' || f.type === 'reset') out.push({ epoch: f.epoch as string, base: f.seq as number, frames: [] })
    if (f.type === 'op' || f.type === 'ack') out.at(-1)?.frames.push(f)
  }
  return out
}

/**
 * Two instances on the group, four clients writing; the primary is killed
 * (after ops it alone acked when `loseAcked`: the replicas are frozen for
 * them) and a replica promoted. With `durable` (FLOW_ACK_DURABILITY=replica,
 * two replicas so one is left to confirm writes after the failover) no op
 * is acked while the replicas are frozen. Checks the protocol's rules
 * afterwards.
 */
async function failover (t: Test, loseAcked: boolean, durable = false): Promise<void> {
  const group = await startSentinelGroup(t, { replicas: durable ? 2 : 1 })
  const keyPrefix = uniquePrefix()
  const flags = {
    ...(durable ? { ackDurability: 'replica' as const } : {}),
    redisSentinels: group.sentinels,
    redisSentinelName: group.name,
    keyPrefix,
    useRedisCollaboration: true,
    useRedisWebsockets: true,
    useRedisEventOrdering: true,
    ...KNOBS
  }
  const a = await startServer(t, { ...flags, instanceId: 'a' })
  const b = await startServer(t, { ...flags, instanceId: 'b' })
  const atStart = await waitStatus([a, b], 'ok', 'at start')
  t.same(atStart.map((h) => h.redis.primary), [`127.0.0.1:${group.primary.port}`, `127.0.0.1:${group.primary.port}`], '/health names the primary in use')

  const tr = await createTraffic(t, [a.ws, b.ws], 2, { project: PROJECT, window: 4, intervalMs: 10 })
  const joined = new Set(tr.senders.map((s) => s.joined?.epoch as string))
  t.equal(joined.size, 1, 'every client joined one epoch: the Redis log')
  tr.start()
  await tr.acked(15, 'before the failover', 20_000)

  if (loseAcked) {
    // The replicas frozen for a moment (well under down-after-milliseconds, so the sentinels still
    // promote one) and cut off: what the primary acks now never reaches them.
    const primary = await redisClient(t, group.primary.url)
    for (const r of group.replicas) r.stop()
    await primary.sendCommand(['CLIENT', 'KILL', 'TYPE', 'replica'])
    if (durable) {
      await waitFor(() => tr.senders.some((s) => s.unavailable > 0), { what: 'an op to be refused while no replica confirms', timeoutMs: 10_000, intervalMs: 20 })
    } else {
      await tr.acked(3, 'while the replica is cut off')
    }
  }
  await group.primary.kill()
  if (loseAcked) for (const r of group.replicas) r.cont()
  await waitStatus([a, b], 'degraded', 'once the primary is gone')
  t.pass('both instances serve from memory while there is no primary')
  await tr.acked(5, 'while there is no primary', 20_000)
  let promoted = 0
  await waitFor(async () => {
    promoted = await group.primaryPort().catch(() => 0)
    return group.replicas.some((r) => r.port === promoted)
  }, { what: 'the sentinels to promote a replica', timeoutMs: 30_000, intervalMs: 100 })
  // With two replicas both frozen, the sentinels may promote one and then the other (a second failover):
  // the instances must end on whichever primary the sentinels name once they settle.
  let reports: Health[] = []
  await waitFor(async () => {
    reports = await waitStatus([a, b], 'ok', 'after the failover', 45_000)
    promoted = await group.primaryPort().catch(() => 0)
    return reports.every((h) => h.redis.primary === `127.0.0.1:${promoted}`)
  }, { what: 'both instances to be on the primary the sentinels name', timeoutMs: 60_000, intervalMs: 200 })
  t.ok(group.replicas.some((r) => r.port === promoted), 'the primary is a promoted replica')
  for (const [i, h] of reports.entries()) {
    t.same(Object.values(h.ports).map((p) => [p.circuit, p.serving]), [['closed', 'redis'], ['closed', 'redis'], ['closed', 'redis']],
      `instance ${i === 0 ? 'a' : 'b'}: every port is back on Redis`)
    t.equal(h.redis.primary, `127.0.0.1:${promoted}`, `instance ${i === 0 ? 'a' : 'b'} is on the promoted replica`)
  }
  await tr.acked(15, 'after the failover', 20_000)
  await tr.stop()

  const [logA, logB] = await Promise.all([readLog(a, PROJECT), readLog(b, PROJECT)])
  t.same(logB, logA, 'both instances serve the same history')
  const log = logA
  t.ok(log.ops.every((o, i) => o.seq === i + 1) && log.head === log.ops.length, `seqs are contiguous 1..${log.head}`)
  const count = new Map<string, number>()
  for (const o of log.ops) count.set(o.id, (count.get(o.id) ?? 0) + 1)
  t.same([...count].filter(([, n]) => n > 1), [], 'no op is in the log twice')

  // Every acked op is in the log, or its sender saw the epoch change after the ack.
  const unannounced: string[] = []
  let lost = 0
  for (const s of tr.senders) {
    const all = segments(s)
    for (const [i, seg] of all.entries()) {
      const changedAfter = all.slice(i + 1).some((later) => later.epoch !== seg.epoch)
      for (const f of seg.frames) {
        if (f.type !== 'ack' || count.has(f.id as string)) continue
        lost++
        if (!changedAfter) unannounced.push(`${s.name}: ${String(f.id)} (epoch ${seg.epoch}, seq ${String(f.seq)})`)
      }
    }
  }
  t.same(unannounced, [], 'every acked op missing from the log was followed by an epoch change for its sender')
  t.comment(`${log.head} ops in the log; ${lost} acks of ops the failover lost (asynchronous replication)`)

  // One (epoch, seq) never names two ops, in what any client saw or in the log.
  const named = new Map<string, string>()
  const conflicts: string[] = []
  const name = (epoch: string, seq: number, id: string, who: string): void => {
    const key = `${epoch}/${seq}`
    const before = named.get(key)
    if (before === undefined) named.set(key, id)
    else if (before !== id) conflicts.push(`${key}: ${before} and ${id} (${who})`)
  }
  for (const o of log.ops) name(log.epoch, o.seq, o.id, 'log')
  for (const s of tr.senders) {
    for (const seg of segments(s)) for (const f of seg.frames) name(seg.epoch, f.seq as number, f.id as string, s.name)
  }
  // The promoted replica holds the log's meta with the old epoch and a lower head: the instances, which saw the
  // lost seqs, move the log to a new epoch before appending (adapters/redis/watermarks.ts).
  t.same(conflicts, [], 'no (epoch, seq) names two different ops: a loss comes with a new epoch, never a silent gap')
  if (durable) {
    t.equal(lost, 0, 'with durable acks no acked op was lost')
    t.ok(tr.senders.reduce((n, s) => n + s.unavailable, 0) > 0, 'ops the replicas could not confirm were answered unavailable and sent again')
  } else if (loseAcked) {
    t.ok(lost > 0, 'the failover lost the ops only the old primary had')
    t.not(log.epoch, segments(tr.senders[0] as Sender)[0]?.epoch, 'the log is in another epoch than the one the clients joined')
    const fences = await Promise.all([a, b].map(async (s) => (await s.app.inject({ url: '/ws/stats' })).json<{ logFences: number }>().logFences))
    t.ok(fences.reduce((x, y) => x + y, 0) >= 1, `/ws/stats counts the fence (logFences: ${fences.join(', ')})`)
  }

  // Every client ends in the log's epoch, at its head.
  await waitFor(() => tr.senders.every((s) => {
    const last = segments(s).at(-1)
    return last !== undefined && last.epoch === log.epoch && Math.max(last.base, ...last.frames.map((f) => f.seq as number)) >= log.head
  }), { what: 'every client to reach the head in the log\'s epoch', timeoutMs: 10_000, intervalMs: 20 })
  t.pass('every client ends in the log\'s epoch, at its head')

  // A newcomer on either instance joins at the same head.
  const joins = await Promise.all([a, b].map(async (s) => await (await connect(t, `${s.ws}?userId=late-${s === a ? 'a' : 'b'}`)).join(PROJECT)))
  t.same(joins.map((j) => [j.epoch, j.seq]), [[log.epoch, log.head], [log.epoch, log.head]], 'a newcomer on either instance joins at the log\'s epoch and head')
}

t.test('on Sentinel, a killed primary is an outage the instances ride out, then they follow the promoted replica', async (t) => {
  await failover(t, false)
})

t.test('ops the old primary acked but never replicated are lost, and every client that saw them gets reset', async (t) => {
  await failover(t, true)
})

t.test('with durable acks (FLOW_ACK_DURABILITY=replica) the same failover loses no acked op', async (t) => {
  await failover(t, true, true)
})

t.test('with no sentinel reachable, the server starts at once, degraded, and serves from memory', async (t) => {
  // A sentinel address nobody listens on: boot must not wait for it.
  const app = await startServer(t, {
    redisSentinels: '127.0.0.1:1', redisSentinelName: 'nobody', keyPrefix: uniquePrefix(), redisConnectWaitMs: 200,
    useRedisEventOrdering: true, ...KNOBS
  })
  const h = await health(app)
  t.equal(h.status, 'degraded', 'boot went on without Redis')
  t.equal(h.ports.log.serving, 'memory')
  t.equal(h.redis.primary, null, '/health: no primary connected')
  const c = await connect(t, `${app.ws}?userId=u`)
  await c.join(PROJECT)
  const ack = await c.request({ type: 'op', project: PROJECT, data: 1 })
  t.equal(ack.type, 'ack', 'ops are acked from memory meanwhile')
})
