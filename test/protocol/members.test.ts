import t from 'tap'
import { startServer } from '../helpers/server.js'
import { connect, type Frame, type TestClient } from '../helpers/client.js'
import { fetchMembers, membersOf, opsOf, until } from '../helpers/protocol.js'
import { withDeadline } from '../helpers/wait.js'
import type { Member } from '../../lib/types.js'

function memberEvents (client: TestClient, event?: 'join' | 'leave'): Frame[] {
  return client.all('member').filter((f) => event === undefined || f.event === event)
}

function sessionOf (f: Frame): string {
  return (f.member as Member).sessionId
}

t.test('joined carries the project, session, user, epoch, head and members with the presence given at join', async (t) => {
  const server = await startServer(t)
  const alice = await connect(t, server.ws + '?userId=alice')
  const bob = await connect(t, server.ws + '?userId=bob')
  const before = Date.now()
  const aj = await alice.join('doc', { presence: { cursor: { x: 1, y: 2 }, name: 'Alice' } })
  t.match(aj, { type: 'joined', project: 'doc', userId: 'alice', seq: 0, sessionId: String, epoch: String })
  t.ok((aj.sessionId as string).length > 0 && (aj.epoch as string).length > 0, 'session and epoch are not empty')
  t.same(membersOf(aj).map((m) => Object.keys(m).sort()), [['joinedAt', 'presence', 'sessionId', 'userId']])
  const [self] = membersOf(aj) as [Member]
  t.same(self, { sessionId: aj.sessionId, userId: 'alice', presence: { cursor: { x: 1, y: 2 }, name: 'Alice' }, joinedAt: self.joinedAt })
  t.ok(self.joinedAt >= before && self.joinedAt <= Date.now(), 'joinedAt is ms since the epoch, at the join')

  t.equal((await alice.request({ type: 'op', project: 'doc', data: 1 })).seq, 1)
  t.equal((await alice.request({ type: 'op', project: 'doc', data: 2 })).seq, 2)
  const bj = await bob.join('doc')
  t.match(bj, { project: 'doc', userId: 'bob', seq: 2, epoch: aj.epoch }, 'seq is the head, in the same epoch')
  t.not(bj.sessionId, aj.sessionId, 'each session has its own id')
  const members = membersOf(bj)
  t.equal(members.length, 2, 'the joiner is included')
  t.same(members.find((m) => m.sessionId === aj.sessionId)?.presence, { cursor: { x: 1, y: 2 }, name: 'Alice' })
  t.same(members.find((m) => m.sessionId === bj.sessionId)?.presence, {}, 'no presence given: an empty object')
})

t.test('a member join event goes to every other member, not to the session it describes', async (t) => {
  const server = await startServer(t)
  const alice = await connect(t, server.ws + '?userId=alice')
  const bob = await connect(t, server.ws + '?userId=bob')
  const carol = await connect(t, server.ws + '?userId=carol')
  await alice.join('doc')
  const bj = await bob.join('doc', { presence: { color: 'red' } })
  const event = await alice.next('member')
  t.same(event, {
    type: 'member',
    project: 'doc',
    event: 'join',
    member: { sessionId: bj.sessionId, userId: 'bob', presence: { color: 'red' }, joinedAt: membersOf(bj).find((m) => m.sessionId === bj.sessionId)?.joinedAt }
  })
  const cj = await carol.join('doc')
  t.equal(sessionOf(await alice.next('member')), cj.sessionId)
  t.equal(sessionOf(await bob.next('member')), cj.sessionId, 'bob learns of carol')
  t.same(memberEvents(bob).map(sessionOf), [cj.sessionId], 'bob got no event about himself')
  // An event about herself would reach carol before a later op.
  await alice.request({ type: 'op', project: 'doc', data: 1 })
  await carol.next('op')
  t.same(memberEvents(carol), [], 'carol learns of herself from joined only')
})

