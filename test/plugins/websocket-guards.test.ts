import t, { type Test } from 'tap'
import { startServer } from '../helpers/server.js'
import { connect } from '../helpers/client.js'
import { refusedUpgrade } from '../helpers/upgrade.js'
import { hs256, nowSeconds, SECRET } from '../helpers/jwt.js'
import { buildServer } from '../../server.js'
import type { FastifyInstance } from 'fastify'

/** `npm start`'s app (buildServer) with `env`, listening on a free loopback port; its WebSocket URL. */
async function startBuilt (t: Test, env: Record<string, string>, options: { maxConnectionsPerIp: number }): Promise<{ app: FastifyInstance, ws: string }> {
  const app = await buildServer({ env, logLevel: 'silent', demo: false, maxEventLoopDelayMs: 0, ...options })
  t.teardown(async () => { await app.close() })
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, ws: `${address.replace('http:', 'ws:')}/ws` }
}

t.test('browsers from an origin not in FLOW_ALLOWED_ORIGINS are refused with 403; listed origins and non-browsers connect', async (t) => {
  const server = await startServer(t, { allowedOrigins: 'https://app.example.com, https://admin.example.com/' })
  t.equal(await refusedUpgrade(server.ws, { origin: 'https://evil.example.net' }), 403)
  const ok = await connect(t, server.ws, { headers: { origin: 'https://admin.example.com' } })
  t.match(await ok.request({ type: 'ping' }), { type: 'pong' })
  const cli = await connect(t, server.ws)
  t.match(await cli.request({ type: 'ping' }), { type: 'pong' }, 'no Origin header: not a browser, not checked')
})

t.test('an address over FLOW_MAX_CONNECTIONS_PER_IP is refused with 429 until one of its connections closes', async (t) => {
  const server = await startServer(t, { maxConnectionsPerIp: 2 })
  const a = await connect(t, server.ws)
  await connect(t, server.ws)
  t.equal(await refusedUpgrade(server.ws), 429)
  a.close()
  await a.closed
  let third
  for (let i = 0; i < 50 && third === undefined; i++) {
    third = await connect(t, server.ws).catch(() => undefined)
  }
  t.ok(third !== undefined, 'a freed slot can be used again')
})

t.test('behind a trusted proxy (FLOW_TRUST_PROXY), connections count per X-Forwarded-For address', async (t) => {
  const proxied = await startBuilt(t, { FLOW_TRUST_PROXY: '127.0.0.1' }, { maxConnectionsPerIp: 1 })
  const from = (address: string): { headers: Record<string, string> } => ({ headers: { 'x-forwarded-for': address } })
  const one = await connect(t, proxied.ws, from('203.0.113.1'))
  t.match(await one.request({ type: 'ping' }), { type: 'pong' })
  t.equal(await refusedUpgrade(proxied.ws, from('203.0.113.1').headers), 429, 'the same client is over its limit')
  const two = await connect(t, proxied.ws, from('198.51.100.2, 203.0.113.2'))
  t.match(await two.request({ type: 'ping' }), { type: 'pong' }, 'another client behind the same proxy is counted apart')
  t.equal(await refusedUpgrade(proxied.ws, from('198.51.100.9, 203.0.113.2').headers), 429,
    'the client is the address the trusted proxy gives, not what the client claims before it')

  const direct = await startBuilt(t, {}, { maxConnectionsPerIp: 1 })
  await connect(t, direct.ws, from('203.0.113.1'))
  t.equal(await refusedUpgrade(direct.ws, from('203.0.113.2').headers), 429, 'without FLOW_TRUST_PROXY, X-Forwarded-For is not believed')
})

t.test('FLOW_TRUST_PROXY takes true or addresses and CIDRs; anything else stops start-up naming it', async (t) => {
  const cases: Array<[string, string]> = [
    ['true', '203.0.113.5'], ['127.0.0.1', '203.0.113.5'], ['10.0.0.0/8, 127.0.0.1', '203.0.113.5'], ['loopback', '203.0.113.5'],
    ['::1,fd00::/8', '127.0.0.1'], ['false', '127.0.0.1']
  ]
  for (const [value, client] of cases) {
    const app = await buildServer({ env: { FLOW_TRUST_PROXY: value }, logLevel: 'silent', demo: false })
    app.get('/whoami', async (request) => request.ip)
    const res = await app.inject({ url: '/whoami', remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': '203.0.113.5' } })
    t.equal(res.body, client, `FLOW_TRUST_PROXY=${value}: the client is ${client}`)
    await app.close()
  }
  for (const value of ['proxy.internal', '10.0.0.0/33', '1', '10.0.0.1/8/2']) {
    await t.rejects(buildServer({ env: { FLOW_TRUST_PROXY: value }, logLevel: 'silent', demo: false }), /FLOW_TRUST_PROXY/, `${value} is refused`)
  }
})

t.test('a connection whose token expires is closed with 1008 and can come back with a fresh token and since', async (t) => {
  const server = await startServer(t, { jwtSecret: SECRET })
  // Accepted within the 30 s clock skew, it expires for good 2 s from now.
  const short = hs256({ sub: 'ann', exp: nowSeconds() - 28 })
  const client = await connect(t, `${server.ws}?token=${short}`, { timeoutMs: 10_000 })
  const joined = await client.join('p')
  await client.request({ type: 'op', project: 'p', data: 1 })
  const closed = await client.closed
  t.equal(closed.code, 1008)
  t.equal(closed.reason, 'token expired')
  const fresh = hs256({ sub: 'ann', exp: nowSeconds() + 600 })
  const back = await connect(t, `${server.ws}?token=${fresh}`)
  const rejoined = await back.join('p', { since: 0, epoch: joined.epoch })
  t.equal(rejoined.userId, 'ann')
  t.match(await back.next('op'), { seq: 1, data: 1 }, 'nothing missed')
})
