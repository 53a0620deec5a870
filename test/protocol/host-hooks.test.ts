import t from 'tap'
import { startServer } from '../helpers/server.js'
import { connect } from '../helpers/client.js'
import { expectError, seqsOf, until } from '../helpers/protocol.js'
import { BadRequestError, ForbiddenError } from '../../lib/errors.js'
import type { Identity } from '../../lib/hub/transport.js'

/** Identities from the userId query: `viewer-*` read only, others read and write. */
const authenticate = async (request: { query: unknown }): Promise<Identity> => {
  const userId = (request.query as { userId?: string }).userId ?? 'anon'
  return { userId, allows: (_project, access) => access !== 'write' || !userId.startsWith('viewer') }
}

t.test('a read-only member joins, sees ops and members, and its ops and snapshots are refused with forbidden', async (t) => {
  const server = await startServer(t, { authenticate })
  const editor = await connect(t, `${server.ws}?userId=editor`)
  const viewer = await connect(t, `${server.ws}?userId=viewer-1`)
  const { epoch } = await editor.join('doc')
  await viewer.join('doc', { presence: { cursor: 1 } })
  editor.send({ type: 'op', project: 'doc', data: 'hello', ref: 1 })
  await until(viewer, () => seqsOf(viewer, 'doc').includes(1), 'the editor\'s op')
  await expectError(t, viewer, { type: 'op', project: 'doc', data: 'nope' }, 'forbidden', 'a viewer\'s op is refused')
  await expectError(t, viewer, { type: 'snapshot', project: 'doc', epoch, seq: 1, state: {} }, 'forbidden', 'and its snapshot')
  viewer.send({ type: 'presence', project: 'doc', state: { cursor: 2 } })
  await until(editor, () => editor.all('presence').some((f) => (f.state as { cursor?: number }).cursor === 2), 'the viewer\'s presence')
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.same(seqsOf(editor, 'doc'), [], 'nothing of the viewer reached the log (the editor got only its ack)')
  t.equal((await server.app.flow.ports.log.head('doc')).seq, 1)

  const read = await fetch(`${server.http}/projects/doc/ops?since=0&userId=viewer-1`)
  t.equal(read.status, 200, 'the viewer reads the history over HTTP')
  const write = await fetch(`${server.http}/projects/doc/ops?userId=viewer-1`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ data: 'x' })
  })
  t.equal(write.status, 403, 'and may not post')
  t.match(await write.json(), { code: 'forbidden' })
})

t.test('onOp checks each client op before it is appended; refusals carry the hook\'s code; order holds with an async hook', async (t) => {
  const seen: string[] = []
  const server = await startServer(t, {
    onOp: async (op, identity) => {
      seen.push(`${identity.userId}:${String((op.data as { n?: number }).n)}`)
      // Slower for early ops: a later op must still not overtake an earlier one.
      await new Promise((resolve) => setTimeout(resolve, 20 - Math.min(20, Number((op.data as { n?: number }).n ?? 0))))
      const data = op.data as { n?: number, text?: string }
      if (data.text === 'spam') return false
      if (typeof data.text === 'string' && data.text.length > 10) throw new BadRequestError('text longer than 10')
      if (data.text === 'secret') throw new ForbiddenError('no secrets here')
      if (data.text === 'boom') throw new Error('bug in the hook')
    }
  })
  const a = await connect(t, `${server.ws}?userId=ann`)
  const b = await connect(t, `${server.ws}?userId=bob`)
  await a.join('doc')
  await b.join('doc')
  for (let n = 0; n < 20; n++) a.send({ type: 'op', project: 'doc', data: { n }, ref: 100 + n })
  await until(b, () => seqsOf(b, 'doc').length === 20, 'twenty ops')
  t.same(b.all('op').map((f) => (f.data as { n: number }).n), [...Array(20).keys()], 'appended in the order sent, whatever the hook\'s timing')
  await expectError(t, a, { type: 'op', project: 'doc', data: { text: 'spam' } }, 'forbidden', 'false refuses with forbidden')
  const long = await expectError(t, a, { type: 'op', project: 'doc', data: { text: 'much too long' } }, 'bad_request', 'a Flow error keeps its code')
  t.match(long, { message: 'text longer than 10' })
  await expectError(t, a, { type: 'op', project: 'doc', data: { text: 'secret' } }, 'forbidden', 'ForbiddenError')
  await expectError(t, a, { type: 'op', project: 'doc', data: { text: 'boom' } }, 'internal', 'another error is the hook\'s bug: internal')
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(seqsOf(b, 'doc').length, 20, 'no refused op reached anyone')

  const post = async (data: unknown, userId = 'carl'): Promise<Response> => await fetch(`${server.http}/projects/doc/ops?userId=${userId}`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ data })
  })
  const refused = await post({ text: 'spam' })
  t.equal(refused.status, 403, 'HTTP ops are checked too')
  t.equal((await post({ n: 99 })).status, 201)
  t.ok(seen.includes('api:99'), 'the hook saw the HTTP poster\'s identity (in open mode, HTTP posts are by "api")')
  const before = seen.length
  await server.app.flow.hub.post('doc', 'server', undefined, { text: 'spam' })
  t.equal(seen.length, before, 'the host\'s own ops skip the hook')
  await until(b, () => seqsOf(b, 'doc').length === 22, 'the HTTP op and the host\'s op')
})

t.test('a bad onOp option stops start-up with a message naming it', async (t) => {
  await t.rejects(startServer(t, { onOp: 'yes' as never }), { message: /onOp must be a function/ })
})
