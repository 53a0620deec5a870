/**
 * Joins that scale with room size (docs/protocol.md, "Changes in 1.3"):
 * member events coalesced per turn, paged member lists and silent resume,
 * each for the clients that ask for it; a version 1 client sees what it
 * always saw.
 */
import t, { type Test } from 'tap'
import { startServer } from '../helpers/server.js'
import { connect, type Frame, type TestClient } from '../helpers/client.js'
import { fetchMembers, membersOf, until } from '../helpers/protocol.js'
import type { Member } from '../../lib/types.js'

const ALL = ['member_batch', 'member_page', 'resume']

/** Member events a client received about a project, from `member` and `members` frames alike. */
function eventsOf (client: TestClient, project = 'doc'): Array<{ event: string, sessionId: string }> {
  const out: Array<{ event: string, sessionId: string }> = []
  for (const f of client.received) {
    if (f.project !== project) continue
    if (f.type === 'member') out.push({ event: f.event as string, sessionId: (f.member as Member).sessionId })
    if (f.type === 'members') {
      for (const e of f.events as Array<{ event: string, member: Member }>) out.push({ event: e.event, sessionId: e.member.sessionId })
    }
  }
  return out
}

/** Blocks this process (and the server in it) so that frames sent meanwhile are read in one turn. */
function block (ms: number): void {
  const end = Date.now() + ms
  while (Date.now() < end) { /* busy */ }
}

/** Sends an op and waits until `client` has it: every frame sent to `client` before it has arrived. */
async function barrier (sender: TestClient, client: TestClient, project = 'doc'): Promise<void> {
  const id = `b${Math.random().toString(36).slice(2)}`
  await sender.request({ type: 'op', project, id, data: null })
  await until(client, () => client.received.some((f) => f.type === 'op' && f.id === id), `op ${id}`)
}

t.test('member events of one turn reach a batching member as one frame; a v1 member gets one member frame each', async (t) => {
  const server = await startServer(t)
  const batching = await connect(t, server.ws + '?userId=batching')
  const v1 = await connect(t, server.ws + '?userId=v1')
  await batching.join('doc', { features: ['member_batch'] })
  await v1.join('doc')
  await until(batching, () => batching.all('members').length === 1, 'the batcher hears the v1 member')
  batching.received.length = 0
  const joiners = await Promise.all(Array.from({ length: 20 }, async (_, i) => await connect(t, `${server.ws}?userId=j${i}`)))
  const joined = joiners.map(async (c) => await c.join('doc'))
  block(300)
  const sessions = (await Promise.all(joined)).map((j) => j.sessionId as string)
  await barrier(joiners[0] as TestClient, batching)
  await barrier(joiners[0] as TestClient, v1)
  const frames = batching.all('members')
  t.equal(batching.all('member').length, 0, 'the batching member gets no member frame')
  t.equal(frames.length, 1, `one members frame for the turn (got ${frames.length})`)
  t.same(eventsOf(batching).map((e) => e.sessionId).sort(), [...sessions].sort(), 'every join, once')
  t.ok(eventsOf(batching).every((e) => e.event === 'join'))
  t.same(Object.keys(frames[0] as Frame).sort(), ['events', 'project', 'type'])
  t.equal(v1.all('members').length, 0, 'the v1 member gets no members frame')
  t.equal(v1.all('member').length, 20, 'the v1 member gets one member frame per join')
  t.same(eventsOf(v1).map((e) => e.sessionId).sort(), [...sessions].sort())

  // Leaves coalesce the same way.
  for (const c of joiners.slice(0, 10)) c.socket.terminate()
  block(300)
  await until(batching, () => eventsOf(batching).filter((e) => e.event === 'leave').length === 10, '10 leaves')
  t.ok(batching.all('members').length <= 3, `the leaves came in few frames (${batching.all('members').length - 1})`)
  t.same(batching.all('member'), [])
  await until(v1, () => v1.all('member').filter((f) => f.event === 'leave').length === 10, '10 leave frames')
})

