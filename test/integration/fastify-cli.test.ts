import t from 'tap'
import { ensureBuilt, freePort, spawnNode } from '../helpers/process.js'

t.before(ensureBuilt)

t.test('fastify start serves Flow\'s /health from dist/app.js', async (t) => {
  // fastify-cli's own entry, run by node directly: signals reach it (no npx,
  // no sh). It reads `-p 0` as "no port" (3000), so the port is a free one.
  const port = await freePort()
  const proc = spawnNode(t, ['node_modules/fastify-cli/cli.js', 'start', '-l', 'info', '-a', '127.0.0.1', '-p', String(port), 'dist/app.js'])
  await proc.waitFor(new RegExp(`Server listening at http://127\\.0\\.0\\.1:${port}`))
  const res = await fetch(`http://127.0.0.1:${port}/health`)
  t.equal(res.status, 200)
  t.match(await res.json(), { status: 'ok', auth: 'open', ports: { sessions: { adapter: 'memory' }, broadcaster: { adapter: 'memory' }, log: { adapter: 'memory' } } })
  proc.kill('SIGTERM')
  const exit = await proc.exited
  t.equal(exit.code, 0, 'fastify-cli closes the app on SIGTERM and exits 0')
})
