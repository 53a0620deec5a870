import t from 'tap'
import { spawn, execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startServer } from '../helpers/server.js'
import { redisClient, startRedis } from '../helpers/redis.js'
import { freePort } from '../helpers/process.js'
import { waitFor } from '../helpers/wait.js'
import { connect } from '../helpers/client.js'

interface Health { status: string, redis: { connected: boolean, lastError: string | null } }

const flags = { useRedisCollaboration: true, useRedisWebsockets: true, useRedisEventOrdering: true, redisConnectWaitMs: 3000 }

t.test('an ACL user with the right password in REDIS_URL gets Redis; a wrong one gets a clear degraded /health', async (t) => {
  const redis = await startRedis(t)
  const admin = await redisClient(t, redis.url)
  await admin.sendCommand(['ACL', 'SETUSER', 'flow', 'on', '>s3cret', '~*', '&*', '+@all'])
  await admin.sendCommand(['ACL', 'SETUSER', 'default', 'off'])
  const good = await startServer(t, { ...flags, redisUrl: `redis://flow:s3cret@127.0.0.1:${redis.port}` })
  const ok = (await good.app.inject({ url: '/health' })).json<Health>()
  t.equal(ok.status, 'ok')
  const client = await connect(t, good.ws)
  await client.join('acl')
  t.match(await client.request({ type: 'op', project: 'acl', data: 1 }), { type: 'ack', seq: 1 })
  t.equal(await admin.xLen('flow:{acl}:ops'), 1, 'the op is in Redis')

  const bad = await startServer(t, { ...flags, redisConnectWaitMs: 500, redisUrl: `redis://flow:wrong@127.0.0.1:${redis.port}` })
  const health = await waitFor(async () => {
    const h = (await bad.app.inject({ url: '/health' })).json<Health>()
    return h.redis.lastError !== null ? h : undefined
  }, { what: 'a connection error in /health', timeoutMs: 5000, intervalMs: 20 })
  t.equal(health.status, 'degraded')
  t.match(health.redis.lastError, /WRONGPASS|NOAUTH|invalid username-password/)
  t.notMatch(JSON.stringify(health), /wrong/, 'the password is not shown')
})

t.test('rediss:// with REDIS_TLS_CA_FILE talks TLS to Redis; without the CA it stays degraded and says why', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'flow-tls-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const f = (name: string): string => join(dir, name)
  const ssl = (...args: string[]): void => { execFileSync('openssl', args, { stdio: 'ignore' }) }
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=flow-test-ca', '-keyout', f('ca.key'), '-out', f('ca.pem'))
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', f('server.key'), '-out', f('server.csr'))
  writeFileSync(f('san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n')
  ssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '1', '-extfile', f('san.ext'), '-out', f('server.pem'))
  const port = await freePort()
  const server = spawn('redis-server', ['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--tls-cert-file', f('server.pem'), '--tls-key-file', f('server.key'), '--tls-ca-cert-file', f('ca.pem'), '--tls-auth-clients', 'no', '--dir', dir], { stdio: 'ignore' })
  t.teardown(() => { server.kill('SIGKILL') })

  const app = await startServer(t, { ...flags, redisUrl: `rediss://127.0.0.1:${port}`, redisTlsCaFile: f('ca.pem') })
  await waitFor(async () => (await app.app.inject({ url: '/health' })).json<Health>().status === 'ok', { what: 'Redis over TLS', timeoutMs: 10_000, intervalMs: 20 })
  const client = await connect(t, app.ws)
  await client.join('tls')
  t.match(await client.request({ type: 'op', project: 'tls', data: 'secure' }), { type: 'ack', seq: 1 })
  const history = (await app.app.inject({ url: '/projects/tls/ops?since=0' })).json<{ ops: Array<{ data: string }> }>()
  t.same(history.ops.map((o) => o.data), ['secure'])

  const untrusting = await startServer(t, { ...flags, redisConnectWaitMs: 500, redisUrl: `rediss://127.0.0.1:${port}` })
  const health = await waitFor(async () => {
    const h = (await untrusting.app.inject({ url: '/health' })).json<Health>()
    return h.redis.lastError !== null ? h : undefined
  }, { what: 'a TLS error in /health', timeoutMs: 5000, intervalMs: 20 })
  t.equal(health.status, 'degraded')
  t.match(health.redis.lastError, /certificate/i)
})

t.test('an unreadable TLS file stops start-up naming its variable', async (t) => {
  await t.rejects(startServer(t, { ...flags, redisTlsCaFile: '/nonexistent/ca.pem' }), /REDIS_TLS_CA_FILE/)
})