t.test('a batching member is sent no event about itself and none from before its joined', async (t) => {
  const server = await startServer(t)
  const alice = await connect(t, server.ws + '?userId=alice')
  const bob = await connect(t, server.ws + '?userId=bob')
  const aj = await alice.join('doc', { features: ['member_batch'] })
  const bj = await bob.join('doc', { features: ['member_batch'] })
  t.same(membersOf(bj).map((m) => m.sessionId).sort(), [aj.sessionId, bj.sessionId].sort())
  await until(alice, () => eventsOf(alice).length === 1, 'alice hears bob')
  t.same(eventsOf(alice), [{ event: 'join', sessionId: bj.sessionId }])
  // Presence after a join in the same turn: the join comes first.
  const carol = await connect(t, server.ws + '?userId=carol')
  const cj = await carol.join('doc', { features: ['member_batch'] })
  carol.send({ type: 'presence', project: 'doc', state: { x: 1 } })
  await until(bob, () => bob.all('presence').length === 1, 'bob gets carol presence')
  const order = bob.received.filter((f) => f.type === 'members' || f.type === 'presence').map((f) => f.type)
  t.same(order, ['members', 'presence'], 'the join before the presence')
  await barrier(alice, bob)
  t.same(eventsOf(bob), [{ event: 'join', sessionId: cj.sessionId }], 'bob: nothing about himself, nothing before his joined')
  t.same(eventsOf(carol), [], 'carol learns of herself and the others from joined')
})

t.test('joined carries the count and the first FLOW_JOINED_MEMBERS_MAX members; the rest come by list_members', async (t) => {
  const server = await startServer(t, { joinedMembersMax: 3 })
  const others = await Promise.all(Array.from({ length: 7 }, async (_, i) => await connect(t, `${server.ws}?userId=u${i}`)))
  const ids: string[] = []
  for (const c of others) ids.push((await c.join('doc')).sessionId as string)
  const pager = await connect(t, server.ws + '?userId=pager')
  const pj = await pager.join('doc', { features: ['member_page'] })
  ids.push(pj.sessionId as string)
  t.equal(pj.count, 8, 'the count')
  t.equal(membersOf(pj).length, 3, 'the first three')
  t.type(pj.next, 'string', 'a cursor for the rest')
  t.equal(new Set(membersOf(pj).map((m) => m.sessionId)).size, 3, 'three members')
  const seen = [...membersOf(pj)]
  let next = pj.next as string | null
  let pages = 0
  while (next !== null) {
    const page = await pager.request({ type: 'list_members', project: 'doc', after: next })
    t.equal(page.type, 'member_page')
    t.equal(page.count, 8)
    t.ok(membersOf(page).length <= 3)
    seen.push(...membersOf(page))
    next = page.next as string | null
    pages++
  }
  t.equal(pages, 2, 'two more pages')
  // Join order: joinedAt, then sessionId for two joins of one millisecond.
  const order = [...seen].sort((a, b) => a.joinedAt - b.joinedAt || (a.sessionId < b.sessionId ? -1 : 1)).map((m) => m.sessionId)
  t.same(seen.map((m) => m.sessionId), order, 'in join order')
  t.same([...order].sort(), [...ids].sort(), 'every member once')
  const big = await pager.request({ type: 'list_members', project: 'doc', limit: 100 })
  t.same(membersOf(big).map((m) => m.sessionId), order, 'a larger limit takes the whole list')
  t.equal(big.next, null)

  // A member who leaves between pages does not shift the cursor.
  const first = await pager.request({ type: 'list_members', project: 'doc', limit: 2 })
  others[ids.indexOf(order[2] as string)]?.close()
  await until(pager, () => pager.all('member').some((f) => f.event === 'leave'), 'the leave')
  const second = await pager.request({ type: 'list_members', project: 'doc', limit: 2, after: first.next })
  t.same(membersOf(second).map((m) => m.sessionId), [order[3], order[4]], 'the page goes on after the cursor')
  t.equal(second.count, 7)

  const v1 = await connect(t, server.ws + '?userId=v1')
  const vj = await v1.join('doc')
  t.equal(membersOf(vj).length, 8, 'a v1 client gets the whole list')
  t.notOk('count' in vj || 'next' in vj || 'resume' in vj, 'and no 1.3 field')

  const bad = await pager.request({ type: 'list_members', project: 'doc', after: 'nonsense' })
  t.match(bad, { type: 'error', code: 'bad_request' })
  const notJoined = await v1.request({ type: 'list_members', project: 'elsewhere' })
  t.match(notJoined, { type: 'error', code: 'not_joined' })

  // Over HTTP: the whole list without parameters, pages with them.
  t.equal((await fetchMembers(server, 'doc')).length, 8)
  const res = await fetch(`${server.http}/projects/doc/members?limit=5`)
  const page = await res.json() as { members: Member[], count: number, next: string }
  t.equal(page.count, 8)
  t.equal(page.members.length, 5)
  const rest = await (await fetch(`${server.http}/projects/doc/members?after=${encodeURIComponent(page.next)}`)).json() as { members: Member[], next: string | null }
  t.equal(rest.members.length, 3)
  t.equal(rest.next, null)
  t.equal((await fetch(`${server.http}/projects/doc/members?after=x`)).status, 400)
})

