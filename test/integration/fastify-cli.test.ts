import t from 'tap'
import { spawn } from 'node:child_process'
import { ChildHandle, ROOT, ensureBuilt, freePort, spawnNode } from '../helpers/process.js'

t.before(ensureBuilt)

t.test('fastify start serves Flow\'s /health from dist/app.js', async (t) => {
  // fastify-cli's own entry, run by node directly: signals reach it (no npx,
  // no sh). It reads `-p 0` as "no port" (3000), so the port is a free one.
  const port = await freePort()
  const proc = spawnNode(t, ['node_modules/fastify-cli/cli.js', 'start', '-l', 'info', '-a', '127.0.0.1', '-p', String(port), 'dist/app.js'])
  await proc.waitFor(new RegExp(`Server listening at http://127\\.0\\.0\\.1:${port}`), { timeoutMs: 30_000 })
  const res = await fetch(`http://127.0.0.1:${port}/health`)
  t.equal(res.status, 200)
  t.match(await res.json(), { status: 'ok', auth: 'open', ports: { sessions: { adapter: 'memory' }, broadcaster: { adapter: 'memory' }, log: { adapter: 'memory' } } })
  proc.kill('SIGTERM')
  const exit = await proc.exited
  t.equal(exit.code, 0, 'fastify-cli closes the app on SIGTERM and exits 0')
})

t.test('fastify start -o boots without the maxParamLength warning and redacts ?token= in its request logs', async (t) => {
  const port = await freePort()
  // -l debug: request lines are logged whether they are at info or debug.
  const proc = spawnNode(t, ['node_modules/fastify-cli/cli.js', 'start', '-o', '-l', 'debug', '-a', '127.0.0.1', '-p', String(port), 'dist/app.js'])
  await proc.waitFor(new RegExp(`Server listening at http://127\\.0\\.0\\.1:${port}`), { timeoutMs: 30_000 })
  t.equal((await fetch(`http://127.0.0.1:${port}/projects/doc-1/ops?since=0&token=sekrit-one`)).status, 200)
  t.equal((await fetch(`http://127.0.0.1:${port}/nowhere?token=sekrit-two`)).status, 404)
  await proc.waitFor(/\/nowhere\?token=\[REDACTED\]/)
  // Flow's own request lines carry the path only (flow-request-log); Fastify's line for a route outside Flow keeps the query, redacted.
  t.match(proc.stdout, /"path":"\/projects\/doc-1\/ops"/, 'Flow\'s request line names the path, without its query')
  t.notMatch(proc.stdout + proc.stderr, /sekrit/, 'no token in the logs')
  t.notMatch(proc.stdout + proc.stderr, /maxParamLength/, 'no maxParamLength warning: app.ts\'s options set the router')
  const long = 'p'.repeat(128)
  t.equal((await fetch(`http://127.0.0.1:${port}/projects/${long}/ops?since=0`)).status, 200, 'the longest project id fits the router')
  proc.kill('SIGTERM')
  t.equal((await proc.exited).code, 0)
})

t.test('npm run start:cli listens on HOST and PORT', async (t) => {
  const port = await freePort()
  // Not the default 127.0.0.1: an address only HOST names.
  const host = '127.0.0.2'
  const env = Object.fromEntries(Object.entries(process.env)
    .filter(([name]) => name !== 'NODE_OPTIONS' && name !== 'NODE_V8_COVERAGE' && !name.startsWith('npm_')))
  const proc = new ChildHandle(spawn('npm', ['run', '--silent', 'start:cli'], {
    cwd: ROOT, env: { ...env, HOST: host, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe']
  }))
  t.teardown(async () => { if (proc.running) { proc.kill('SIGKILL'); await proc.exited } })
  await proc.waitFor(new RegExp(`Server listening at http://127\\.0\\.0\\.2:${port}`), { timeoutMs: 30_000 })
  t.equal((await fetch(`http://${host}:${port}/health`)).status, 200)
  t.notMatch(proc.stdout + proc.stderr, /maxParamLength/)
  proc.kill('SIGTERM')
  t.equal((await proc.exited).code, 0, 'SIGTERM reaches fastify-cli through npm, which closes the app')
})
