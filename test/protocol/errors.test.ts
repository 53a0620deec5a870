import t from 'tap'
import { createHmac } from 'node:crypto'
import { startServer, type TestServer } from '../helpers/server.js'
import { connect } from '../helpers/client.js'
import { assertAlive, expectError, fetchMembers, fetchOps, opsOf } from '../helpers/protocol.js'
import { waitFor, withDeadline } from '../helpers/wait.js'
import { MemoryOperationLog } from '../../adapters/memory/operation-log.js'
import type { AppendResult, NewOp } from '../../ports/operation-log.js'

t.test('a frame that is not JSON gets bad_request and the connection keeps working', async (t) => {
  const server = await startServer(t)
  const client = await connect(t, server.ws)
  for (const raw of ['{"type":', 'hello', '', '{type: "ping"}', "{'type':'ping'}", '{"type":"ping"} x']) {
    const error = await expectError(t, client, raw, 'bad_request', `not JSON ${JSON.stringify(raw)}`)
    t.notOk('ref' in error, 'no ref can be read from it')
  }
})

t.test('a JSON value that is not an object gets bad_request', async (t) => {
  const server = await startServer(t)
  const client = await connect(t, server.ws)
  for (const raw of ['[]', '[{"type":"ping","ref":"a"}]', '42', '-1.5', 'null', 'true', '"ping"']) {
    await expectError(t, client, raw, 'bad_request', `not an object ${raw}`)
  }
})

t.test('a frame without a string type gets bad_request, echoing its ref', async (t) => {
  const server = await startServer(t)
  const client = await connect(t, server.ws)
  const frames: Array<{ type?: unknown, ref: string }> = [{ ref: 'a1' }, { type: 1, ref: 'a2' }, { type: null, ref: 'a3' }, { type: ['ping'], ref: 'a4' }, { type: { name: 'ping' }, ref: 'a5' }]
  for (const frame of frames) {
    const error = await expectError(t, client, frame, 'bad_request', `type ${JSON.stringify(frame.type) ?? 'missing'}`)
    t.equal(error.ref, frame.ref, 'the ref is echoed')
  }
  // An own "__proto__" key is data, not the frame's prototype: there is still no type.
  const error = await expectError(t, client, '{"__proto__":{"type":"ping"},"ref":"a6"}', 'bad_request', '__proto__ carrying a type')
  t.equal(error.ref, 'a6')
})