/** Connects `userId`, joins with every 1.3 feature (and the token when given). */
async function joinAll (t: Test, ws: string, userId: string, resume?: string): Promise<{ client: TestClient, joined: Frame }> {
  const client = await connect(t, `${ws}?userId=${userId}`)
  const joined = await client.join('doc', { features: ALL, ...(resume === undefined ? {} : { resume }) })
  return { client, joined }
}

t.test('a session that drops and comes back with its resume token resumes silently', async (t) => {
  const server = await startServer(t, { resumeGraceMs: 5000 })
  const v1 = await connect(t, server.ws + '?userId=watcher')
  await v1.join('doc')
  const batching = await connect(t, server.ws + '?userId=batcher')
  await batching.join('doc', { features: ['member_batch'] })
  const first = await joinAll(t, server.ws, 'alice')
  const token = first.joined.resume as string
  t.type(token, 'string', 'joined carries a resume token')
  t.equal(first.joined.resumed, false)
  t.not(token, first.joined.sessionId, 'the token is not the public session id')
  await until(v1, () => v1.all('member').length === 2, 'the watcher hears the batcher and alice join')
  t.notOk(JSON.stringify(v1.received).includes(token), 'nobody else ever sees the token')
  t.notOk(JSON.stringify(await fetchMembers(server, 'doc')).includes(token))

  first.client.socket.terminate()
  const again = await joinAll(t, server.ws, 'alice', token)
  t.equal(again.joined.resumed, true, 'resumed')
  t.equal(again.joined.sessionId, first.joined.sessionId, 'the same session')
  t.equal(again.joined.resume, token)
  await again.client.request({ type: 'op', project: 'doc', data: 'back' })
  await until(v1, () => v1.all('op').length === 1, 'the op')
  await until(batching, () => batching.all('op').length === 1, 'the op')
  t.same(eventsOf(v1).map((e) => e.event), ['join', 'join'], 'the watcher saw no leave and no second join')
  t.same(eventsOf(batching).map((e) => e.event), ['join'], 'nor did the batcher')
  t.same((await fetchMembers(server, 'doc')).map((m) => m.userId).sort(), ['alice', 'batcher', 'watcher'])

  // A clean close leaves at once, resume or not.
  const start = Date.now()
  again.client.close()
  await until(v1, () => eventsOf(v1).some((e) => e.event === 'leave'), 'the leave', 3000)
  t.ok(Date.now() - start < 2000, `a clean close leaves at once (${Date.now() - start} ms), not after the grace`)
})

t.test('a wrong token or another user is a fresh join; the held session leaves when its grace ends', async (t) => {
  const server = await startServer(t, { resumeGraceMs: 600 })
  const v1 = await connect(t, server.ws + '?userId=watcher')
  await v1.join('doc')
  const first = await joinAll(t, server.ws, 'alice')
  const token = first.joined.resume as string
  first.client.socket.terminate()
  const thief = await joinAll(t, server.ws, 'mallory', token)
  t.equal(thief.joined.resumed, false, 'another user with the token: a fresh join')
  t.not(thief.joined.sessionId, first.joined.sessionId)
  const guess = await joinAll(t, server.ws, 'alice', 'not-the-token')
  t.equal(guess.joined.resumed, false, 'a wrong token: a fresh join')
  t.not(guess.joined.sessionId, first.joined.sessionId)
  const started = Date.now()
  const leave = await until(v1, () => v1.all('member').find((f) => f.event === 'leave'), 'the held session leaves', 5000)
  t.equal((leave.member as Member).sessionId, first.joined.sessionId, 'the held session leaves after its grace')
  t.ok(Date.now() - started >= 300, 'not at once')
  const late = await joinAll(t, server.ws, 'alice', token)
  t.equal(late.joined.resumed, false, 'too late: a fresh join')
  t.same(eventsOf(v1).filter((e) => e.event === 'join').length, 4, 'alice, mallory, alice again, alice late')
})

