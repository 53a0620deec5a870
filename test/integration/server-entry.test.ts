import t from 'tap'
import { connect as netConnect } from 'node:net'
import { connect } from '../helpers/client.js'
import { refusedUpgrade } from '../helpers/upgrade.js'
import { hs256, nowSeconds } from '../helpers/jwt.js'
import { ensureBuilt, freePort, spawnNode, startEntry } from '../helpers/process.js'
import { redactUrl } from '../../server.js'
import { startRedis } from '../helpers/redis.js'

t.before(ensureBuilt)

t.test('credentials are redacted by the key a server would decode, in URLs and in text quoting them', async (t) => {
  const cases: Array<[string, string]> = [
    ['/ws?token=a.b.c&x=1', '/ws?token=[REDACTED]&x=1'],
    ['/ws?%74oken=s', '/ws?%74oken=[REDACTED]'],
    ['/ws?TOKEN=s', '/ws?TOKEN=[REDACTED]'],
    ['/ws?to%6Ben=s', '/ws?to%6Ben=[REDACTED]'],
    ['/ws?%2574oken=s', '/ws?%2574oken=[REDACTED]'],
    ['/ws?token[]=s', '/ws?token[]=[REDACTED]'],
    ['/x?access%5Ftoken=s&API_KEY=k;apiKey=k', '/x?access%5Ftoken=[REDACTED]&API_KEY=[REDACTED];apiKey=[REDACTED]'],
    ['/ws;token=s', '/ws;token=[REDACTED]'],
    ['/p;Token=s/ops?x=1', '/p;Token=[REDACTED]'],
    ['/x?next=/ws?token=s&y=2', '/x?next=/ws?token=[REDACTED]&y=2'],
    ['Route GET:/ws;token=s not found', 'Route GET:/ws;token=[REDACTED] not found'],
    ['{"url":"/x?token=s","n":1}', '{"url":"/x?token=[REDACTED]","n":1}'],
    ['/x?tokens=1&mytoken=2&q=token', '/x?tokens=1&mytoken=2&q=token']
  ]
  for (const [text, redacted] of cases) t.equal(redactUrl(text), redacted, text)
  const long = `/x${'?a=b'.repeat(5000)}?token=s`
  const started = Date.now()
  t.ok(redactUrl(long).endsWith('?token=[REDACTED]'))
  t.ok(Date.now() - started < 1000, 'in linear time: a long URL costs little')
})

t.test('npm start exits non-zero with a message naming the variable of a bad value', async (t) => {
  // Every variable's checks are unit-tested in test/plugins/config.test.ts;
  // here, one of each way start-up fails: a bad value, a bad combination, a
  // key that only fails when the plugin boots.
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ PORT: 'abc' }, /PORT must be an integer/],
    [{ NODE_ENV: 'production' }, /NODE_ENV=production needs FLOW_JWT_SECRET or FLOW_JWT_PUBLIC_KEY, or FLOW_AUTH=none/],
    [{ FLOW_JWT_PUBLIC_KEY: 'not a pem' }, /FLOW_JWT_PUBLIC_KEY is not a valid PEM public key/],
    [{ FLOW_JWT_SECRET: 's', FLOW_JWT_DEFAULT_PROJECTS: 'lobby,team *' }, /FLOW_JWT_DEFAULT_PROJECTS: "team \*" is not a project id/]
  ]
  await Promise.all(cases.map(async ([env, message]) => {
    const proc = spawnNode(t, ['dist/server.js'], { PORT: '0', ...env })
    const exit = await proc.exited
    const name = JSON.stringify(env)
    t.equal(exit.code, 1, `${name}: exit code`)
    t.match(proc.stderr, message, `${name}: message`)
    t.match(proc.stderr, /^flow: cannot start: /, `${name}: one line saying it cannot start`)
    t.notMatch(proc.stdout, /Server listening/, `${name}: never listened`)
  }))
})

