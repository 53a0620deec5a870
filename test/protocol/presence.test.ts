import t from 'tap'
import { startServer } from '../helpers/server.js'
import { connect } from '../helpers/client.js'
import { assertAlive, expectError, fetchMembers, membersOf } from '../helpers/protocol.js'
import { waitFor } from '../helpers/wait.js'

t.test('presence goes to every other member with sessionId and userId, not to the sender', async (t) => {
  const server = await startServer(t)
  const alice = await connect(t, server.ws + '?userId=alice')
  const bob = await connect(t, server.ws + '?userId=bob')
  const carol = await connect(t, server.ws + '?userId=carol')
  const dave = await connect(t, server.ws + '?userId=dave')
  const aj = await alice.join('doc')
  const bj = await bob.join('doc')
  await carol.join('doc')
  await alice.join('elsewhere')
  await dave.join('elsewhere')
  alice.send({ type: 'presence', project: 'doc', state: { cursor: 5, selection: [1, 3] }, ref: 'pr' })
  const expected = { type: 'presence', project: 'doc', sessionId: aj.sessionId, userId: 'alice', state: { cursor: 5, selection: [1, 3] } }
  t.same(await bob.next('presence'), expected, 'bob gets it')
  t.same(await carol.next('presence'), expected, 'carol gets it')
  bob.send({ type: 'presence', project: 'doc', state: { cursor: 9 } })
  t.same(await alice.next('presence'), { type: 'presence', project: 'doc', sessionId: bj.sessionId, userId: 'bob', state: { cursor: 9 } })
  // Alice's own presence would have reached her before bob's.
  t.same(alice.all('presence').map((f) => f.sessionId), [bj.sessionId], 'the sender does not get its own presence')
  t.notOk(alice.received.some((f) => f.ref === 'pr'), 'presence has no reply')
  // A member of another project only gets what happens there.
  await alice.request({ type: 'op', project: 'elsewhere', data: 1 })
  await dave.next('op')
  t.same(dave.all('presence'), [], 'presence stays in its project')
})

t.test('presence replaces the member\'s presence in GET members and in later joins', async (t) => {
  const server = await startServer(t)
  const alice = await connect(t, server.ws + '?userId=alice')
  const bob = await connect(t, server.ws + '?userId=bob')
  const aj = await alice.join('doc', { presence: { status: 'away', cursor: 1 } })
  await bob.join('doc')
  alice.send({ type: 'presence', project: 'doc', state: { cursor: 7 } })
  await bob.next('presence')
  const listed = await waitFor(async () => {
    const self = (await fetchMembers(server, 'doc')).find((m) => m.sessionId === aj.sessionId)
    return self !== undefined && self.presence.cursor === 7 ? self : undefined
  }, { what: 'the new presence in GET members', timeoutMs: 3000, intervalMs: 20 })
  t.same(listed.presence, { cursor: 7 }, 'replaced, not merged')
  const carol = await connect(t, server.ws + '?userId=carol')
  const cj = await carol.join('doc')
  t.same(membersOf(cj).find((m) => m.sessionId === aj.sessionId)?.presence, { cursor: 7 }, 'a later joiner sees it in joined')
})

t.test('presence over 4 KiB of JSON gets limit_exceeded at join and in presence', async (t) => {
  const server = await startServer(t)
  const alice = await connect(t, server.ws + '?userId=alice')
  const bob = await connect(t, server.ws + '?userId=bob')
  // {"s":"..."} is 8 bytes plus the string; 'é' is 2 bytes of UTF-8.
  const atLimit = { s: 'x'.repeat(4088) }
  const overLimit = { s: 'x'.repeat(4089) }
  const wideOver = { s: 'é'.repeat(2045) }
  let error = await expectError(t, alice, { type: 'join', project: 'doc', presence: overLimit, ref: 'big' }, 'limit_exceeded', 'join with 4,097 bytes')
  t.match(error, { project: 'doc', ref: 'big' })
  error = await expectError(t, alice, { type: 'join', project: 'doc', presence: wideOver, ref: 'wide' }, 'limit_exceeded', 'join with 4,098 bytes in 2,045 characters')
  t.same(await fetchMembers(server, 'doc'), [], 'the refused joins made no member')
  await expectError(t, alice, { type: 'op', project: 'doc', data: 1 }, 'not_joined', 'op after a refused join')

  const aj = await alice.join('doc', { presence: atLimit })
  t.same(membersOf(aj)[0]?.presence, atLimit, 'exactly 4 KiB is accepted at join')
  await bob.join('doc')
  error = await expectError(t, alice, { type: 'presence', project: 'doc', state: overLimit, ref: 'big-p' }, 'limit_exceeded', 'presence of 4,097 bytes')
  t.match(error, { project: 'doc', ref: 'big-p' })
  await expectError(t, alice, { type: 'presence', project: 'doc', state: wideOver }, 'limit_exceeded', 'presence of 4,098 bytes')
  alice.send({ type: 'presence', project: 'doc', state: { s: 'é'.repeat(2044) } })
  t.same((await bob.next('presence')).state, { s: 'é'.repeat(2044) }, 'exactly 4 KiB is accepted in presence, and is the first bob gets')
  t.same(bob.all('presence').length, 1, 'the refused presence reached no one')
  const listed = (await fetchMembers(server, 'doc')).find((m) => m.sessionId === aj.sessionId)
  t.same(listed?.presence, { s: 'é'.repeat(2044) })
  await assertAlive(t, bob)
})

t.test('the presence limit is configurable', async (t) => {
  const server = await startServer(t, { maxPresenceBytes: 64 })
  const alice = await connect(t, server.ws)
  await expectError(t, alice, { type: 'join', project: 'doc', presence: { s: 'x'.repeat(57) } }, 'limit_exceeded', 'join with 65 bytes')
  await alice.join('doc', { presence: { s: 'x'.repeat(56) } })
  await expectError(t, alice, { type: 'presence', project: 'doc', state: { s: 'x'.repeat(57) } }, 'limit_exceeded', 'presence of 65 bytes')
})