t.test('a session still live on a half-dead connection moves to the connection that resumes it', async (t) => {
  const server = await startServer(t)
  const v1 = await connect(t, server.ws + '?userId=watcher')
  await v1.join('doc')
  const first = await joinAll(t, server.ws, 'alice')
  const again = await joinAll(t, server.ws, 'alice', first.joined.resume as string)
  t.equal(again.joined.resumed, true)
  t.equal(again.joined.sessionId, first.joined.sessionId)
  t.match(await first.client.next('left'), { type: 'left', project: 'doc' }, 'the old connection is told left')
  await again.client.request({ type: 'op', project: 'doc', data: 1 })
  await until(v1, () => v1.all('op').length === 1, 'the op')
  t.same(eventsOf(v1).map((e) => e.event), ['join'], 'the others saw nothing')
  first.client.close()
  await again.client.request({ type: 'op', project: 'doc', data: 2 })
  await until(v1, () => v1.all('op').length === 2, 'the op')
  t.same(eventsOf(v1).map((e) => e.event), ['join'], 'the old connection closing changes nothing')
  t.equal((await fetchMembers(server, 'doc')).length, 2)
})

t.test('a v1 client that drops leaves at once, as before', async (t) => {
  const server = await startServer(t, { resumeGraceMs: 10_000 })
  const v1 = await connect(t, server.ws + '?userId=watcher')
  await v1.join('doc')
  const bob = await connect(t, server.ws + '?userId=bob')
  const bj = await bob.join('doc', { resume: 'ignored-without-the-feature' })
  t.notOk('resume' in bj || 'resumed' in bj)
  bob.socket.terminate()
  const start = Date.now()
  await until(v1, () => v1.all('member').find((f) => f.event === 'leave'), 'the leave', 3000)
  t.ok(Date.now() - start < 2000, 'at once')
})

t.test('FLOW_MEMBER_BATCH_MS coalesces the member events of a window, not only of a turn', async (t) => {
  const server = await startServer(t, { memberBatchMs: 400 })
  const batching = await connect(t, server.ws + '?userId=batching')
  const v1 = await connect(t, server.ws + '?userId=v1')
  await batching.join('doc', { features: ['member_batch'] })
  await v1.join('doc')
  await until(batching, () => batching.all('members').length === 1, 'the v1 join')
  batching.received.length = 0
  const ids: string[] = []
  for (let i = 0; i < 3; i++) {
    const c = await connect(t, `${server.ws}?userId=j${i}`)
    ids.push((await c.join('doc')).sessionId as string)
  }
  await until(batching, () => eventsOf(batching).length === 3, 'three joins')
  t.equal(batching.all('members').length, 1, 'joins of separate turns in one frame')
  t.same(eventsOf(batching).map((e) => e.sessionId), ids, 'in order')
  t.equal(v1.all('member').length, 3, 'a v1 member is not delayed: one frame each')
})

t.test('a client that closes with 4000 (it gave up on a dead connection) is held and resumes; 1000 leaves at once', async (t) => {
  const server = await startServer(t, { resumeGraceMs: 5000 })
  const v1 = await connect(t, server.ws + '?userId=watcher')
  await v1.join('doc')
  const first = await joinAll(t, server.ws, 'alice')
  first.client.socket.close(4000, 'no reply to ping')
  await first.client.closed
  const again = await joinAll(t, server.ws, 'alice', first.joined.resume as string)
  t.equal(again.joined.resumed, true)
  await barrier(again.client, v1)
  t.same(eventsOf(v1).map((e) => e.event), ['join'], 'no leave, no second join')
  again.client.socket.close(1000)
  await until(v1, () => eventsOf(v1).some((e) => e.event === 'leave'), 'the leave', 2000)
})