t.test('npm start will not run the op log on a Redis that may evict it: it exits naming FLOW_REDIS_ALLOW_EVICTION', async (t) => {
  const redis = await startRedis(t, { args: ['--maxmemory-policy', 'allkeys-lru'] })
  const env = { PORT: '0', REDIS_URL: redis.url, USE_REDIS_EVENT_ORDERING: 'true' }
  const refused = spawnNode(t, ['dist/server.js'], env)
  t.equal((await refused.exited).code, 1)
  t.match(refused.stderr, /^flow: cannot start: invalid configuration: Redis maxmemory-policy is allkeys-lru: .*FLOW_REDIS_ALLOW_EVICTION=true/m)
  t.notMatch(refused.stdout, /Server listening/)

  const allowed = await startEntry(t, { ...env, FLOW_REDIS_ALLOW_EVICTION: 'true' })
  t.match(allowed.proc.stdout, /Redis may evict Flow's keys/, 'accepted, with a warning')
  allowed.proc.kill('SIGTERM')
  t.same(await allowed.proc.exited, { code: 0, signal: null })
})

t.test('npm start listens on PORT and HOST, serves /health and exits 0 on SIGINT', async (t) => {
  const port = await freePort()
  const server = await startEntry(t, { PORT: String(port), HOST: '127.0.0.1' })
  t.equal(server.http, `http://127.0.0.1:${port}`)
  const res = await fetch(`${server.http}/health`)
  t.equal(res.status, 200)
  t.match(await res.json(), { status: 'ok', auth: 'open', ports: { log: { adapter: 'memory' } } })
  const alice = await connect(t, `${server.ws}?userId=alice`)
  await alice.join('doc-1')
  server.proc.kill('SIGINT')
  t.equal((await alice.closed).code, 1001, 'SIGINT drains like SIGTERM')
  t.same(await server.proc.exited, { code: 0, signal: null })
})

t.test('npm start with NODE_ENV=production warns when tokens are bound to no audience or issuer', async (t) => {
  const server = await startEntry(t, { NODE_ENV: 'production', FLOW_JWT_SECRET: 'production-test-secret-0123456789' })
  server.proc.kill('SIGTERM')
  t.same(await server.proc.exited, { code: 0, signal: null })
  t.match(server.proc.stdout, /"level":40,.*"msg":"tokens are not bound to this service: .*\(set FLOW_JWT_AUDIENCE or FLOW_JWT_ISSUER\)"/)
})

t.test('tokens, the API key and the secret never appear in the logs, even at trace level', async (t) => {
  const secret = 'log-test-secret-9f8e7d6c5b4a'
  const apiKey = 'log-test-api-key-1a2b3c4d5e6f'
  const inQuery = hs256({ sub: 'alice', exp: nowSeconds() + 3600 }, secret)
  const inHeader = hs256({ sub: 'bob', exp: nowSeconds() + 3600 }, secret)
  const forHttp = hs256({ sub: 'carol' }, secret)
  const bogus = 'bogus-token-value-0123456789'
  const server = await startEntry(t, { LOG_LEVEL: 'trace', FLOW_JWT_SECRET: secret, FLOW_API_KEY: apiKey })

  const alice = await connect(t, `${server.ws}?token=${inQuery}`)
  await alice.join('doc-1')
  const bob = await connect(t, server.ws, { headers: { authorization: `Bearer ${inHeader}` } })
  await bob.join('doc-1')
  t.equal(await refusedUpgrade(`${server.ws}?token=${bogus}`), 401)

  const get = async (path: string, headers: Record<string, string> = {}): Promise<number> => (await fetch(server.http + path, { headers })).status
  t.equal(await get('/projects/doc-1/ops', { authorization: `Bearer ${forHttp}` }), 200)
  t.equal(await get(`/projects/doc-1/members?token=${forHttp}`, { authorization: `Bearer ${apiKey}` }), 200)
  t.equal(await get(`/projects/doc-1/ops?access_token=${bogus}`), 401)
  t.equal(await get(`/health?token=${inQuery}`), 200)
  t.equal(await get(`/no-such-route?token=${inQuery}`), 404)
  const posted = await fetch(`${server.http}/projects/doc-1/ops`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ data: 1 })
  })
  t.equal(posted.status, 201)
  alice.close()
  bob.close()
  server.proc.kill('SIGTERM')
  t.same(await server.proc.exited, { code: 0, signal: null }, 'every log line is written')

  const logs = server.proc.stdout + server.proc.stderr
  t.match(logs, /"msg":"connection opened"/, 'connection lines were logged (they carry the identity, not the token)')
  t.match(logs, /connection opened/, 'the connections were logged')
  t.match(logs, /token=\[REDACTED\]/, 'a URL with a token was logged, redacted')
  for (const [name, value] of Object.entries({ inQuery, inHeader, forHttp, bogus, apiKey, secret })) {
    t.notOk(logs.includes(value), `${name} is not in the logs`)
    // Each part of a JWT (a signature alone identifies the token).
    for (const part of value.split('.')) t.notOk(logs.includes(part), `no part of ${name} is in the logs`)
  }
})

