import t from 'tap'
import { startRedis, redisClient } from '../helpers/redis.js'
import { startCluster } from '../helpers/cluster.js'
import { connect, type TestClient, type Frame } from '../helpers/client.js'
import { waitFor } from '../helpers/wait.js'
import { ensureBuilt, startEntry } from '../helpers/process.js'

const redis = await startRedis(t)

function seqs (client: TestClient, project: string): number[] {
  return client.received.filter((f) => (f.type === 'op' || f.type === 'ack') && f.project === project).map((f) => f.seq as number)
}

function contiguous (values: number[], from: number, to: number): boolean {
  if (values.length !== to - from + 1) return false
  return values.every((v, i) => v === from + i)
}

t.test('members on different instances see each other join, op and leave', async (t) => {
  const { instances: [i0, i1, i2] } = await startCluster(t, redis.url, 3)
  const ann = await connect(t, `${i0!.ws}?userId=ann`)
  const bob = await connect(t, `${i1!.ws}?userId=bob`)
  await ann.join('board', { presence: { color: 'red' } })
  const bj = await bob.join('board')
  t.same((bj.members as Array<{ userId: string }>).map((m) => m.userId).sort(), ['ann', 'bob'], 'joined lists the member on the other instance')
  const joinEvent = await ann.next('member')
  t.match(joinEvent, { event: 'join', member: { userId: 'bob' } })
  const res = await fetch(`${i2!.http}/projects/board/members`)
  const body = await res.json() as { members: Array<{ userId: string, presence: unknown }> }
  t.same(body.members.map((m) => m.userId).sort(), ['ann', 'bob'], 'a third instance lists both')
  await ann.request({ type: 'op', project: 'board', id: 'o1', data: 'hi' })
  t.match(await bob.next('op'), { seq: 1, id: 'o1', userId: 'ann', data: 'hi' })
  bob.send({ type: 'presence', project: 'board', state: { cursor: 3 } })
  t.match(await ann.next('presence'), { userId: 'bob', state: { cursor: 3 } })
  bob.close()
  t.match(await ann.next((f) => f.type === 'member' && f.event === 'leave'), { member: { userId: 'bob' } })
})

t.test('concurrent senders on three instances share one gapless order', async (t) => {
  const { instances } = await startCluster(t, redis.url, 3)
  const clients = await Promise.all(instances.map(async (s, i) => await connect(t, `${s.ws}?userId=u${i}`)))
  for (const c of clients) await c.join('race')
  const perSender = 100
  const total = perSender * clients.length
  for (let n = 0; n < perSender; n++) {
    clients.forEach((c, i) => { c.send({ type: 'op', project: 'race', id: `u${i}-${n}`, data: n }) })
  }
  for (const c of clients) {
    await waitFor(() => seqs(c, 'race').length >= total, { what: 'every op or ack', timeoutMs: 15_000, intervalMs: 20 })
  }
  clients.forEach((c, i) => {
    t.ok(contiguous(seqs(c, 'race'), 1, total), `client ${i} sees seqs 1..${total} in order, acks included, no gap, no duplicate`)
    const mine = c.received.filter((f) => f.type === 'ack').map((f) => f.id as string)
    t.same(mine, Array.from({ length: perSender }, (_, n) => `u${i}-${n}`), `client ${i}'s acks come in the order it sent`)
  })
})

