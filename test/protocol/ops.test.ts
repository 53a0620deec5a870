import t from 'tap'
import { startServer } from '../helpers/server.js'
import { connect } from '../helpers/client.js'
import { fetchOps, opsOf, until } from '../helpers/protocol.js'

const OP_ID = /^[A-Za-z0-9_-]{1,64}$/

t.test('an op is acked to its sender and sent to every other member, never back to the sender', async (t) => {
  const server = await startServer(t)
  const alice = await connect(t, server.ws + '?userId=alice')
  const bob = await connect(t, server.ws + '?userId=bob')
  const carol = await connect(t, server.ws + '?userId=carol')
  const outsider = await connect(t, server.ws + '?userId=dave')
  const aj = await alice.join('doc')
  await bob.join('doc')
  await carol.join('doc')
  await outsider.join('other')
  const before = Date.now()
  const ack = await alice.request({ type: 'op', project: 'doc', id: 'a-1', data: { insert: 'hi', at: 0 } })
  t.same(ack, { type: 'ack', project: 'doc', id: 'a-1', seq: 1, ref: ack.ref })
  const expected = { type: 'op', project: 'doc', seq: 1, id: 'a-1', userId: 'alice', sessionId: aj.sessionId, data: { insert: 'hi', at: 0 } }
  for (const receiver of [bob, carol]) {
    const op = await receiver.next('op')
    t.same(Object.keys(op).sort(), ['data', 'id', 'project', 'seq', 'sessionId', 'ts', 'type', 'userId'])
    t.match(op, expected)
    t.ok(typeof op.ts === 'number' && op.ts >= before && op.ts <= Date.now(), 'ts is the server time in ms')
  }
  // Bob answers; alice's own op would have reached her before bob's.
  await bob.request({ type: 'op', project: 'doc', id: 'b-1', data: null })
  t.match(await alice.next('op'), { id: 'b-1', seq: 2, userId: 'bob', data: null })
  t.same(opsOf(alice, 'doc').map((op) => op.id), ['b-1'], 'alice never got her own op')
  t.equal((await carol.next('op')).id, 'b-1')
  await outsider.request({ type: 'op', project: 'other', data: 1 })
  t.same(opsOf(outsider, 'doc'), [], 'a member of another project gets none')
})

t.test('op data is any JSON value, passed through as sent', async (t) => {
  const server = await startServer(t)
  const alice = await connect(t, server.ws)
  const bob = await connect(t, server.ws)
  await alice.join('doc')
  await bob.join('doc')
  const values: unknown[] = [null, 0, -1.25, 'text', '', true, false, [], {}, [1, 'two', { three: [3] }], { 'key with spaces': '💥', nested: { deep: [null] } }, 'é\u0000\u2028']
  for (const data of values) await alice.request({ type: 'op', project: 'doc', data })
  await until(bob, () => opsOf(bob, 'doc').length === values.length, `${values.length} ops`)
  t.same(opsOf(bob, 'doc').map((op) => op.data), values)
  t.same((await fetchOps(server, 'doc')).map((op) => op.data), values, 'the log keeps the same values')
})

t.test('an op id sent again gets the original seq and is not broadcast again', async (t) => {
  const server = await startServer(t)
  const alice = await connect(t, server.ws + '?userId=alice')
  const bob = await connect(t, server.ws + '?userId=bob')
  await alice.join('doc')
  await bob.join('doc')
  t.match(await alice.request({ type: 'op', project: 'doc', id: 'retry-me', data: 'first' }), { type: 'ack', id: 'retry-me', seq: 1 })
  t.match(await alice.request({ type: 'op', project: 'doc', id: 'other', data: 'second' }), { seq: 2 })
  const retry = await alice.request({ type: 'op', project: 'doc', id: 'retry-me', data: 'changed' })
  t.same(retry, { type: 'ack', project: 'doc', id: 'retry-me', seq: 1, ref: retry.ref }, 'the retry is acked with the original seq')
  // Ids are scoped by sender (1.2): another member's op with that id is its own op, and its retry a duplicate.
  t.match(await bob.request({ type: 'op', project: 'doc', id: 'retry-me', data: 'bob' }), { id: 'retry-me', seq: 3 })
  t.match(await bob.request({ type: 'op', project: 'doc', id: 'retry-me', data: 'bob again' }), { id: 'retry-me', seq: 3 })
  t.match(await alice.request({ type: 'op', project: 'doc', id: 'marker', data: 'marker' }), { seq: 4 })
  await until(bob, () => opsOf(bob, 'doc').some((op) => op.id === 'marker'), 'the marker op')
  t.same(opsOf(bob, 'doc').map((op) => [op.seq, op.id, op.data]), [[1, 'retry-me', 'first'], [2, 'other', 'second'], [4, 'marker', 'marker']],
    'bob got alice\'s ops once each (his own op only as an ack), and nothing twice')
  t.same((await fetchOps(server, 'doc')).map((op) => op.data), ['first', 'second', 'bob', 'marker'], 'the log holds each op once')
})

t.test('the same op id in another project is a new op', async (t) => {
  const server = await startServer(t)
  const alice = await connect(t, server.ws + '?userId=alice')
  const bob = await connect(t, server.ws + '?userId=bob')
  for (const p of ['doc-a', 'doc-b']) {
    await alice.join(p)
    await bob.join(p)
  }
  await alice.request({ type: 'op', project: 'doc-b', id: 'filler', data: 0 })
  t.match(await alice.request({ type: 'op', project: 'doc-a', id: 'shared', data: 'a' }), { project: 'doc-a', id: 'shared', seq: 1 })
  t.match(await alice.request({ type: 'op', project: 'doc-b', id: 'shared', data: 'b' }), { project: 'doc-b', id: 'shared', seq: 2 })
  await until(bob, () => opsOf(bob, 'doc-b').length === 2, 'both ops of doc-b')
  t.same(opsOf(bob, 'doc-a').map((op) => [op.id, op.data]), [['shared', 'a']])
  t.same(opsOf(bob, 'doc-b').map((op) => [op.id, op.data]), [['filler', 0], ['shared', 'b']])
})

t.test('an op without an id gets a server-made id, the same in ack and op', async (t) => {
  const server = await startServer(t)
  const alice = await connect(t, server.ws)
  const bob = await connect(t, server.ws)
  await alice.join('doc')
  await bob.join('doc')
  const first = await alice.request({ type: 'op', project: 'doc', data: 1 })
  const second = await alice.request({ type: 'op', project: 'doc', data: 2 })
  t.match(first, { type: 'ack', seq: 1, id: OP_ID })
  t.match(second, { type: 'ack', seq: 2, id: OP_ID })
  t.not(first.id, second.id, 'each op gets its own id')
  await until(bob, () => opsOf(bob, 'doc').length === 2, 'two ops')
  t.same(opsOf(bob, 'doc').map((op) => op.id), [first.id, second.id], 'the op carries the id of the ack')
  // The server-made id is an idempotency key like any other.
  t.match(await bob.request({ type: 'op', project: 'doc', id: first.id, data: 'retry' }), { seq: 1 })
})
