import t, { type Test } from 'tap'
import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance } from 'fastify'
import websocket from '@fastify/websocket'
import WebSocket, { type RawData } from 'ws'
import flow from '../../app.js'
import { startServer, type TestServer } from '../helpers/server.js'
import { connect } from '../helpers/client.js'
import { hs256, SECRET } from '../helpers/jwt.js'
import { refusedUpgrade } from '../helpers/upgrade.js'
import { waitFor, withDeadline } from '../helpers/wait.js'

const token = hs256({ sub: 'alice' })
const auth = { authorization: `Bearer ${token}` }

interface Host {
  readonly server: TestServer
  /** URLs the host's own onRequest hook saw */
  readonly hooked: string[]
}

/**
 * A host app with its own route, onRequest hook and error handler, and Flow
 * registered under /rt with JWT auth on.
 */
async function startHost (t: Test, options: Parameters<typeof startServer>[1] = {}, extra?: (app: FastifyInstance) => Promise<void>): Promise<Host> {
  const hooked: string[] = []
  const server = await startServer(t, { prefix: '/rt', jwtSecret: SECRET, ...options }, async (app) => {
    app.addHook('onRequest', async (request) => { hooked.push(request.url) })
    app.setErrorHandler(async (error: Error, _request, reply) => {
      await reply.code(418).send({ host: true, message: error.message })
    })
    app.get('/hello', async (request) => ({
      hello: 'host',
      flowIdentity: 'flowIdentity' in request,
      ws: 'ws' in request
    }))
    app.get('/boom', async () => { throw new Error('host failure') })
    if (extra !== undefined) await extra(app)
  })
  return { server, hooked }
}

function text (data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8')
  if (Buffer.isBuffer(data)) return data.toString('utf8')
  return Buffer.from(data).toString('utf8')
}

/** ws://127.0.0.1:PORT (no prefix) */
function root (server: TestServer): string {
  return server.ws.replace(/\/rt\/ws$/, '')
}

t.test('Flow serves /rt/ws, /rt/health, /rt/ws/stats, /rt/metrics and /rt/projects inside the host', async (t) => {
  const { server } = await startHost(t)
  const alice = await connect(t, `${server.ws}?token=${token}`)
  t.equal((await alice.join('doc-1')).userId, 'alice')
  t.match(await alice.request({ type: 'op', project: 'doc-1', id: 'o1', data: 1 }), { type: 'ack', seq: 1 })

  const { app } = server
  const health = await app.inject({ method: 'GET', url: '/rt/health' })
  t.equal(health.statusCode, 200)
  t.match(health.json(), { status: 'ok', auth: 'jwt' })
  t.match((await app.inject({ method: 'GET', url: '/rt/ws/stats' })).json(), { connections: 1, sessions: 1, ops: { appended: 1 } })
  t.match((await app.inject({ method: 'GET', url: '/rt/metrics' })).body, /^flow_ops_appended_total 1$/m)
  t.match((await app.inject({ method: 'GET', url: '/rt/projects/doc-1/ops', headers: auth })).json(), { seq: 1, ops: [{ id: 'o1' }] })
  t.match((await app.inject({ method: 'GET', url: '/rt/projects/doc-1/members', headers: auth })).json(), { members: [{ userId: 'alice' }] })
  const posted = await app.inject({ method: 'POST', url: '/rt/projects/doc-1/ops', headers: auth, payload: { data: 2 } })
  t.equal(posted.statusCode, 201)

  for (const url of ['/health', '/ws/stats', '/metrics', '/projects/doc-1/ops']) {
    t.equal((await app.inject({ method: 'GET', url, headers: auth })).statusCode, 404, `${url} is not served outside the prefix`)
  }
  t.equal(await refusedUpgrade(`${root(server)}/ws?token=${token}`), 404, 'no socket outside the prefix')
})