t.test('joining again answers joined again without a second member event or a new session', async (t) => {
  const server = await startServer(t)
  const alice = await connect(t, server.ws + '?userId=alice')
  const bob = await connect(t, server.ws + '?userId=bob')
  await alice.join('doc')
  const first = await bob.join('doc')
  await alice.next('member')
  const again = await bob.join('doc')
  t.match(again, { type: 'joined', project: 'doc', sessionId: first.sessionId, userId: 'bob', epoch: first.epoch })
  t.equal(membersOf(again).length, 2, 'membership is unchanged')
  // Any second member event would reach alice before bob's next op.
  t.equal((await bob.request({ type: 'op', project: 'doc', id: 'after-rejoin', data: 1 })).type, 'ack')
  t.equal((await alice.next('op')).id, 'after-rejoin')
  t.equal(memberEvents(alice).length, 1, 'alice saw bob join once')
  t.equal((await fetchMembers(server, 'doc')).length, 2)
})

t.test('leave is answered by left, announced to the others, and stops delivery', async (t) => {
  const server = await startServer(t)
  const alice = await connect(t, server.ws + '?userId=alice')
  const bob = await connect(t, server.ws + '?userId=bob')
  const aj = await alice.join('doc')
  const bj = await bob.join('doc')
  await alice.request({ type: 'op', project: 'doc', data: 'one' })
  const left = await bob.request({ type: 'leave', project: 'doc' })
  t.same(left, { type: 'left', project: 'doc', ref: left.ref })
  const leave = await alice.next((f) => f.type === 'member' && f.event === 'leave')
  t.match(leave, { project: 'doc', member: { sessionId: bj.sessionId, userId: 'bob' } })
  t.same((await fetchMembers(server, 'doc')).map((m) => m.sessionId), [aj.sessionId])
  await alice.request({ type: 'op', project: 'doc', data: 'two' })
  const rejoined = await bob.join('doc')
  t.not(rejoined.sessionId, bj.sessionId, 'a join after a leave is a new session')
  t.equal(rejoined.seq, 2)
  await alice.request({ type: 'op', project: 'doc', data: 'three' })
  await until(bob, () => opsOf(bob, 'doc').some((op) => op.seq === 3), 'op 3')
  t.same(opsOf(bob, 'doc').map((op) => op.data), ['one', 'three'], 'nothing was delivered while bob was away')
})

for (const how of ['closes cleanly', 'is terminated'] as const) {
  t.test(`a connection that ${how} leaves each of its projects at once`, async (t) => {
    const server = await startServer(t)
    const alice = await connect(t, server.ws + '?userId=alice')
    const bob = await connect(t, server.ws + '?userId=bob')
    await alice.join('p1')
    await alice.join('p2')
    const b1 = await bob.join('p1')
    const b2 = await bob.join('p2')
    await until(alice, () => memberEvents(alice, 'join').length === 2, 'two join events')
    const start = Date.now()
    if (how === 'closes cleanly') bob.close()
    else bob.socket.terminate()
    const leaves = await withDeadline(until(alice, () => {
      const found = memberEvents(alice, 'leave')
      return found.length === 2 ? found : undefined
    }, 'two leave events'), 'leave events', 1000)
    t.ok(Date.now() - start < 1000, `announced within a second (${Date.now() - start} ms)`)
    t.same(leaves.map((f) => [f.project, sessionOf(f)]).sort(), [['p1', b1.sessionId], ['p2', b2.sessionId]])
    t.equal((await fetchMembers(server, 'p1')).length, 1)
    t.equal((await fetchMembers(server, 'p2')).length, 1)
  })
}

t.test('a session is listed by GET members from the moment joined is sent', async (t) => {
  const server = await startServer(t)
  const clients = await Promise.all(Array.from({ length: 6 }, async (_, i) => await connect(t, `${server.ws}?userId=u${i}`)))
  // Joins race each other; each joiner reads the list as soon as its joined arrives.
  await Promise.all(clients.map(async (client, i) => {
    const joined = await client.join('doc', { presence: { n: i } })
    const listed = await fetchMembers(server, 'doc')
    const self = listed.find((m) => m.sessionId === joined.sessionId)
    t.same(self, { sessionId: joined.sessionId, userId: `u${i}`, presence: { n: i }, joinedAt: self?.joinedAt }, `u${i} is listed with its presence`)
  }))
  t.equal((await fetchMembers(server, 'doc')).length, 6)
  t.same(await fetchMembers(server, 'nobody-here'), [], 'a project without members lists none')
})
