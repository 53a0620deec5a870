import t from 'tap'
import { startServer } from '../helpers/server.js'
import { connect } from '../helpers/client.js'

t.test('a joined member sees another member join, op and leave', async (t) => {
  const server = await startServer(t)
  const alice = await connect(t, server.ws + '?userId=alice')
  const bob = await connect(t, server.ws + '?userId=bob')
  const aj = await alice.join('doc-1', { presence: { cursor: 1 } })
  t.equal(aj.seq, 0)
  t.equal(aj.userId, 'alice')
  t.type(aj.epoch, 'string')
  t.same((aj.members as unknown[]).length, 1)
  const bj = await bob.join('doc-1')
  t.equal((bj.members as Array<{ userId: string }>).length, 2)
  const joinEvent = await alice.next('member')
  t.equal(joinEvent.event, 'join')
  t.equal((joinEvent.member as { userId: string }).userId, 'bob')
  const ack = await alice.request({ type: 'op', project: 'doc-1', id: 'op-1', data: { x: 1 } })
  t.same(ack, { type: 'ack', project: 'doc-1', id: 'op-1', seq: 1, ref: ack.ref })
  const op = await bob.next('op')
  t.match(op, { project: 'doc-1', seq: 1, id: 'op-1', userId: 'alice', sessionId: aj.sessionId, data: { x: 1 } })
  t.equal(alice.all('op').length, 0, 'the sender gets an ack, not its own op')
  bob.close()
  const leave = await alice.next((f) => f.type === 'member' && f.event === 'leave')
  t.equal((leave.member as { sessionId: string }).sessionId, bj.sessionId)
})