t.test('a frame of an unknown type gets unknown_type, echoing its ref', async (t) => {
  const server = await startServer(t)
  const client = await connect(t, server.ws)
  for (const type of ['nope', '', 'PING', 'pong', 'joined', '__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
    const error = await expectError(t, client, { type, ref: `u-${type}`, project: 'p' }, 'unknown_type', `type ${JSON.stringify(type)}`)
    t.equal(error.ref, `u-${type}`, 'the ref is echoed')
  }
})

t.test('bad project ids get bad_request on every frame that names a project', async (t) => {
  const server = await startServer(t)
  const client = await connect(t, server.ws)
  const bad: unknown[] = ['', 'x'.repeat(129), 'has space', '../x', 'a/b', 'ünïcødé', 'doc\n', 'emoji-😀', 'semi;colon', 'star*', 42, null, ['p'], { id: 'p' }]
  const frames: Array<(project: unknown) => Record<string, unknown>> = [
    (project) => ({ type: 'join', project }),
    (project) => ({ type: 'leave', project }),
    (project) => ({ type: 'op', project, data: 1 }),
    (project) => ({ type: 'presence', project, state: {} }),
    (project) => ({ type: 'sync', project, since: 0 })
  ]
  for (const project of bad) {
    for (const make of frames) {
      const frame: Record<string, unknown> = { ...make(project), ref: 'bad-project' }
      const error = await expectError(t, client, frame, 'bad_request', `${frame.type as string} with project ${JSON.stringify(project)}`)
      t.equal(error.ref, 'bad-project')
      t.notOk('project' in error, 'an invalid project id is not echoed')
    }
  }
  const error = await expectError(t, client, { type: 'join', ref: 'no-project' }, 'bad_request', 'join without a project')
  t.equal(error.ref, 'no-project')
  // The longest and the odd-but-valid ids are accepted.
  for (const project of ['x'.repeat(128), 'A-z_0.9', '..', '__proto__', 'constructor']) {
    const joined = await client.join(project)
    t.equal(joined.project, project, `${JSON.stringify(project.slice(0, 20))} is a valid project id`)
    t.match(await client.request({ type: 'op', project, data: 1 }), { type: 'ack', project, seq: 1 })
    // Not over HTTP for 128 characters (a host's Fastify router allows 100 by
    // default) nor for "..", which URL clients resolve as a dot segment.
    if (project.length <= 100 && project !== '..') t.same((await fetchMembers(server, project)).map((m) => m.sessionId), [joined.sessionId])
  }
})

t.test('a bad since gets bad_request on join and on sync', async (t) => {
  const server = await startServer(t)
  const client = await connect(t, server.ws)
  await client.join('p')
  for (const since of [-1, 1.5, Number.MAX_SAFE_INTEGER + 1, 1e300, '3', null, true, [1]]) {
    for (const type of ['join', 'sync']) {
      const error = await expectError(t, client, { type, project: 'p', since, ref: 's' }, 'bad_request', `${type} since ${JSON.stringify(since)}`)
      t.equal(error.ref, 's')
      t.equal(error.project, 'p', 'the valid project is named')
    }
  }
  // The largest safe integer is in range: it is simply above the head.
  const synced = client.next('synced')
  client.send({ type: 'sync', project: 'p', since: Number.MAX_SAFE_INTEGER })
  t.equal((await client.next('reset')).seq, 0)
  t.equal((await synced).seq, 0)
})

t.test('a bad op id gets bad_request and nothing is appended', async (t) => {
  const server = await startServer(t)
  const client = await connect(t, server.ws)
  await client.join('p')
  for (const id of ['', 'x'.repeat(65), 'has space', 'a.b', 'a/b', 'ünï', 'a\n', 5, null, ['a'], {}]) {
    const error = await expectError(t, client, { type: 'op', project: 'p', id, data: 1, ref: 'bad-id' }, 'bad_request', `op id ${JSON.stringify(id)}`)
    t.equal(error.ref, 'bad-id')
  }
  t.same(await fetchOps(server, 'p'), [], 'no op was appended')
  const ack = await client.request({ type: 'op', project: 'p', id: 'x'.repeat(64), data: 1 })
  t.match(ack, { type: 'ack', seq: 1, id: 'x'.repeat(64) }, 'a 64-character id is valid')
})

t.test('missing or wrongly typed fields get bad_request', async (t) => {
  const server = await startServer(t)
  const client = await connect(t, server.ws)
  await client.join('p')
  const frames: Array<Record<string, unknown>> = [
    { type: 'op', project: 'p' },
    { type: 'presence', project: 'p' },
    { type: 'presence', project: 'p', state: [1] },
    { type: 'presence', project: 'p', state: null },
    { type: 'presence', project: 'p', state: 'here' },
    { type: 'sync', project: 'p' },
    { type: 'leave' },
    { type: 'join', project: 'q', presence: [] },
    { type: 'join', project: 'q', presence: 'away' },
    { type: 'join', project: 'q', since: 0, epoch: 7 },
    { type: 'join', project: 'q', since: 0, epoch: '' },
    { type: 'sync', project: 'p', since: 0, epoch: false }
  ]
  for (const frame of frames) {
    await expectError(t, client, { ...frame, ref: 'f' }, 'bad_request', JSON.stringify(frame))
  }
  t.equal((await fetchMembers(server, 'q')).length, 0, 'no bad join made a member')
})

t.test('op, presence, sync and leave before join get not_joined naming the project', async (t) => {
  const server = await startServer(t)
  const client = await connect(t, server.ws)
  const other = await connect(t, server.ws)
  await other.join('p')
  for (const frame of [
    { type: 'op', project: 'p', id: 'o1', data: 1 },
    { type: 'presence', project: 'p', state: { x: 1 } },
    { type: 'sync', project: 'p', since: 0 },
    { type: 'leave', project: 'p' }
  ]) {
    const error = await expectError(t, client, { ...frame, ref: 7 }, 'not_joined', frame.type)
    t.equal(error.project, 'p')
    t.equal(error.ref, 7)
  }
  t.same(await fetchOps(server, 'p'), [], 'the op was not appended')
  await assertAlive(t, other)
  t.equal(other.received.filter((f) => f.type === 'presence' || f.type === 'op').length, 0, 'the member got neither op nor presence')
  // After a leave, the same frames are not_joined again.
  await client.join('p')
  t.equal((await client.request({ type: 'leave', project: 'p' })).type, 'left')
  await expectError(t, client, { type: 'op', project: 'p', data: 1 }, 'not_joined', 'op after leave')
  await expectError(t, client, { type: 'leave', project: 'p' }, 'not_joined', 'second leave')
})

t.test('a binary frame gets bad_request and the connection keeps working', async (t) => {
  const server = await startServer(t)
  const client = await connect(t, server.ws)
  await client.join('p')
  const error = client.next('error')
  client.socket.send(Buffer.from(JSON.stringify({ type: 'op', project: 'p', data: 1, ref: 'bin' })), { binary: true })
  t.equal((await error).code, 'bad_request')
  await assertAlive(t, client)
  t.same(await fetchOps(server, 'p'), [], 'the binary op was not appended')
})

t.test('a text frame of invalid UTF-8 gets bad_request and the connection stays open', async (t) => {
  const server = await startServer(t)
  const client = await connect(t, server.ws)
  for (const bytes of [[0xff, 0xfe], [0x7b, 0x22, 0xc3, 0x28, 0x22, 0x7d], [0xed, 0xa0, 0x80]]) {
    const error = client.next('error')
    client.socket.send(Buffer.from(bytes), { binary: false })
    t.equal((await error).code, 'bad_request', `bytes ${bytes.join(',')}`)
    await assertAlive(t, client)
  }
  t.equal(client.socket.readyState, client.socket.OPEN)
})

t.test('__proto__ and constructor keys round-trip as data and pollute nothing', async (t) => {
  const server = await startServer(t)
  const alice = await connect(t, server.ws + '?userId=alice')
  const bob = await connect(t, server.ws + '?userId=bob')
  await alice.join('p')
  await bob.join('p')
  const data = '{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}},"list":[{"__proto__":null}]}'
  const ackP = alice.next((f) => f.ref === 'proto')
  alice.send(`{"type":"op","project":"p","id":"__proto__","data":${data},"ref":"proto","__proto__":{"type":"ping"}}`)
  const ack = await ackP
  t.match(ack, { type: 'ack', id: '__proto__', seq: 1 })
  const op = await bob.next('op')
  t.equal(JSON.stringify(op.data), data, 'the receiver gets the keys as data')
  t.ok(Object.hasOwn(op.data as object, '__proto__'))
  t.same((await fetchOps(server, 'p')).map((o) => JSON.stringify(o.data)), [data], 'the log keeps them as data')
  // An op id of "constructor" or "hasOwnProperty" is not mistaken for a seen one.
  for (const [id, seq] of [['constructor', 2], ['hasOwnProperty', 3], ['__proto__', 1]] as const) {
    t.match(await alice.request({ type: 'op', project: 'p', id, data: 0 }), { type: 'ack', id, seq }, `op id ${id}`)
  }
  // Presence with such keys reaches the others as data.
  alice.send('{"type":"presence","project":"p","state":{"__proto__":{"admin":true},"constructor":1}}')
  const presence = await bob.next('presence')
  t.equal(JSON.stringify(presence.state), '{"__proto__":{"admin":true},"constructor":1}')
  t.same(opsOf(bob, 'p').map((o) => o.id), ['__proto__', 'constructor', 'hasOwnProperty'], 'the retried __proto__ op was not broadcast again')
  const plain: Record<string, unknown> = {}
  t.equal(plain.polluted, undefined, 'Object.prototype is not polluted')
  t.equal(plain.admin, undefined, 'Object.prototype is not polluted')
  await assertAlive(t, alice)
  await assertAlive(t, bob)
})

t.test('deeply nested JSON gets bad_request instead of failing the server', async (t) => {
  const server = await startServer(t)
  const alice = await connect(t, server.ws)
  const bob = await connect(t, server.ws)
  await alice.join('p')
  await bob.join('p')
  const nest = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth)
  // Reasonably nested data is data.
  const ack = await alice.request({ type: 'op', project: 'p', data: JSON.parse(`{"doc":${nest(100)}}`) as unknown })
  t.match(ack, { type: 'ack', seq: 1 })
  t.equal(JSON.stringify((await bob.next('op')).data), `{"doc":${nest(100)}}`)
  // 20,000 levels fit in a 64 KiB frame.
  const deep = nest(20_000)
  let error = await expectError(t, alice, `{"type":"op","project":"p","data":${deep},"ref":"deep-op"}`, 'bad_request', 'op data nested 20,000 deep')
  t.equal(error.ref, 'deep-op')
  error = await expectError(t, alice, `{"type":"presence","project":"p","state":{"s":${deep}},"ref":"deep-presence"}`, 'bad_request', 'presence nested 20,000 deep')
  t.equal(error.ref, 'deep-presence')
  error = await expectError(t, alice, `{"type":"join","project":"q","presence":{"s":${deep}},"ref":"deep-join"}`, 'bad_request', 'join presence nested 20,000 deep')
  t.equal(error.ref, 'deep-join')
  // The HTTP API applies the same bound to the op data it appends.
  const posted = await fetch(`${server.http}/projects/p/ops`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"data":${deep}}` })
  t.match({ status: posted.status, body: await posted.json() as unknown }, { status: 400, body: { code: 'bad_request' } }, 'POST with deep data: 400 bad_request')
  t.same((await fetchOps(server, 'p')).map((o) => o.seq), [1], 'nothing else was appended')
  await assertAlive(t, bob)
  t.equal(bob.all('presence').length, 0, 'the deep presence reached no one')
})

t.test('a token that does not allow the project gets forbidden on join', async (t) => {
  const secret = 'protocol-test-secret-0123456789abcdef'
  const server = await startServer(t, { jwtSecret: secret })
  const part = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
  const exp = Math.floor(Date.now() / 1000) + 3600
  const input = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ sub: 'carol', exp, projects: ['team-*', 'lobby'] })}`
  const token = `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
  const client = await connect(t, `${server.ws}?token=${token}`)
  for (const project of ['other', 'team', 'lobby-2']) {
    const error = await expectError(t, client, { type: 'join', project, ref: 'f' }, 'forbidden', `join ${project}`)
    t.equal(error.project, project)
    t.equal(error.ref, 'f')
    t.equal((await fetchMembersAs(server, project, token)), 403, 'and it is not readable over HTTP either')
  }
  t.match(await client.join('team-a'), { userId: 'carol', project: 'team-a' })
  t.match(await client.join('lobby'), { userId: 'carol', project: 'lobby' })
})

/** Status of GET members with a bearer token. */
async function fetchMembersAs (server: TestServer, project: string, token: string): Promise<number> {
  const res = await fetch(`${server.http}/projects/${project}/members`, { headers: { authorization: `Bearer ${token}` } })
  await res.arrayBuffer()
  return res.status
}

/** A memory log whose appends fail on demand, as a broken store would. */
class FailingLog extends MemoryOperationLog {
  override async append (op: NewOp): Promise<AppendResult> {
    if (op.data === 'store-down') throw new Error('connect ECONNREFUSED 127.0.0.1:6379')
    return await super.append(op)
  }
}

t.test('a failing dependency gets unavailable on that frame only, and the connection keeps working', async (t) => {
  const server = await startServer(t, { ports: { log: new FailingLog() } })
  const client = await connect(t, server.ws)
  await client.join('p')
  const error = await expectError(t, client, { type: 'op', project: 'p', data: 'store-down', ref: 'u' }, 'unavailable', 'log unreachable')
  t.match(error, { project: 'p', ref: 'u' })
  t.notMatch(error.message, /ECONNREFUSED|6379/, 'the dependency\'s details are not sent to the client')
  t.match(await client.request({ type: 'op', project: 'p', data: 'fine' }), { type: 'ack', seq: 1 }, 'the next op is appended')
})

/** A memory log whose next append waits until the test lets it go. */
class GatedLog extends MemoryOperationLog {
  entered: Promise<void>
  release: () => void = () => {}
  #enter: () => void = () => {}

  constructor () {
    super()
    this.entered = new Promise((resolve) => { this.#enter = resolve })
  }

  override async append (op: NewOp): Promise<AppendResult> {
    if (op.data === 'gated') {
      this.#enter()
      await new Promise<void>((resolve) => { this.release = resolve })
    }
    return await super.append(op)
  }
}

t.test('frames during the shutdown drain get unavailable, ops in flight are acked, then 1001', async (t) => {
  const log = new GatedLog()
  const server = await startServer(t, { ports: { log }, shutdownTimeoutMs: 5000 })
  const client = await connect(t, server.ws)
  await client.join('p')
  const inFlightAck = client.next((f) => f.ref === 'in-flight')
  client.send({ type: 'op', project: 'p', data: 'gated', ref: 'in-flight' })
  await log.entered
  const closing = server.close()
  await waitFor(() => server.app.flow.hub.draining, { what: 'the drain to start', timeoutMs: 3000, intervalMs: 20 })
  const error = await expectError(t, client, { type: 'op', project: 'p', data: 1, ref: 'late' }, 'unavailable', 'op while draining')
  t.match(error, { project: 'p', ref: 'late' })
  await expectError(t, client, { type: 'join', project: 'q', ref: 'late-join' }, 'unavailable', 'join while draining')
  log.release()
  t.match(await inFlightAck, { type: 'ack', seq: 1 }, 'the op in flight is acked before the close')
  t.equal((await withDeadline(client.closed, 'close', 5000)).code, 1001)
  await closing
})