t.test('a client that reconnects to another instance with since gets exactly what it missed', async (t) => {
  const { instances: [i0, i1, i2] } = await startCluster(t, redis.url, 3)
  const writer = await connect(t, i1!.ws)
  await writer.join('doc')
  const reader = await connect(t, i0!.ws)
  const joined = await reader.join('doc')
  for (let n = 1; n <= 5; n++) await writer.request({ type: 'op', project: 'doc', data: n })
  await waitFor(() => reader.all('op').length === 5, { what: 'five ops', timeoutMs: 5000, intervalMs: 20 })
  const last = reader.all('op').at(-1) as Frame
  reader.close()
  await reader.closed
  for (let n = 6; n <= 12; n++) await writer.request({ type: 'op', project: 'doc', data: n })
  const back = await connect(t, i2!.ws)
  await back.join('doc', { since: last.seq, epoch: joined.epoch })
  await waitFor(() => back.all('op').length >= 7, { what: 'the missed ops', timeoutMs: 5000, intervalMs: 20 })
  await writer.request({ type: 'op', project: 'doc', data: 13 })
  await waitFor(() => back.all('op').length >= 8, { what: 'the live op', timeoutMs: 5000, intervalMs: 20 })
  t.same(back.all('op').map((f) => f.data), [6, 7, 8, 9, 10, 11, 12, 13])
  t.equal(back.all('reset').length, 0)
})

t.test('an idempotent retry sent to another instance is acked with the original seq and not broadcast again', async (t) => {
  const { instances: [i0, i1, i2] } = await startCluster(t, redis.url, 3)
  const a = await connect(t, i0!.ws)
  const b = await connect(t, i1!.ws)
  const watcher = await connect(t, i2!.ws)
  for (const c of [a, b, watcher]) await c.join('idem')
  const first = await a.request({ type: 'op', project: 'idem', id: 'same-id', data: 1 })
  const retry = await b.request({ type: 'op', project: 'idem', id: 'same-id', data: 1 })
  t.equal(retry.seq, first.seq)
  await b.request({ type: 'op', project: 'idem', id: 'marker', data: 2 })
  await watcher.next((f) => f.type === 'op' && f.id === 'marker')
  t.same(watcher.all('op').map((f) => f.id), ['same-id', 'marker'])
})

t.test('an instance subscribes to a project channel only while it has a local member', async (t) => {
  const { instances: [i0], keyPrefix } = await startCluster(t, redis.url, 1)
  const probe = await redisClient(t, redis.url)
  // Project channels only: the instance also subscribes its probe's channel (`<prefix>:probe:i0`) at its first probe.
  const channels = async (): Promise<string[]> => await probe.pubSubChannels(`${keyPrefix}:{*}:ch`)
  const c = await connect(t, i0!.ws)
  await c.join('sub-a')
  t.same(await channels(), [`${keyPrefix}:{sub-a}:ch`])
  await c.request({ type: 'leave', project: 'sub-a' })
  await waitFor(async () => (await channels()).length === 0, { what: 'unsubscribed', timeoutMs: 5000, intervalMs: 20 })
  t.pass('no channel left once the last member left')
})

t.test('history and epoch survive an instance restart', async (t) => {
  const first = await startCluster(t, redis.url, 1)
  const c = await connect(t, first.instances[0]!.ws)
  const joined = await c.join('keep')
  await c.request({ type: 'op', project: 'keep', data: 'a' })
  await first.instances[0]!.close()
  const { startServer } = await import('../helpers/server.js')
  const again = await startServer(t, { redisUrl: redis.url, keyPrefix: first.keyPrefix, useRedisCollaboration: true, useRedisWebsockets: true, useRedisEventOrdering: true })
  const res = await again.app.inject({ url: '/projects/keep/ops?since=0' })
  t.match(res.json(), { epoch: joined.epoch, seq: 1, ops: [{ seq: 1, data: 'a' }], reset: false })
})

t.test('the members of a killed instance leave within the lease time', async (t) => {
  await ensureBuilt()
  const cluster = await startCluster(t, redis.url, 1)
  const doomed = await startEntry(t, {
    REDIS_URL: redis.url,
    FLOW_KEY_PREFIX: cluster.keyPrefix,
    USE_REDIS_COLLABORATION: 'true',
    USE_REDIS_WEBSOCKETS: 'true',
    USE_REDIS_EVENT_ORDERING: 'true'
  })
  const watcher = await connect(t, cluster.instances[0]!.ws, { timeoutMs: 15_000 })
  await watcher.join('crash')
  const victim = await connect(t, `${doomed.ws}?userId=victim`)
  await victim.join('crash')
  await watcher.next((f) => f.type === 'member' && f.event === 'join')
  doomed.proc.child.kill('SIGKILL')
  const started = Date.now()
  const leave = await watcher.next((f) => f.type === 'member' && f.event === 'leave')
  t.match(leave, { member: { userId: 'victim' } })
  t.ok(Date.now() - started < 15_000, `leave arrived after ${Date.now() - started} ms, well within the 30 s session TTL`)
})

