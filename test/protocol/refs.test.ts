import t from 'tap'
import { startServer } from '../helpers/server.js'
import { connect, type Frame, type TestClient } from '../helpers/client.js'
import { expectError } from '../helpers/protocol.js'

/** Sends a frame carrying `ref` and resolves the first frame echoing it. */
async function withRef (client: TestClient, frame: Record<string, unknown>, ref: string | number): Promise<Frame> {
  const reply = client.next((f) => f.ref === ref)
  client.send({ ...frame, ref })
  return await reply
}

t.test('ping is answered by pong with the server time and the ref', async (t) => {
  const server = await startServer(t)
  const client = await connect(t, server.ws)
  const before = Date.now()
  const pong = await withRef(client, { type: 'ping' }, 'p-1')
  t.same(Object.keys(pong).sort(), ['ref', 'ts', 'type'])
  t.equal(pong.type, 'pong')
  t.ok(typeof pong.ts === 'number' && pong.ts >= before && pong.ts <= Date.now(), 'ts is the server time in ms')
  // Without a ref, the pong carries none.
  client.send({ type: 'ping' })
  const bare = await client.next('pong')
  t.notOk('ref' in bare, 'no ref when none was sent')
  t.type(bare.ts, 'number')
})

t.test('string and integer refs are echoed on every direct reply', async (t) => {
  const server = await startServer(t, { maxProjectsPerConnection: 2 })
  const client = await connect(t, server.ws)
  const refs: Array<string | number> = ['a', 'x'.repeat(64), 0, 1, -42, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, '0', '']
  for (const ref of refs) {
    const name = JSON.stringify(ref)
    t.match(await withRef(client, { type: 'ping' }, ref), { type: 'pong', ref }, `pong ${name}`)
    t.match(await withRef(client, { type: 'join', project: 'p' }, ref), { type: 'joined', project: 'p', ref }, `joined ${name}`)
    t.match(await withRef(client, { type: 'op', project: 'p', data: 1 }, ref), { type: 'ack', project: 'p', ref }, `ack ${name}`)
    t.match(await withRef(client, { type: 'sync', project: 'p', since: 0 }, ref), { type: 'synced', project: 'p', ref }, `synced ${name}`)
    t.match(await withRef(client, { type: 'leave', project: 'p' }, ref), { type: 'left', project: 'p', ref }, `left ${name}`)
    t.match(await withRef(client, { type: 'leave', project: 'p' }, ref), { type: 'error', code: 'not_joined', ref }, `not_joined ${name}`)
    t.match(await withRef(client, { type: 'what' }, ref), { type: 'error', code: 'unknown_type', ref }, `unknown_type ${name}`)
    t.match(await withRef(client, { type: 'join', project: 'a b' }, ref), { type: 'error', code: 'bad_request', ref }, `bad_request ${name}`)
  }
  await client.join('q1')
  await client.join('q2')
  t.match(await withRef(client, { type: 'join', project: 'q3' }, 9), { type: 'error', code: 'limit_exceeded', project: 'q3', ref: 9 }, 'limit_exceeded 9')
})

t.test('frames without a ref get replies without one', async (t) => {
  const server = await startServer(t)
  const client = await connect(t, server.ws)
  const expect = async (frame: Record<string, unknown>, type: string): Promise<void> => {
    const reply = client.next(type)
    client.send(frame)
    const got = await reply
    t.notOk('ref' in got, `${type} has no ref`)
  }
  await expect({ type: 'join', project: 'p' }, 'joined')
  await expect({ type: 'op', project: 'p', data: 1 }, 'ack')
  await expect({ type: 'sync', project: 'p', since: 0 }, 'synced')
  await expect({ type: 'leave', project: 'p' }, 'left')
  await expect({ type: 'leave', project: 'p' }, 'error')
})

t.test('an unusable ref gets bad_request without a ref', async (t) => {
  const server = await startServer(t)
  const client = await connect(t, server.ws)
  for (const ref of ['x'.repeat(65), 1.5, Number.MAX_SAFE_INTEGER + 1, true, null, { id: 1 }, ['a']]) {
    const error = await expectError(t, client, { type: 'ping', ref }, 'bad_request', `ref ${JSON.stringify(ref).slice(0, 16)}`)
    t.notOk('ref' in error, 'the unusable ref is not echoed')
  }
})