t.test('a token under a percent-encoded or upper-case key, or in a matrix parameter, is answered as before and never logged', async (t) => {
  const secret = 'log-test-secret-encoded-keys-7c6b5a'
  const apiKey = 'log-test-api-key-encoded-keys-5d4e3f'
  const token = (sub: string): string => hs256({ sub, exp: nowSeconds() + 3600 }, secret)
  const tokens = {
    encoded: token('dana'),
    mixed: token('fay'),
    upper: token('erin'),
    matrix: token('gus'),
    httpEncoded: token('hal'),
    httpMatrix: token('ivy'),
    notFound: token('jon'),
    raw: token('kim')
  }
  // No event-loop delay limit: on a busy machine a stall would answer an upgrade 503.
  const server = await startEntry(t, { LOG_LEVEL: 'trace', FLOW_JWT_SECRET: secret, FLOW_API_KEY: apiKey, FLOW_MAX_EVENT_LOOP_DELAY_MS: '0' })

  // The query parser decodes keys: these are the token, and get in.
  const dana = await connect(t, `${server.ws}?%74oken=${tokens.encoded}`)
  t.equal((await dana.join('doc-1')).userId, 'dana', '?%74oken= connects')
  const fay = await connect(t, `${server.ws}?to%6Ben=${tokens.mixed}`)
  t.equal((await fay.join('doc-1')).userId, 'fay', '?to%6Ben= connects')
  // Keys are case-sensitive, and /ws;token= is not the endpoint's path.
  t.equal(await refusedUpgrade(`${server.ws}?TOKEN=${tokens.upper}`), 401, '?TOKEN= is no token')
  t.equal(await refusedUpgrade(`${server.ws};token=${tokens.matrix}`), 404, '/ws;token= is not /ws')

  const get = async (path: string): Promise<number> => (await fetch(server.http + path)).status
  t.equal(await get(`/projects/doc-1/members?%74oken=${tokens.httpEncoded}`), 401, 'the HTTP API takes no token from the query')
  t.equal(await get(`/projects/doc-1/ops?API%5FKEY=${apiKey}`), 401)
  t.equal(await get(`/projects/doc-1/members;token=${tokens.httpMatrix}`), 404)
  t.equal(await get(`/no-such-route?Access_Token=${tokens.notFound}&apikey=${apiKey}`), 404, 'the 404 message quotes the URL')
  // A request Node cannot parse: its error keeps the raw bytes (logged at trace).
  const rawAnswer = await new Promise<string>((resolve, reject) => {
    const address = new URL(server.http)
    const socket = netConnect(Number(address.port), address.hostname, () => {
      socket.write(`GET /ws?token=${tokens.raw} HTTP/1.1\r\nHost: flow\r\nnot a header\r\n\r\n`)
    })
    socket.once('data', (chunk) => { resolve(chunk.toString('latin1')); socket.destroy() })
    socket.once('error', reject)
  })
  t.match(rawAnswer, /^HTTP\/1\.1 400/)

  dana.close()
  fay.close()
  server.proc.kill('SIGTERM')
  t.same(await server.proc.exited, { code: 0, signal: null }, 'every log line is written')

  const logs = server.proc.stdout + server.proc.stderr
  for (const logged of [/;token=\[REDACTED\]/, /Access_Token=\[REDACTED\]&apikey=\[REDACTED\]/, /"rawPacket":"\[REDACTED\]"/]) {
    t.match(logs, logged, `logged, redacted: ${String(logged)}`)
  }
  // The HTTP API's request lines (debug) carry the path, never the query.
  t.match(logs, /"path":"\/projects\/doc-1\/members","statusCode":401/, 'the API request was logged, without its query')
  t.match(logs, /"path":"\/projects\/doc-1\/ops","statusCode":401/)
  for (const [name, value] of Object.entries({ ...tokens, apiKey, secret })) {
    t.notOk(logs.includes(value), `${name} is not in the logs`)
    // A JWT's payload and signature alone identify it (its header is the same for all).
    for (const part of value.split('.').slice(1)) t.notOk(logs.includes(part), `no part of ${name} is in the logs`)
  }
})