const combos = [0, 1, 2, 3, 4, 5, 6, 7].map((n) => ({
  useRedisCollaboration: (n & 1) !== 0,
  useRedisWebsockets: (n & 2) !== 0,
  useRedisEventOrdering: (n & 4) !== 0
}))

for (const flags of combos) {
  const name = `sessions=${flags.useRedisCollaboration ? 'redis' : 'memory'} broadcast=${flags.useRedisWebsockets ? 'redis' : 'memory'} log=${flags.useRedisEventOrdering ? 'redis' : 'memory'}`
  t.test(`starts and serves with ${name}`, async (t) => {
    const { instances: [s] } = await startCluster(t, redis.url, 1, flags)
    const health = (await s!.app.inject({ url: '/health' })).json<{ status: string, seqScope: string, ports: Record<string, { adapter: string }> }>()
    t.equal(health.status, 'ok')
    t.equal(health.seqScope, flags.useRedisEventOrdering ? 'cluster' : 'instance', 'seqs are cluster-wide only with the op log on Redis')
    t.same(Object.fromEntries(Object.entries(health.ports).map(([k, v]) => [k, v.adapter])), {
      sessions: flags.useRedisCollaboration ? 'redis' : 'memory',
      broadcaster: flags.useRedisWebsockets ? 'redis' : 'memory',
      log: flags.useRedisEventOrdering ? 'redis' : 'memory'
    })
    const a = await connect(t, s!.ws)
    const b = await connect(t, s!.ws)
    await a.join('combo')
    await b.join('combo')
    const ack = await a.request({ type: 'op', project: 'combo', data: 1 })
    t.equal(ack.seq, 1)
    t.match(await b.next('op'), { seq: 1, data: 1 })
  })
}

t.test('a mixed fleet mid-migration (one instance on the Redis log, one not yet) carries every op both ways, once', async (t) => {
  const { startServer } = await import('../helpers/server.js')
  const { keyPrefix } = await startCluster(t, redis.url, 0)
  const common = { redisUrl: redis.url, keyPrefix, useRedisCollaboration: true, useRedisWebsockets: true }
  const old = await startServer(t, { ...common, instanceId: 'old', useRedisEventOrdering: false })
  const upgraded = await startServer(t, { ...common, instanceId: 'new', useRedisEventOrdering: true })
  const a = await connect(t, `${old.ws}?userId=a`)
  const b = await connect(t, `${upgraded.ws}?userId=b`)
  await a.join('mix')
  await b.join('mix')
  for (let n = 0; n < 20; n++) {
    a.send({ type: 'op', project: 'mix', id: `a${n}`, data: n })
    b.send({ type: 'op', project: 'mix', id: `b${n}`, data: n })
  }
  await waitFor(() => a.all('op').length >= 20 && b.all('op').length >= 20, { what: 'every op on both sides', timeoutMs: 10_000, intervalMs: 20 })
  t.same(a.all('op').map((f) => f.id).sort(), Array.from({ length: 20 }, (_, n) => `b${n}`).sort(), 'the old instance delivers every op of the new one, once')
  t.same(b.all('op').map((f) => f.id).sort(), Array.from({ length: 20 }, (_, n) => `a${n}`).sort(), 'the new instance delivers every op of the old one, once')
  t.ok(contiguous(seqs(a, 'mix'), 1, 40), 'seqs on the old instance are its own, gapless')
  t.ok(contiguous(seqs(b, 'mix'), 1, 40), 'seqs on the new instance are the shared log\'s, gapless')
  t.equal(a.all('reset').length + b.all('reset').length, 0, 'nobody is reset')
})