t.test('the host keeps its own route, hooks and error handler, and Flow\'s hooks stay off the host\'s routes', async (t) => {
  const { server, hooked } = await startHost(t)
  const { app } = server
  const hello = await app.inject({ method: 'GET', url: '/hello' })
  t.equal(hello.statusCode, 200, 'Flow\'s auth does not guard the host\'s route')
  t.same(hello.json(), { hello: 'host', flowIdentity: false, ws: false }, 'Flow\'s request decorators stay in Flow')

  const boom = await app.inject({ method: 'GET', url: '/boom' })
  t.equal(boom.statusCode, 418)
  t.same(boom.json(), { host: true, message: 'host failure' }, 'the host\'s error handler handles the host\'s errors')

  const bad = await app.inject({ method: 'GET', url: '/rt/projects/doc-1/ops?since=-1', headers: auth })
  t.equal(bad.statusCode, 400)
  t.match(bad.json(), { statusCode: 400, code: 'bad_request', error: 'Bad Request', message: String }, 'Flow\'s errors keep Flow\'s shape')
  const anonymous = await app.inject({ method: 'GET', url: '/rt/projects/doc-1/ops' })
  t.equal(anonymous.statusCode, 401)
  t.match(anonymous.json(), { statusCode: 401, code: 'unauthorized' })

  // Decision: the host's hooks wrap Flow's routes as they wrap any plugin's
  // (that is how a host protects /rt/health); Flow's never wrap the host's.
  t.ok(hooked.includes('/hello'), 'the host\'s hook runs on its own route')
  t.ok(hooked.includes('/rt/projects/doc-1/ops'), 'the host\'s hook also runs on Flow\'s routes')
})

t.test('Flow\'s load shedding answers 503 on Flow\'s routes only, never on the host\'s', async (t) => {
  // Any heap is over a 1-byte limit: under-pressure sheds from its first sample.
  const { server } = await startHost(t, { maxHeapUsedBytes: 1 })
  const { app } = server
  const shed = await waitFor(async () => {
    const res = await app.inject({ method: 'GET', url: '/rt/health' })
    return res.statusCode === 503 ? res : undefined
  }, { what: '/rt/health to answer 503', timeoutMs: 5000, intervalMs: 20 })
  t.match(shed.json(), { statusCode: 503, code: 'unavailable' })
  t.equal((await app.inject({ method: 'GET', url: '/rt/projects/doc-1/ops', headers: auth })).statusCode, 503)
  t.equal(await refusedUpgrade(`${server.ws}?token=${token}`), 503, 'upgrades are shed too')
  t.equal((await app.inject({ method: 'GET', url: '/hello' })).statusCode, 200, 'the host\'s route still answers')
})

t.test('app.flow is decorated on the host', async (t) => {
  const { server } = await startHost(t, { instanceId: 'embedded-1' })
  t.ok(server.app.hasDecorator('flow'))
  t.equal(server.app.flow.instanceId, 'embedded-1')
  t.equal(server.app.flow.config.jwtSecret, SECRET)
  t.equal(server.app.flow.hub.connectionCount, 0)
})

t.test('closing the host app closes Flow\'s sockets with 1001', async (t) => {
  const { server } = await startHost(t)
  const alice = await connect(t, `${server.ws}?token=${token}`)
  const bob = await connect(t, `${server.ws}?token=${hs256({ sub: 'bob' })}`)
  await alice.join('doc-1')
  await bob.join('doc-1')
  await server.close()
  t.equal((await alice.closed).code, 1001)
  t.equal((await bob.closed).code, 1001)
})

t.test('a host that registered @fastify/websocket itself can register Flow, and its own sockets keep working', async (t) => {
  const { server } = await startHost(t, {}, async (app) => {
    await app.register(websocket)
    app.get('/echo', { websocket: true }, (socket) => {
      socket.on('message', (data) => { socket.send(text(data)) })
    })
  })
  const alice = await connect(t, `${server.ws}?token=${token}`)
  t.equal((await alice.join('doc-1')).userId, 'alice')

  const echo = new WebSocket(`${root(server)}/echo`)
  t.teardown(() => { echo.terminate() })
  await new Promise((resolve, reject) => { echo.once('open', resolve); echo.once('error', reject) })
  const reply = new Promise<string>((resolve) => { echo.once('message', (data) => { resolve(text(data)) }) })
  echo.send('ping from the host\'s client')
  t.equal(await reply, 'ping from the host\'s client')

  await server.close()
  t.equal((await alice.closed).code, 1001, 'Flow\'s socket is drained and closed with 1001, not by the host\'s websocket plugin')
})

