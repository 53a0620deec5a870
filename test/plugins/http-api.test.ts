import t from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { startServer } from '../helpers/server.js'
import { connect } from '../helpers/client.js'
import { buildServer } from '../../server.js'

interface OpBody {
  project: string
  seq: number
  id: string
  userId: string
  sessionId: string | null
  data: unknown
  ts: number
}

interface HistoryBody {
  project: string
  epoch: string
  seq: number
  ops: OpBody[]
  reset: boolean
}

async function post (app: FastifyInstance, project: string, body: unknown): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'POST', url: `/projects/${project}/ops`, payload: body as Record<string, unknown> })
}

async function history (app: FastifyInstance, project: string, query = ''): Promise<HistoryBody> {
  const res = await app.inject({ method: 'GET', url: `/projects/${project}/ops${query}` })
  if (res.statusCode !== 200) throw new Error(`GET ops${query}: ${res.statusCode} ${res.body}`)
  return res.json<HistoryBody>()
}

/** Appends `count` ops straight through the hub (setup, not under test). */
async function fill (app: FastifyInstance, project: string, count: number): Promise<void> {
  for (let i = 1; i <= count; i++) await app.flow.hub.post(project, 'setup', undefined, { i })
}

t.test('posting an op answers 201 with its seq, and repeating its id answers 200 with the original seq', async (t) => {
  const { app } = await startServer(t)
  const first = await post(app, 'doc-1', { id: 'op-a', data: { x: 1 } })
  t.equal(first.statusCode, 201)
  t.same(first.json(), { project: 'doc-1', id: 'op-a', seq: 1 })

  const second = await post(app, 'doc-1', { data: 'no id' })
  t.equal(second.statusCode, 201)
  const made = second.json<{ id: string, seq: number }>()
  t.equal(made.seq, 2)
  t.match(made.id, /^[A-Za-z0-9_-]{1,64}$/, 'the server makes an op id when none is given')

  const repeat = await post(app, 'doc-1', { id: 'op-a', data: { x: 'ignored' } })
  t.equal(repeat.statusCode, 200)
  t.same(repeat.json(), { project: 'doc-1', id: 'op-a', seq: 1 })

  const page = await history(app, 'doc-1')
  t.equal(page.seq, 2, 'the repeat appended nothing')
  t.same(page.ops.map((op) => op.data), [{ x: 1 }, 'no id'])
})

t.test('a posted op reaches a joined member as an op with sessionId null and userId api', async (t) => {
  const server = await startServer(t)
  const alice = await connect(t, server.ws + '?userId=alice')
  await alice.join('doc-1')
  const res = await post(server.app, 'doc-1', { id: 'from-http', data: { hello: 'world' } })
  t.equal(res.statusCode, 201)
  const op = await alice.next('op')
  t.match(op, { type: 'op', project: 'doc-1', seq: 1, id: 'from-http', userId: 'api', sessionId: null, data: { hello: 'world' } })
  t.type(op.ts, 'number')

  const repeat = await post(server.app, 'doc-1', { id: 'from-http', data: { hello: 'again' } })
  t.equal(repeat.statusCode, 200)
  await alice.request({ type: 'ping' })
  t.equal(alice.all('op').length, 1, 'a repeated id is not broadcast again')
})

t.test('members lists the sessions joined to a project with their presence', async (t) => {
  const server = await startServer(t)
  const alice = await connect(t, server.ws + '?userId=alice')
  const joined = await alice.join('doc-1', { presence: { cursor: 7 } })
  const res = await server.app.inject({ method: 'GET', url: '/projects/doc-1/members' })
  t.equal(res.statusCode, 200)
  const body = res.json<{ project: string, members: Array<Record<string, unknown>> }>()
  t.equal(body.project, 'doc-1')
  t.equal(body.members.length, 1)
  t.same(body.members[0], { sessionId: joined.sessionId, userId: 'alice', presence: { cursor: 7 }, joinedAt: body.members[0]?.joinedAt })
  t.type(body.members[0]?.joinedAt, 'number')

  const empty = await server.app.inject({ method: 'GET', url: '/projects/doc-2/members' })
  t.same(empty.json(), { project: 'doc-2', members: [] })
})

t.test('ops pages with since and limit, 100 ops by default', async (t) => {
  const { app } = await startServer(t)
  await fill(app, 'doc-1', 150)

  const first = await history(app, 'doc-1')
  t.equal(first.project, 'doc-1')
  t.type(first.epoch, 'string')
  t.equal(first.seq, 150)
  t.equal(first.reset, false)
  t.equal(first.ops.length, 100)
  t.same(first.ops.map((op) => op.seq), Array.from({ length: 100 }, (_, i) => i + 1))
  t.match(first.ops[0], { project: 'doc-1', seq: 1, userId: 'setup', sessionId: null, data: { i: 1 } })

  const rest = await history(app, 'doc-1', '?since=100')
  t.same(rest.ops.map((op) => op.seq), Array.from({ length: 50 }, (_, i) => i + 101))
  t.equal(rest.epoch, first.epoch)

  const window = await history(app, 'doc-1', '?since=10&limit=5')
  t.same(window.ops.map((op) => op.seq), [11, 12, 13, 14, 15])

  const atHead = await history(app, 'doc-1', '?since=150')
  t.same({ ops: atHead.ops, reset: atHead.reset }, { ops: [], reset: false }, 'since at the head is an empty page, not a reset')

  const unknown = await history(app, 'never-used')
  t.same({ seq: unknown.seq, ops: unknown.ops, reset: unknown.reset }, { seq: 0, ops: [], reset: false })
})

