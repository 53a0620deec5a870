import t, { type Test } from 'tap'
import { request } from 'node:http'
import { randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import flow from '../../app.js'
import { startServer } from '../helpers/server.js'
import { connect } from '../helpers/client.js'
import { refusedUpgrade } from '../helpers/upgrade.js'
import { hs256, nowSeconds, SECRET } from '../helpers/jwt.js'
import type { AuthenticateHook } from '../../app.js'

const API_KEY = 'flow-test-api-key-000111222333'

async function connectionsOpened (app: FastifyInstance): Promise<number> {
  const res = await app.inject({ method: 'GET', url: '/ws/stats' })
  return res.json<{ connectionsOpened: number }>().connectionsOpened
}

function bearer (token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` }
}

async function call (app: FastifyInstance, method: 'GET' | 'POST', url: string, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return await app.inject({ method, url, headers, ...(method === 'POST' ? { payload: { data: { from: 'test' } } } : {}) })
}

t.test('with a JWT secret, an upgrade without a token gets 401 and no socket', async (t) => {
  const server = await startServer(t, { jwtSecret: SECRET })
  t.equal(await refusedUpgrade(server.ws), 401)
  t.equal(await refusedUpgrade(server.ws + '?token='), 401, 'an empty token is no token')
  t.equal(await refusedUpgrade(server.ws, { authorization: 'Basic dXNlcjpwYXNz' }), 401, 'another scheme is no token')
  t.equal(await refusedUpgrade(server.ws + '?userId=alice'), 401, 'open mode\'s userId does not get in')
  t.equal(await connectionsOpened(server.app), 0, 'the hub never saw a connection')
})

t.test('a token in ?token= connects as its sub', async (t) => {
  const server = await startServer(t, { jwtSecret: SECRET })
  const token = hs256({ sub: 'alice', exp: nowSeconds() + 3600 })
  const alice = await connect(t, `${server.ws}?token=${token}`)
  const joined = await alice.join('doc-1')
  t.equal(joined.userId, 'alice')
})

t.test('a token in Authorization: Bearer connects as its sub', async (t) => {
  const server = await startServer(t, { jwtSecret: SECRET })
  const bob = await connect(t, server.ws, { headers: bearer(hs256({ sub: 'bob' })) })
  const joined = await bob.join('doc-1')
  t.equal(joined.userId, 'bob')
  const ack = await bob.request({ type: 'op', project: 'doc-1', data: 1 })
  t.equal(ack.type, 'ack')
})

t.test('an expired, forged or not yet valid token gets 401', async (t) => {
  const server = await startServer(t, { jwtSecret: SECRET })
  const expired = hs256({ sub: 'alice', exp: nowSeconds() - 3600 })
  t.equal(await refusedUpgrade(`${server.ws}?token=${expired}`), 401, 'expired, in the query')
  t.equal(await refusedUpgrade(server.ws, bearer(expired)), 401, 'expired, in the header')
  t.equal(await refusedUpgrade(`${server.ws}?token=${hs256({ sub: 'alice' }, 'another-secret')}`), 401, 'signed with another secret')
  t.equal(await refusedUpgrade(`${server.ws}?token=${hs256({ sub: 'alice', nbf: nowSeconds() + 3600 })}`), 401, 'not yet valid')
  t.equal(await refusedUpgrade(`${server.ws}?token=${hs256({ exp: nowSeconds() + 60 })}`), 401, 'without sub')
  t.equal(await connectionsOpened(server.app), 0)
})

t.test('a token whose projects claim excludes a project gets forbidden on join and keeps its connection', async (t) => {
  const server = await startServer(t, { jwtSecret: SECRET })
  const token = hs256({ sub: 'carol', projects: ['doc-1', 'team-*'] })
  const carol = await connect(t, `${server.ws}?token=${token}`)
  const refused = await carol.request({ type: 'join', project: 'doc-2' })
  t.match(refused, { type: 'error', code: 'forbidden', project: 'doc-2' })
  t.equal((await carol.join('doc-1')).userId, 'carol')
  t.equal((await carol.join('team-red')).project, 'team-red', 'a prefix pattern allows the project')
  const pong = await carol.request({ type: 'ping' })
  t.equal(pong.type, 'pong', 'the connection stays open')
})

t.test('with auth on, the project endpoints need a token allowing the project: 401 without, 403 when not allowed', async (t) => {
  const { app } = await startServer(t, { jwtSecret: SECRET })
  for (const [method, url] of [['GET', '/projects/doc-1/members'], ['GET', '/projects/doc-1/ops'], ['POST', '/projects/doc-1/ops']] as const) {
    const none = await call(app, method, url)
    t.equal(none.statusCode, 401, `${method} ${url} without a token`)
    t.same(none.json(), { statusCode: 401, code: 'unauthorized', error: 'Unauthorized', message: none.json<{ message: string }>().message })
    t.equal(none.headers['www-authenticate'], 'Bearer')

    const other = await call(app, method, url, bearer(hs256({ sub: 'dave', projects: ['doc-2'] })))
    t.equal(other.statusCode, 403, `${method} ${url} with a token for another project`)
    t.match(other.json(), { statusCode: 403, code: 'forbidden', error: 'Forbidden', message: String })

    const expired = await call(app, method, url, bearer(hs256({ sub: 'dave', exp: nowSeconds() - 3600 })))
    t.equal(expired.statusCode, 401, `${method} ${url} with an expired token`)
  }
  const token = hs256({ sub: 'erin', projects: ['doc-*'] })
  const posted = await call(app, 'POST', '/projects/doc-1/ops', bearer(token))
  t.equal(posted.statusCode, 201)
  const page = await call(app, 'GET', '/projects/doc-1/ops', bearer(token))
  t.equal(page.statusCode, 200)
  t.match(page.json(), { ops: [{ seq: 1, userId: 'erin', sessionId: null }] }, 'an op posted with a token carries its sub')
  t.equal((await call(app, 'GET', '/projects/doc-1/members', bearer(token))).statusCode, 200)
})

t.test('the API key reads and posts as api, and a wrong key gets 401', async (t) => {
  const server = await startServer(t, { jwtSecret: SECRET, apiKey: API_KEY })
  const alice = await connect(t, `${server.ws}?token=${hs256({ sub: 'alice' })}`)
  await alice.join('doc-1')
  const posted = await call(server.app, 'POST', '/projects/doc-1/ops', bearer(API_KEY))
  t.equal(posted.statusCode, 201)
  t.match(await alice.next('op'), { userId: 'api', sessionId: null, data: { from: 'test' } })
  t.equal((await call(server.app, 'GET', '/projects/doc-1/ops', bearer(API_KEY))).statusCode, 200)
  t.equal((await call(server.app, 'GET', '/projects/doc-1/members', bearer(API_KEY))).statusCode, 200)

  for (const [method, url] of [['GET', '/projects/doc-1/members'], ['GET', '/projects/doc-1/ops'], ['POST', '/projects/doc-1/ops']] as const) {
    const wrong = await call(server.app, method, url, bearer(API_KEY + 'x'))
    t.equal(wrong.statusCode, 401, `${method} ${url} with a wrong key`)
    t.match(wrong.json(), { code: 'unauthorized' })
  }
  t.equal(await refusedUpgrade(`${server.ws}?token=${API_KEY}`), 401, 'the API key does not open a socket')
})

t.test('without auth and with an API key, posting needs the key and reading does not', async (t) => {
  const { app } = await startServer(t, { apiKey: API_KEY })
  const none = await call(app, 'POST', '/projects/doc-1/ops')
  t.equal(none.statusCode, 401)
  t.match(none.json(), { statusCode: 401, code: 'unauthorized', error: 'Unauthorized' })
  t.equal((await call(app, 'POST', '/projects/doc-1/ops', bearer('wrong'))).statusCode, 401)
  t.equal((await call(app, 'POST', '/projects/doc-1/ops', bearer(API_KEY))).statusCode, 201)
  t.equal((await call(app, 'GET', '/projects/doc-1/ops')).statusCode, 200)
  t.equal((await call(app, 'GET', '/projects/doc-1/members')).statusCode, 200)
})

t.test('without auth and without an API key, anyone may post as api', async (t) => {
  const { app } = await startServer(t)
  const posted = await call(app, 'POST', '/projects/doc-1/ops')
  t.equal(posted.statusCode, 201)
  t.match((await call(app, 'GET', '/projects/doc-1/ops')).json(), { ops: [{ userId: 'api' }] })
})

t.test('a host authenticate hook replaces JWT for sockets and the project API', async (t) => {
  const seen: string[] = []
  const authenticate: AuthenticateHook = async (request) => {
    seen.push(request.url)
    const user = request.headers['x-user']
    if (typeof user !== 'string') throw new Error('who are you?')
    return { userId: user, allows: (project) => project.startsWith(`${user}-`) }
  }
  const server = await startServer(t, { jwtSecret: SECRET, apiKey: API_KEY, authenticate })
  t.match((await server.app.inject({ method: 'GET', url: '/health' })).json(), { auth: 'hook' })

  const frank = await connect(t, server.ws, { headers: { 'x-user': 'frank' } })
  t.equal((await frank.join('frank-notes')).userId, 'frank')
  t.match(await frank.request({ type: 'join', project: 'gina-notes' }), { type: 'error', code: 'forbidden' })
  t.equal(await refusedUpgrade(`${server.ws}?token=${hs256({ sub: 'frank' })}`), 401, 'a JWT is not the hook\'s credential')

  const read = await call(server.app, 'GET', '/projects/frank-notes/ops', { 'x-user': 'frank' })
  t.equal(read.statusCode, 200)
  const posted = await call(server.app, 'POST', '/projects/frank-notes/ops', { 'x-user': 'frank' })
  t.equal(posted.statusCode, 201)
  t.match(await frank.next('op'), { userId: 'frank', sessionId: null })
  const forbidden = await call(server.app, 'GET', '/projects/gina-notes/ops', { 'x-user': 'frank' })
  t.equal(forbidden.statusCode, 403)
  t.match(forbidden.json(), { code: 'forbidden' })
  const anonymous = await call(server.app, 'GET', '/projects/frank-notes/ops')
  t.equal(anonymous.statusCode, 401)
  t.match(anonymous.json(), { statusCode: 401, code: 'unauthorized', message: 'who are you?' })
  t.equal((await call(server.app, 'POST', '/projects/gina-notes/ops', bearer(API_KEY))).statusCode, 201, 'the API key still works beside the hook')
  t.ok(seen.some((url) => url.startsWith('/ws')), 'the hook saw the upgrade')
})

t.test('/health, /ws/stats and /metrics need no token with auth on', async (t) => {
  const { app } = await startServer(t, { jwtSecret: SECRET })
  for (const url of ['/health', '/ws/stats', '/metrics']) {
    t.equal((await app.inject({ method: 'GET', url })).statusCode, 200, url)
  }
})

interface Refusal {
  readonly status: number
  readonly body: { code?: string, message?: string }
}

/** The status and JSON body of a refused upgrade; rejects when the upgrade is accepted. */
async function refusal (url: string, headers: Record<string, string> = {}): Promise<Refusal> {
  return await new Promise((resolve, reject) => {
    const req = request(url.replace(/^ws:/, 'http:'), {
      agent: false,
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': randomBytes(16).toString('base64'), ...headers }
    })
    req.once('upgrade', (_res, socket) => {
      socket.destroy()
      reject(new Error('the upgrade was accepted'))
    })
    req.once('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => { chunks.push(chunk) })
      res.once('end', () => { resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Refusal['body'] }) })
    })
    req.once('error', reject)
    req.end()
  })
}

t.test('with FLOW_JWT_AUDIENCE and FLOW_JWT_ISSUER set, a token for another service gets 401 naming the claim', async (t) => {
  const env = { FLOW_JWT_SECRET: SECRET, FLOW_JWT_AUDIENCE: 'flow-rt', FLOW_JWT_ISSUER: 'https://id.example.com' }
  const server = await startServer(t, { env })
  const ours = { aud: 'flow-rt', iss: 'https://id.example.com' }
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ iss: ours.iss }, 'token has no aud'],
    [{ ...ours, aud: 'billing-service' }, 'token aud does not match'],
    [{ aud: ours.aud }, 'token has no iss'],
    [{ ...ours, iss: 'https://billing.example.com' }, 'token iss does not match']
  ]
  for (const [claims, message] of cases) {
    const token = hs256({ sub: 'mallory', ...claims })
    t.same(await refusal(`${server.ws}?token=${token}`), { status: 401, body: { statusCode: 401, code: 'unauthorized', error: 'Unauthorized', message } }, `upgrade: ${message}`)
    const read = await call(server.app, 'GET', '/projects/doc-1/ops', bearer(token))
    t.equal(read.statusCode, 401, `HTTP: ${message}`)
    t.equal(read.json<{ message: string }>().message, message)
    t.notMatch(read.body, /billing|mallory/, 'the answer does not echo the token')
  }
  t.equal(await connectionsOpened(server.app), 0)
  const alice = await connect(t, `${server.ws}?token=${hs256({ sub: 'alice', ...ours })}`)
  t.equal((await alice.join('doc-1')).userId, 'alice')
  const both = hs256({ sub: 'alice', aud: ['billing-service', 'flow-rt'], iss: ours.iss })
  t.equal((await call(server.app, 'POST', '/projects/doc-1/ops', bearer(both))).statusCode, 201, 'an aud array holding the audience')
})

t.test('a token without exp gets 401 unless FLOW_JWT_REQUIRE_EXP=false', async (t) => {
  const server = await startServer(t, { jwtSecret: SECRET })
  const forever = hs256({ sub: 'alice', exp: undefined })
  t.same(await refusal(`${server.ws}?token=${forever}`), { status: 401, body: { statusCode: 401, code: 'unauthorized', error: 'Unauthorized', message: 'token has no exp' } })
  t.match((await call(server.app, 'GET', '/projects/doc-1/ops', bearer(forever))).json(), { statusCode: 401, message: 'token has no exp' })

  const lenient = await startServer(t, { env: { FLOW_JWT_SECRET: SECRET, FLOW_JWT_REQUIRE_EXP: 'false' } })
  const alice = await connect(t, `${lenient.ws}?token=${forever}`)
  t.equal((await alice.join('doc-1')).userId, 'alice')
  t.equal(await refusedUpgrade(`${lenient.ws}?token=${hs256({ sub: 'alice', exp: nowSeconds() - 3600 })}`), 401, 'an exp a token carries is still honoured')
})

t.test('a token without a projects claim gets 401 at the upgrade and over HTTP unless FLOW_JWT_DEFAULT_PROJECTS is set', async (t) => {
  const server = await startServer(t, { jwtSecret: SECRET })
  const unscoped = hs256({ sub: 'alice', projects: undefined })
  const message = 'token has no projects claim, and FLOW_JWT_DEFAULT_PROJECTS is not set'
  t.same(await refusal(server.ws, bearer(unscoped)), { status: 401, body: { statusCode: 401, code: 'unauthorized', error: 'Unauthorized', message } })
  for (const [method, url] of [['GET', '/projects/doc-1/members'], ['GET', '/projects/doc-1/ops'], ['POST', '/projects/doc-1/ops']] as const) {
    const res = await call(server.app, method, url, bearer(unscoped))
    t.equal(res.statusCode, 401, `${method} ${url}`)
    t.match(res.json(), { code: 'unauthorized', message })
  }
  t.equal(await connectionsOpened(server.app), 0)
  const none = await connect(t, `${server.ws}?token=${hs256({ sub: 'bob', projects: [] })}`)
  t.match(await none.request({ type: 'join', project: 'doc-1' }), { type: 'error', code: 'forbidden' }, 'an empty claim still connects and joins nothing')
})

t.test('FLOW_JWT_DEFAULT_PROJECTS gives a token without a projects claim those projects only', async (t) => {
  const server = await startServer(t, { env: { FLOW_JWT_SECRET: SECRET, FLOW_JWT_DEFAULT_PROJECTS: 'lobby,team-*' } })
  const unscoped = hs256({ sub: 'alice', projects: undefined })
  const alice = await connect(t, `${server.ws}?token=${unscoped}`)
  t.equal((await alice.join('lobby')).userId, 'alice')
  t.equal((await alice.join('team-red')).project, 'team-red')
  t.match(await alice.request({ type: 'join', project: 'doc-1' }), { type: 'error', code: 'forbidden', project: 'doc-1' })
  t.equal((await call(server.app, 'GET', '/projects/lobby/ops', bearer(unscoped))).statusCode, 200)
  t.equal((await call(server.app, 'GET', '/projects/doc-1/ops', bearer(unscoped))).statusCode, 403)
  const scoped = await connect(t, `${server.ws}?token=${hs256({ sub: 'bob', projects: ['doc-1'] })}`)
  t.match(await scoped.request({ type: 'join', project: 'lobby' }), { type: 'error', code: 'forbidden' }, 'a projects claim is not widened by the defaults')
})

t.test('a bad FLOW_JWT_DEFAULT_PROJECTS pattern stops start-up naming the variable', async (t) => {
  for (const setting of ['lobby,', 'doc 1', 'a*b']) {
    const app = Fastify({ logger: false })
    t.teardown(async () => { await app.close() })
    void app.register(flow, { env: { FLOW_JWT_SECRET: SECRET, FLOW_JWT_DEFAULT_PROJECTS: setting } })
    await t.rejects(async () => { await app.ready() }, { code: 'FLOW_ERR_CONFIG_INVALID', message: /^invalid configuration: FLOW_JWT_DEFAULT_PROJECTS: / }, setting)
  }
})

t.test('a token whose sub could spoof a name gets 401, and its sub is never shown', async (t) => {
  const server = await startServer(t, { jwtSecret: SECRET })
  const watcher = await connect(t, `${server.ws}?token=${hs256({ sub: 'watcher' })}`)
  await watcher.join('doc-1')
  for (const sub of ['mallory\nalice joined', '\u202e'.repeat(100) + 'ecila', 'ali\u2066ce', ' alice', 'x'.repeat(129)]) {
    const token = hs256({ sub })
    const refused = await refusal(`${server.ws}?token=${token}`)
    t.equal(refused.status, 401, JSON.stringify(sub).slice(0, 30))
    t.match(refused.body.message, /^token sub (has a control, format|has whitespace|is too long)/)
    t.equal((await call(server.app, 'POST', '/projects/doc-1/ops', bearer(token))).statusCode, 401)
  }
  t.equal(await connectionsOpened(server.app), 1, 'only the watcher connected')
  const members = await call(server.app, 'GET', '/projects/doc-1/members', bearer(hs256({ sub: 'watcher' })))
  t.same(members.json<{ members: Array<{ userId: string }> }>().members.map((m) => m.userId), ['watcher'])
  t.equal(watcher.all('member').length, 0, 'no one else joined')
  const named = await connect(t, `${server.ws}?token=${hs256({ sub: 'José Smith 👩‍💻' })}`)
  t.equal((await named.join('doc-1')).userId, 'José Smith 👩‍💻', 'printable names, spaces and emoji get in')
})

t.test('without auth, a ?userId= that is not a plain id connects as anonymous', async (t) => {
  const server = await startServer(t)
  for (const userId of ['mallory\nalice', '\u202e'.repeat(100) + 'ecila', 'ali\u2066ce', ' alice', 'x'.repeat(129)]) {
    const client = await connect(t, `${server.ws}?userId=${encodeURIComponent(userId)}`)
    t.equal((await client.join('doc-1')).userId, 'anonymous', JSON.stringify(userId).slice(0, 30))
    client.close()
  }
  const alice = await connect(t, `${server.ws}?userId=alice`)
  t.equal((await alice.join('doc-1')).userId, 'alice')
})

t.test('a host authenticate hook whose userId could spoof a name gets 401 saying so', async (t) => {
  const authenticate: AuthenticateHook = async (request) => {
    const user = request.headers['x-user']
    return { userId: typeof user === 'string' ? decodeURIComponent(user) : (undefined as unknown as string), allows: () => true }
  }
  const server = await startServer(t, { authenticate })
  for (const [user, reason] of [
    ['mallory%0Aalice', /has a control, format/],
    ['%E2%80%AE'.repeat(100) + 'ecila', /has a control, format/],
    ['%20alice', /has whitespace at its start or end/],
    ['x'.repeat(129), /is too long/]
  ] as const) {
    const refused = await refusal(server.ws, { 'x-user': user })
    t.equal(refused.status, 401, user.slice(0, 30))
    t.match(refused.body, { code: 'unauthorized', message: reason })
    t.match(refused.body.message, /^the authenticate hook's userId /)
    const read = await call(server.app, 'GET', '/projects/doc-1/ops', { 'x-user': user })
    t.equal(read.statusCode, 401)
    t.match(read.json(), { code: 'unauthorized', message: /^the authenticate hook's userId / })
  }
  t.match((await refusal(server.ws)).body, { message: 'the authenticate hook\'s userId is missing' }, 'a hook that returns no userId')
  t.equal(await connectionsOpened(server.app), 0)
  const named = await connect(t, server.ws, { headers: { 'x-user': encodeURIComponent('José Smith') } })
  t.equal((await named.join('doc-1')).userId, 'José Smith')
})

/** Warnings flow-auth logs when the app boots with `env`. */
async function bootWarnings (t: Test, env: Record<string, string>): Promise<string[]> {
  const lines: string[] = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line !== '') lines.push((JSON.parse(line) as { msg: string }).msg)
      }
      callback()
    }
  })
  const app = Fastify({ logger: { level: 'warn', stream } })
  t.teardown(async () => { await app.close() })
  await app.register(flow, { env, maxEventLoopDelayMs: 0 })
  await app.ready()
  return lines
}

t.test('with NODE_ENV=production and JWT auth, boot warns when neither FLOW_JWT_AUDIENCE nor FLOW_JWT_ISSUER is set', async (t) => {
  const unbound = /tokens are not bound to this service.*FLOW_JWT_AUDIENCE or FLOW_JWT_ISSUER/
  const production = { NODE_ENV: 'production', FLOW_JWT_SECRET: SECRET }
  t.match(await bootWarnings(t, production), [unbound])
  t.notMatch((await bootWarnings(t, { ...production, FLOW_JWT_AUDIENCE: 'flow-rt' })).join('\n'), unbound, 'an audience binds them')
  t.notMatch((await bootWarnings(t, { ...production, FLOW_JWT_ISSUER: 'id' })).join('\n'), unbound, 'an issuer binds them')
  t.notMatch((await bootWarnings(t, { FLOW_JWT_SECRET: SECRET })).join('\n'), unbound, 'not outside production')
  t.notMatch((await bootWarnings(t, { NODE_ENV: 'production', FLOW_AUTH: 'none' })).join('\n'), unbound, 'not without JWT auth')
})
