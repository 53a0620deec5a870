import t from 'tap'
import { connect } from '../helpers/client.js'
import { refusedUpgrade } from '../helpers/upgrade.js'
import { hs256, nowSeconds } from '../helpers/jwt.js'
import { ensureBuilt, freePort, spawnNode, startEntry } from '../helpers/process.js'

t.before(ensureBuilt)

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