t.test('limit is capped at opsPageMax, which allows at least 500', async (t) => {
  const defaults = await startServer(t, { historyMemory: 2000 })
  await fill(defaults.app, 'doc-1', 1100)
  t.equal((await history(defaults.app, 'doc-1', '?limit=500')).ops.length, 500)
  t.equal((await history(defaults.app, 'doc-1', '?limit=1000000')).ops.length, 1000, 'the default cap is 1,000')

  const capped = await startServer(t, { opsPageMax: 500 })
  await fill(capped.app, 'doc-1', 600)
  const page = await history(capped.app, 'doc-1', '?limit=600')
  t.equal(page.ops.length, 500)
  t.equal(page.ops.at(-1)?.seq, 500)
})

t.test('since above the head answers reset with no ops', async (t) => {
  const { app } = await startServer(t)
  await fill(app, 'doc-1', 3)
  const page = await history(app, 'doc-1', '?since=4')
  t.same({ seq: page.seq, ops: page.ops, reset: page.reset }, { seq: 3, ops: [], reset: true })
})

t.test('since older than the kept history answers reset with no ops', async (t) => {
  const { app } = await startServer(t, { historyMemory: 1 })
  await fill(app, 'doc-1', 3)
  const old = await history(app, 'doc-1', '?since=0')
  t.same({ seq: old.seq, ops: old.ops, reset: old.reset }, { seq: 3, ops: [], reset: true })
  const kept = await history(app, 'doc-1', '?since=2')
  t.equal(kept.reset, false)
  t.same(kept.ops.map((op) => op.seq), [3])
})

t.test('bad requests answer 400 in Fastify\'s shape with code bad_request', async (t) => {
  const { app } = await startServer(t)
  const cases: Array<{ name: string, method: 'GET' | 'POST', url: string, payload?: string, contentType?: string }> = [
    { name: 'project with a space (members)', method: 'GET', url: '/projects/a%20b/members' },
    { name: 'project with a slash (ops)', method: 'GET', url: '/projects/a%2Fb/ops' },
    { name: 'project with a colon (post)', method: 'POST', url: '/projects/a:b/ops', payload: '{"data":1}' },
    { name: 'negative since', method: 'GET', url: '/projects/doc-1/ops?since=-1' },
    { name: 'since not a number', method: 'GET', url: '/projects/doc-1/ops?since=abc' },
    { name: 'since not an integer', method: 'GET', url: '/projects/doc-1/ops?since=1.5' },
    { name: 'limit 0', method: 'GET', url: '/projects/doc-1/ops?limit=0' },
    { name: 'body not JSON', method: 'POST', url: '/projects/doc-1/ops', payload: '{"data":' },
    { name: 'empty body', method: 'POST', url: '/projects/doc-1/ops', payload: '' },
    { name: 'body without data', method: 'POST', url: '/projects/doc-1/ops', payload: '{"id":"a"}' },
    { name: 'body an array', method: 'POST', url: '/projects/doc-1/ops', payload: '[1]' },
    { name: 'id with a space', method: 'POST', url: '/projects/doc-1/ops', payload: '{"id":"a b","data":1}' },
    { name: 'id too long', method: 'POST', url: '/projects/doc-1/ops', payload: JSON.stringify({ id: 'i'.repeat(65), data: 1 }) },
    { name: 'id not a string', method: 'POST', url: '/projects/doc-1/ops', payload: '{"id":5,"data":1}' }
  ]
  for (const c of cases) {
    const res = await app.inject({
      method: c.method,
      url: c.url,
      ...(c.payload === undefined ? {} : { payload: c.payload, headers: { 'content-type': c.contentType ?? 'application/json' } })
    })
    t.equal(res.statusCode, 400, `${c.name}: status`)
    const body = res.json<Record<string, unknown>>()
    t.same(Object.keys(body).sort(), ['code', 'error', 'message', 'statusCode'], `${c.name}: shape`)
    t.match(body, { statusCode: 400, code: 'bad_request', error: 'Bad Request', message: String }, `${c.name}: body`)
  }
  t.equal((await history(app, 'doc-1')).seq, 0, 'no bad request appended anything')
})

t.test('the server of npm start takes project ids of 128 characters and answers 400 for 129', async (t) => {
  const app = await buildServer({ env: {}, logLevel: 'silent' })
  t.teardown(async () => { await app.close() })
  const longest = 'p'.repeat(128)
  const posted = await post(app, longest, { data: 1 })
  t.equal(posted.statusCode, 201)
  t.equal((await history(app, longest)).seq, 1)
  const members = await app.inject({ method: 'GET', url: `/projects/${longest}/members` })
  t.equal(members.statusCode, 200)

  const tooLong = await post(app, 'p'.repeat(129), { data: 1 })
  t.equal(tooLong.statusCode, 400)
  t.match(tooLong.json(), { statusCode: 400, code: 'bad_request', error: 'Bad Request' })
  t.equal((await app.inject({ url: '/' })).statusCode, 200, 'npm start serves the demo board at /')
})

t.test('a body over the payload limit answers 413 with code limit_exceeded and appends nothing', async (t) => {
  const { app } = await startServer(t, { maxPayloadBytes: 1024 })
  const res = await post(app, 'doc-1', { data: 'x'.repeat(2000) })
  t.equal(res.statusCode, 413)
  t.match(res.json(), { statusCode: 413, code: 'limit_exceeded', error: 'Payload Too Large', message: String })
  t.equal((await history(app, 'doc-1')).seq, 0)
  t.equal((await post(app, 'doc-1', { data: 'x'.repeat(900) })).statusCode, 201, 'a body under the limit is taken')
})
