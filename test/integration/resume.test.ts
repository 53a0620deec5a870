/**
 * Silent resume across instances (docs/protocol.md, "Changes in 1.3"): two
 * instances share Redis (all three flags on); a session that drops on one
 * and comes back with its token on the other resumes with no leave and no
 * join for anyone, and one that does not come back leaves after its grace.
 */
import { setTimeout as delay } from 'node:timers/promises'
import t from 'tap'
import { startRedis } from '../helpers/redis.js'
import { startCluster } from '../helpers/cluster.js'
import { connect, type TestClient } from '../helpers/client.js'
import { until } from '../helpers/protocol.js'
import { listMembers } from '../helpers/members.js'
import type { Member } from '../../lib/types.js'

const redis = await startRedis(t)
const GRACE_MS = 800
const FEATURES = ['member_batch', 'member_page', 'resume']

/** Member events a client received, from `member` and `members` frames alike. */
function eventsOf (client: TestClient): Array<{ event: string, sessionId: string }> {
  const out: Array<{ event: string, sessionId: string }> = []
  for (const f of client.received) {
    if (f.type === 'member') out.push({ event: f.event as string, sessionId: (f.member as Member).sessionId })
    if (f.type === 'members') {
      for (const e of f.events as Array<{ event: string, member: Member }>) out.push({ event: e.event, sessionId: e.member.sessionId })
    }
  }
  return out
}

t.test('a session dropped on one instance resumes on the other silently', async (t) => {
  const { instances: [i0, i1] } = await startCluster(t, redis.url, 2, { resumeGraceMs: GRACE_MS })
  const w0 = await connect(t, `${i0!.ws}?userId=w0`)
  const w1 = await connect(t, `${i1!.ws}?userId=w1`)
  await w0.join('doc')
  await w1.join('doc', { features: ['member_batch'] })
  const alice = await connect(t, `${i0!.ws}?userId=alice`)
  const aj = await alice.join('doc', { features: FEATURES, presence: { color: 'red' } })
  const token = aj.resume as string
  await until(w0, () => eventsOf(w0).length === 2, 'w0 hears w1 and alice')
  await until(w1, () => eventsOf(w1).length === 1, 'w1 hears alice')

  alice.socket.terminate()
  const back = await connect(t, `${i1!.ws}?userId=alice`)
  const bj = await back.join('doc', { features: FEATURES, resume: token })
  t.equal(bj.resumed, true, 'resumed on the other instance')
  t.equal(bj.sessionId, aj.sessionId, 'the same session')
  t.same((bj.members as Member[]).find((m) => m.sessionId === aj.sessionId)?.presence, { color: 'red' }, 'with its presence')
  // Past the grace the first instance had: it let the session go when it heard the join.
  await delay(GRACE_MS * 2)
  await back.request({ type: 'op', project: 'doc', id: 'after', data: 1 })
  await until(w0, () => w0.all('op').length === 1, 'w0 gets the op')
  await until(w1, () => w1.all('op').length === 1, 'w1 gets the op')
  t.same(eventsOf(w0).filter((e) => e.sessionId === aj.sessionId).map((e) => e.event), ['join'], 'w0: no leave, no second join')
  t.same(eventsOf(w1).filter((e) => e.sessionId === aj.sessionId).map((e) => e.event), ['join'], 'w1: no leave, no second join')
  for (const instance of [i0!, i1!]) {
    const listed = await listMembers(instance.http, 'doc')
    t.equal(listed.filter((m) => m.sessionId === aj.sessionId).length, 1, 'listed once')
  }
  back.send({ type: 'presence', project: 'doc', state: { color: 'blue' } })
  await until(w0, () => w0.all('presence').length === 1, 'presence after the resume reaches the other instance')
  t.same((await listMembers(i0!.http, 'doc')).find((m) => m.sessionId === aj.sessionId)?.presence, { color: 'blue' },
    'and is stored (a newer presence version than the old holder\'s)')
})

t.test('a dropped session that does not come back leaves after its grace, on every instance', async (t) => {
  const { instances: [i0, i1] } = await startCluster(t, redis.url, 2, { resumeGraceMs: GRACE_MS })
  const w1 = await connect(t, `${i1!.ws}?userId=w1`)
  await w1.join('doc')
  const alice = await connect(t, `${i0!.ws}?userId=alice`)
  const aj = await alice.join('doc', { features: FEATURES })
  await until(w1, () => eventsOf(w1).length === 1, 'w1 hears alice')
  const thief = await connect(t, `${i1!.ws}?userId=mallory`)
  alice.socket.terminate()
  const tj = await thief.join('doc', { features: FEATURES, resume: aj.resume })
  t.equal(tj.resumed, false, 'another user with the token gets a fresh session')
  const started = Date.now()
  const leave = await until(w1, () => w1.all('member').find((f) => f.event === 'leave'), 'the leave', 5000)
  t.equal((leave.member as Member).sessionId, aj.sessionId)
  t.ok(Date.now() - started >= GRACE_MS / 2, `after the grace (${Date.now() - started} ms)`)
  t.notOk((await listMembers(i1!.http, 'doc')).some((m) => m.sessionId === aj.sessionId), 'no longer listed')
})

t.test('a deploy: the instance shuts down, its clients resume on the other one silently', async (t) => {
  const { instances: [i0, i1] } = await startCluster(t, redis.url, 2, { resumeGraceMs: GRACE_MS })
  const w1 = await connect(t, `${i1!.ws}?userId=w1`)
  await w1.join('doc')
  const clients = await Promise.all(['a', 'b', 'c'].map(async (name) => {
    const client = await connect(t, `${i0!.ws}?userId=${name}`)
    return { name, client, joined: await client.join('doc', { features: FEATURES }) }
  }))
  const v1 = await connect(t, `${i0!.ws}?userId=old`)
  const oj = await v1.join('doc')
  await until(w1, () => eventsOf(w1).length === 4, 'w1 hears the four')
  await i0!.close()
  t.equal((await v1.closed).code, 1001)
  const back = await Promise.all(clients.map(async ({ name, joined }) => {
    const client = await connect(t, `${i1!.ws}?userId=${name}`)
    return await client.join('doc', { features: FEATURES, resume: joined.resume })
  }))
  t.same(back.map((j) => j.resumed), [true, true, true], 'every resume client resumed')
  t.same(back.map((j) => j.sessionId), clients.map((c) => c.joined.sessionId), 'with its session')
  await until(w1, () => eventsOf(w1).some((e) => e.event === 'leave'), 'the v1 client\'s leave')
  // Past the lease and the grace: nobody reaps the resumed sessions.
  await delay(Math.max(GRACE_MS, 5000) + 1500)
  const leaves = eventsOf(w1).filter((e) => e.event === 'leave').map((e) => e.sessionId)
  t.same(leaves, [oj.sessionId], 'only the v1 client left')
  t.equal(eventsOf(w1).filter((e) => e.event === 'join').length, 4, 'no second join')
  t.equal((await listMembers(i1!.http, 'doc')).length, 4, 'w1 and the three resumed')
})
