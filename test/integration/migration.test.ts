/**
 * What docs/migration.md says of the stages, checked on real instances and
 * one real Redis: stage 1 (sessions only on Redis) and rolling back and
 * forth stage 3 (the op log on Redis).
 */
import t from 'tap'
import { startRedis } from '../helpers/redis.js'
import { startCluster } from '../helpers/cluster.js'
import { startServer } from '../helpers/server.js'
import { connect, type Frame } from '../helpers/client.js'
import { ensureBuilt, startEntry } from '../helpers/process.js'

const redis = await startRedis(t)

/** Stage 1: sessions on Redis, broadcasting and the op log in memory. A 3 s session TTL: a refresh every second. */
const STAGE_1 = { useRedisCollaboration: true, useRedisWebsockets: false, useRedisEventOrdering: false, sessionTtlSeconds: 3 }

const isMember = (event: string, userId: string) => (f: Frame): boolean =>
  f.type === 'member' && f.event === event && (f.member as { userId: string }).userId === userId

t.test('stage 1: members on other instances are listed at once and announced (join, presence, leave) at the next session refresh', async (t) => {
  const { instances: [i0, i1] } = await startCluster(t, redis.url, 2, STAGE_1)
  const ann = await connect(t, `${i0!.ws}?userId=ann`, { timeoutMs: 10_000 })
  const bob = await connect(t, `${i1!.ws}?userId=bob`, { timeoutMs: 10_000 })
  await ann.join('stage1')
  const joined = await bob.join('stage1')
  t.same((joined.members as Array<{ userId: string }>).map((m) => m.userId).sort(), ['ann', 'bob'], 'joined lists the member of the other instance')
  t.match(await ann.next(isMember('join', 'bob')), { member: { userId: 'bob' } }, 'the join crosses at the refresh')
  bob.send({ type: 'presence', project: 'stage1', state: { cursor: 7 } })
  t.match(await ann.next('presence'), { userId: 'bob', state: { cursor: 7 } }, 'a presence change crosses at the refresh')
  await ann.request({ type: 'op', project: 'stage1', id: 's1-op', data: 1 })
  bob.close()
  t.match(await ann.next(isMember('leave', 'bob')), { member: { userId: 'bob' } }, 'the leave crosses at the refresh')
  t.equal(bob.all('op').length, 0, 'ops do not cross: the broadcaster is local')
})

t.test('stage 1: the members of a crashed instance leave for the members of the others', async (t) => {
  await ensureBuilt()
  const { instances: [survivor], keyPrefix } = await startCluster(t, redis.url, 1, STAGE_1)
  const doomed = await startEntry(t, { REDIS_URL: redis.url, FLOW_KEY_PREFIX: keyPrefix, USE_REDIS_COLLABORATION: 'true', SESSION_TTL_SECONDS: '3' })
  const watcher = await connect(t, `${survivor!.ws}?userId=watcher`, { timeoutMs: 15_000 })
  await watcher.join('stage1-crash')
  const victim = await connect(t, `${doomed.ws}?userId=victim`)
  await victim.join('stage1-crash')
  await watcher.next(isMember('join', 'victim'))
  doomed.proc.child.kill('SIGKILL')
  t.match(await watcher.next(isMember('leave', 'victim')), { member: { userId: 'victim' } })
})

t.test('re-enabling ordering after a rollback resumes the Redis log: its epoch and head, without the ops of the memory period', async (t) => {
  const { keyPrefix } = await startCluster(t, redis.url, 0)
  const flags = { redisUrl: redis.url, keyPrefix, instanceId: 'r0', useRedisCollaboration: true, useRedisWebsockets: true }

  // Stage 3: two ops in the Redis log.
  const stage3 = await startServer(t, { ...flags, useRedisEventOrdering: true })
  const a = await connect(t, stage3.ws)
  const first = await a.join('rollback')
  await a.request({ type: 'op', project: 'rollback', id: 'r-1', data: 1 })
  await a.request({ type: 'op', project: 'rollback', id: 'r-2', data: 2 })
  const redisEpoch = first.epoch as string
  a.close()
  await stage3.close()

  // Rolled back to stage 2: the instance's own log, a new epoch.
  const stage2 = await startServer(t, { ...flags, useRedisEventOrdering: false })
  const b = await connect(t, stage2.ws)
  await b.join('rollback', { since: 2, epoch: redisEpoch })
  const toMemory = await b.next('reset')
  t.not(toMemory.epoch, redisEpoch, 'the rollback starts another epoch: reset')
  for (const n of [3, 4, 5]) await b.request({ type: 'op', project: 'rollback', id: `m-${n}`, data: n })
  const memoryEpoch = toMemory.epoch as string
  b.close()
  await stage2.close()

  // Stage 3 again: the Redis log is where it was.
  const again = await startServer(t, { ...flags, useRedisEventOrdering: true })
  const c = await connect(t, again.ws)
  const joined = await c.join('rollback', { since: 3, epoch: memoryEpoch })
  t.match(joined, { epoch: redisEpoch, seq: 2 }, 'the old Redis epoch and head come back')
  t.match(await c.next('reset'), { epoch: redisEpoch, seq: 2 }, 'a position of the memory period gets reset to it')
  const old = await connect(t, again.ws)
  await old.join('rollback', { since: 1, epoch: redisEpoch })
  t.match(await old.next('op'), { seq: 2, id: 'r-2' }, 'a position from before the rollback is replayed from, without reset')
  t.equal(old.all('reset').length, 0)
  const history = await (await fetch(`${again.http}/projects/rollback/ops?since=0`)).json() as { epoch: string, ops: Array<{ id: string }> }
  t.equal(history.epoch, redisEpoch)
  t.same(history.ops.map((op) => op.id), ['r-1', 'r-2'], 'the ops of the memory period are not in the Redis log')
})
