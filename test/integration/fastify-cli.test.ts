import t from 'tap'
import { ensureBuilt, spawnNode } from '../helpers/process.js'

t.before(ensureBuilt)

t.test('fastify start serves Flow\'s /health from dist/lib/app.js', async (t) => {
  // fastify-cli's own entry, run by node directly: signals reach it (no npx, no sh).
  const proc = spawnNode(t, ['node_modules/fastify-cli/cli.js', 'start', '-l', 'info', '-a', '127.0.0.1', '-p', '0', 'dist/lib/app.js'])
  const match = await proc.waitFor(/Server listening at (http:\/\/127\.0\.0\.1:\d+)/)
  const res = await fetch(`${match[1] as string}/health`)
  t.equal(res.status, 200)
  t.match(await res.json(), { status: 'ok', auth: 'open', ports: { sessions: { adapter: 'memory' }, broadcaster: { adapter: 'memory' }, log: { adapter: 'memory' } } })
  proc.kill('SIGTERM')
  const exit = await proc.exited
  t.equal(exit.code, 0, 'fastify-cli closes the app on SIGTERM and exits 0')
})
