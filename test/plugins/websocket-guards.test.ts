import t from 'tap'
import { startServer } from '../helpers/server.js'
import { connect } from '../helpers/client.js'
import { refusedUpgrade } from '../helpers/upgrade.js'
import { hs256, nowSeconds, SECRET } from '../helpers/jwt.js'

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
