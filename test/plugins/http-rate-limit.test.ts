import t from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { startServer } from '../helpers/server.js'
import { hs256, SECRET } from '../helpers/jwt.js'
import { buildServer } from '../../server.js'

const API_KEY = 'flow-test-api-key-rate-limit-0001'

interface Call {
  readonly method?: 'GET' | 'POST'
  readonly url: string
  readonly headers?: Record<string, string>
  readonly remoteAddress?: string
}

/**
 * Sends `count` requests at once and resolves their answers. At once: the
 * limit counts per one-second window, and a burst sent together lands in
 * one window (one sent after another might straddle two on a slow machine).
 */
async function burst (app: FastifyInstance, count: number, call: Call): Promise<LightMyRequestResponse[]> {
  const { method = 'GET', url, headers = {}, remoteAddress } = call
  return await Promise.all(Array.from({ length: count }, async (_, i) => await app.inject({
    method,
    url: typeof url === 'string' && method === 'POST' ? url.replace('{i}', String(i)) : url,
    headers,
    ...(remoteAddress === undefined ? {} : { remoteAddress }),
    ...(method === 'POST' ? { payload: { data: i } } : {})
  })))
}

function statuses (answers: readonly LightMyRequestResponse[]): number[] {
  return answers.map((a) => a.statusCode).sort((a, b) => a - b)
}

t.test('past FLOW_HTTP_RATE_LIMIT requests per second the project routes answer 429 with retry-after and the protocol\'s error body', async (t) => {
  const { app } = await startServer(t, { httpRateLimit: 5 })
  // A client creating a project per request, as fast as it can.
  const answers = await burst(app, 8, { method: 'POST', url: '/projects/new-{i}/ops' })
  t.same(statuses(answers), [201, 201, 201, 201, 201, 429, 429, 429])
  const refused = answers.find((a) => a.statusCode === 429) as LightMyRequestResponse
  t.match(refused.headers['retry-after'], /^[1-9]\d*$/, 'retry-after says when to come back, in seconds')
  const body = refused.json<{ message: string }>()
  t.same(body, { statusCode: 429, code: 'rate_limited', error: 'Too Many Requests', message: body.message })
  t.match(body.message, /at most 5 requests per second/)
  const created = (await app.inject({ url: '/ws/stats' })).json<{ ops: { appended: number } }>()
  t.equal(created.ops.appended, 5, 'a refused request did no work')

  t.equal((await app.inject({ url: '/projects/new-0/ops' })).statusCode, 429, 'reads count in the same budget')
  t.same(statuses(await burst(app, 3, { url: '/projects/new-0/members' })), [429, 429, 429])
})

t.test('/health, /ws/stats, /metrics and the host\'s own routes are not limited', async (t) => {
  const { app } = await startServer(t, { httpRateLimit: 1 }, async (host) => {
    host.get('/host-route', async () => ({ ok: true }))
  })
  t.same(statuses(await burst(app, 3, { url: '/projects/p/members' })), [200, 429, 429], 'the limit is on')
  for (const url of ['/health', '/ws/stats', '/metrics', '/host-route']) {
    t.same(statuses(await burst(app, 4, { url })), [200, 200, 200, 200], `${url} is not limited`)
  }
})

t.test('requests count per identity: each token\'s user and the API key have a budget of their own, whatever the address', async (t) => {
  const { app } = await startServer(t, { httpRateLimit: 3, jwtSecret: SECRET, apiKey: API_KEY })
  const alice = { authorization: `Bearer ${hs256({ sub: 'alice' })}` }
  // Another token of the same user shares her budget.
  const alice2 = { authorization: `Bearer ${hs256({ sub: 'alice', iat: 1 })}` }
  const bob = { authorization: `Bearer ${hs256({ sub: 'bob' })}` }
  const key = { authorization: `Bearer ${API_KEY}` }
  const url = '/projects/doc/ops'
  const [a, a2, b, k] = await Promise.all([
    burst(app, 3, { url, headers: alice }),
    burst(app, 2, { url, headers: alice2 }),
    burst(app, 3, { url, headers: bob }),
    burst(app, 3, { url, headers: key })
  ])
  t.same(statuses([...a, ...a2]), [200, 200, 200, 429, 429], 'alice: 3 in a second, with either token')
  t.same(statuses(b), [200, 200, 200], 'bob, from the same address, is not held back by alice')
  t.same(statuses(k), [200, 200, 200], 'the API key has its own budget')
  t.equal((await app.inject({ url, headers: bob, remoteAddress: '198.51.100.7' })).statusCode, 429,
    'a user who changes address keeps the budget spent')
})