t.test('upgrades to paths Flow does not serve get a plain HTTP answer, and the host still closes', async (t) => {
  const { server } = await startHost(t)
  t.equal(await refusedUpgrade(`${root(server)}/hello`), 200, 'the host\'s route answers as plain HTTP')
  t.equal(await refusedUpgrade(`${root(server)}/nowhere?token=${token}`), 404)
  t.equal(await refusedUpgrade(`${server.ws}/extra`), 404)
  const alice = await connect(t, `${server.ws}?token=${token}`)
  await alice.join('doc-1')
  await withDeadline(server.close(), 'the host app to close', 5000)
  t.equal((await alice.closed).code, 1001)
})

t.test('at the root prefix, an upgrade to an unknown path or refused by load shedding does not hold the close', async (t) => {
  const server = await startServer(t, { maxHeapUsedBytes: 1 })
  t.equal(await refusedUpgrade(server.ws.replace(/\/ws$/, '/nowhere')), 404)
  await waitFor(async () => (await server.app.inject({ method: 'GET', url: '/health' })).statusCode === 503, { what: 'load shedding', timeoutMs: 5000, intervalMs: 20 })
  t.equal(await refusedUpgrade(server.ws), 503)
  await withDeadline(server.close(), 'the app to close', 5000)
})

t.test('a prefix written with a trailing slash serves the socket at /rt/ws', async (t) => {
  const server = await startServer(t, { prefix: '/rt/' })
  const address = server.app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  const alice = await connect(t, `ws://127.0.0.1:${address.port}/rt/ws?userId=alice`)
  t.equal((await alice.join('doc-1')).userId, 'alice')
  t.equal((await server.app.inject({ method: 'GET', url: '/rt/health' })).statusCode, 200)
})

/** A Fastify logger writing JSON lines into `lines`. */
function capture (lines: Array<Record<string, unknown>>): Writable {
  return new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>)
      callback()
    }
  })
}

t.test('a host whose router refuses 128-character path parameters is warned at boot', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const narrow = Fastify({ logger: { level: 'warn', stream: capture(lines) } })
  t.teardown(async () => { await narrow.close() })
  await narrow.register(flow, { env: {}, prefix: '/rt' })
  await narrow.ready()
  t.ok(lines.some((l) => typeof l.msg === 'string' && l.msg.includes('routerOptions.maxParamLength >= 128')), 'the default router (100) is warned about')

  const wideLines: Array<Record<string, unknown>> = []
  const wide = Fastify({ logger: { level: 'warn', stream: capture(wideLines) }, routerOptions: { maxParamLength: 200 } })
  t.teardown(async () => { await wide.close() })
  await wide.register(flow, { env: {}, prefix: '/rt' })
  await wide.ready()
  t.notOk(wideLines.some((l) => typeof l.msg === 'string' && l.msg.includes('maxParamLength')), 'a wide enough router is not')
  const longest = 'p'.repeat(128)
  t.equal((await wide.inject({ method: 'POST', url: `/rt/projects/${longest}/ops`, payload: { data: 1 } })).statusCode, 201)
})

t.test('the demo board is served only when asked: not in a host app by default, at / when demo is on', async (t) => {
  const quiet = await startServer(t, { prefix: '/rt' })
  t.equal((await quiet.app.inject({ url: '/rt/' })).statusCode, 404, 'a host app gets no demo page unless it asks')
  t.equal((await quiet.app.inject({ url: '/rt/app.js' })).statusCode, 404)
  const shown = await startServer(t, { prefix: '/rt', demo: true })
  const page = await shown.app.inject({ url: '/rt/' })
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], /text\/html/)
})
