import t from 'tap'
import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SETTINGS } from '../../lib/config.js'
import { flagName } from '../../lib/cli-args.js'
import { ChildHandle, ROOT, ensureBuilt, freePort, spawnNode } from '../helpers/process.js'

t.before(ensureBuilt)

t.test('--help lists every setting of the config table, as a flag or (credentials) as its variable', async (t) => {
  const proc = spawnNode(t, ['dist/cli.js', '--help'])
  t.equal((await proc.exited).code, 0)
  for (const [name, setting] of Object.entries(SETTINGS)) {
    t.ok(proc.stdout.includes(setting.env), `${setting.env} is listed`)
    if (setting.kind === 'secret') t.notOk(proc.stdout.includes(`--${flagName(name)}`), `${setting.env} is not a flag`)
    else t.ok(proc.stdout.includes(`--${flagName(name)} `), `--${flagName(name)} is listed`)
  }
  t.match(proc.stdout, /--help/)
  t.match(proc.stdout, /--version/)
})

t.test('--version prints the package\'s version', async (t) => {
  const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }
  const proc = spawnNode(t, ['dist/cli.js', '--version'])
  t.equal((await proc.exited).code, 0)
  t.equal(proc.stdout, `${version}\n`)
})

t.test('unknown flags stop it with exit code 2, naming each of them', async (t) => {
  const proc = spawnNode(t, ['dist/cli.js', '--port', '0', '--prot', '4000', '--verbose'])
  t.equal((await proc.exited).code, 2)
  t.match(proc.stderr, /unknown options --prot, --verbose/)
  t.notMatch(proc.stdout, /listening/)
})

t.test('a bad value, a flag without its value, or a credential given as a flag is a usage error (exit 2)', async (t) => {
  const bad = spawnNode(t, ['dist/cli.js', '--port', 'abc'])
  t.equal((await bad.exited).code, 2)
  t.match(bad.stderr, /PORT must be an integer, got "abc" \(given as --port\)/)
  const missing = spawnNode(t, ['dist/cli.js', '--host'])
  t.equal((await missing.exited).code, 2)
  t.match(missing.stderr, /--host needs a value/)
  const secret = spawnNode(t, ['dist/cli.js', '--jwt-secret', 's3cret'])
  t.equal((await secret.exited).code, 2)
  t.match(secret.stderr, /--jwt-secret is not accepted on the command line .*set FLOW_JWT_SECRET in the environment/)
  t.notMatch(secret.stderr, /unexpected argument/, 'the value given with it is not reported again')
})

t.test('flow-realtime --port --host serves /health there, flags winning over the environment, and drains on SIGTERM', async (t) => {
  const port = await freePort()
  const proc = spawnNode(t, ['dist/cli.js', '--port', String(port), '--host=127.0.0.1', '--session-ttl-seconds', '45'], { PORT: '1', HOST: '0.0.0.0' })
  await proc.waitFor(new RegExp(`Server listening at http://127\\.0\\.0\\.1:${port}`), { timeoutMs: 30_000 })
  const res = await fetch(`http://127.0.0.1:${port}/health`)
  t.equal(res.status, 200)
  t.match(await res.json(), { status: 'ok' })
  proc.kill('SIGTERM')
  t.equal((await proc.exited).code, 0)
})

t.test('npm start -- --port starts from the built dist/ on that port, and SIGTERM to npm drains the server', async (t) => {
  const port = await freePort()
  const env = Object.fromEntries(Object.entries(process.env)
    .filter(([name]) => name !== 'NODE_OPTIONS' && name !== 'NODE_V8_COVERAGE' && !name.startsWith('npm_') && name !== 'PORT' && name !== 'HOST'))
  const proc = new ChildHandle(spawn('npm', ['start', '--silent', '--', '--port', String(port)], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] }))
  t.teardown(async () => { if (proc.running) { proc.kill('SIGKILL'); await proc.exited } })
  await proc.waitFor(new RegExp(`Server listening at http://127\\.0\\.0\\.1:${port}`), { timeoutMs: 30_000 })
  t.notMatch(proc.stderr, /npm run build/, 'dist/ is up to date: no build')
  t.equal((await fetch(`http://127.0.0.1:${port}/health`)).status, 200)
  proc.kill('SIGTERM')
  t.equal((await proc.exited).code, 0)
  await t.rejects(fetch(`http://127.0.0.1:${port}/health`), 'the server is gone, not left behind by npm')
})