t.test('without a credential (open mode), requests count per address', async (t) => {
  const { app } = await startServer(t, { httpRateLimit: 2 })
  const url = '/projects/doc/members'
  const [one, two] = await Promise.all([
    burst(app, 3, { url, remoteAddress: '198.51.100.1' }),
    burst(app, 3, { url, remoteAddress: '198.51.100.2' })
  ])
  t.same(statuses(one), [200, 200, 429])
  t.same(statuses(two), [200, 200, 429], 'another address has its own budget')
  const v6 = await Promise.all([
    app.inject({ url, remoteAddress: '2001:db8:1:2::1' }),
    app.inject({ url, remoteAddress: '2001:db8:1:2::2' }),
    app.inject({ url, remoteAddress: '2001:db8:1:2:ffff::3' })
  ])
  t.same(statuses(v6), [200, 200, 429], 'IPv6 addresses count by their /64')
})

t.test('behind a trusted proxy (FLOW_TRUST_PROXY) requests count per X-Forwarded-For address', async (t) => {
  const app = await buildServer({ env: { FLOW_TRUST_PROXY: '127.0.0.1' }, logLevel: 'silent', demo: false, httpRateLimit: 2, maxEventLoopDelayMs: 0 })
  t.teardown(async () => { await app.close() })
  const url = '/projects/doc/members'
  const [one, two] = await Promise.all([
    burst(app, 3, { url, headers: { 'x-forwarded-for': '203.0.113.1' } }),
    burst(app, 3, { url, headers: { 'x-forwarded-for': '203.0.113.2' } })
  ])
  t.same(statuses(one), [200, 200, 429])
  t.same(statuses(two), [200, 200, 429], 'another client behind the same proxy has its own budget')

  const direct = await buildServer({ env: {}, logLevel: 'silent', demo: false, httpRateLimit: 2, maxEventLoopDelayMs: 0 })
  t.teardown(async () => { await direct.close() })
  const [three, four] = await Promise.all([
    burst(direct, 2, { url, headers: { 'x-forwarded-for': '203.0.113.3' } }),
    burst(direct, 2, { url, headers: { 'x-forwarded-for': '203.0.113.4' } })
  ])
  t.same(statuses([...three, ...four]), [200, 200, 429, 429], 'without FLOW_TRUST_PROXY, X-Forwarded-For is not believed')
})

t.test('without a credential, a request over the limit or its address\'s write budget is refused before its body is read', async (t) => {
  const { app } = await startServer(t, { httpRateLimit: 2 })
  const url = '/projects/doc/ops'
  const bad = { method: 'POST' as const, url, headers: { 'content-type': 'application/json' }, payload: '{"data": not json' }
  t.equal((await app.inject(bad)).statusCode, 400, 'within the limit, the body is parsed (and refused)')
  t.equal((await app.inject(bad)).statusCode, 400)
  // Past the limit: 429, not the parser's 400 nor the body limit's 413.
  const refused = await app.inject(bad)
  t.equal(refused.statusCode, 429, 'refused at once: the body was not parsed')
  t.match(refused.json(), { code: 'rate_limited' })
  t.equal((await app.inject({ ...bad, payload: 'x'.repeat(2 * 1024 * 1024) })).statusCode, 429, 'nor read to its end')

  // The write budget: an address in debt is refused before the body is parsed, too.
  const { app: budgeted } = await startServer(t, { httpRateLimit: 100, identityWriteBytesPerSecond: 64 * 1024 })
  const other = '198.51.100.10'
  const big = await budgeted.inject({ method: 'POST', url, remoteAddress: other, payload: { data: 'x'.repeat(60 * 1024) } })
  t.equal(big.statusCode, 201)
  const second = await budgeted.inject({ method: 'POST', url, remoteAddress: other, payload: { data: 'x'.repeat(60 * 1024) } })
  t.equal(second.statusCode, 201, 'a full second\'s worth goes at once')
  const inDebt = await budgeted.inject({ ...bad, remoteAddress: other })
  t.equal(inDebt.statusCode, 429, 'in debt: refused before the body is parsed')
  t.match(inDebt.json<{ message: string }>().message, /FLOW_IDENTITY_WRITE_BYTES_PER_SECOND/)
})
