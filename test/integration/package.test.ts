import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { ChildHandle, ROOT, ensureBuilt } from '../helpers/process.js'

/**
 * The package as a Fastify user gets it: `npm pack`, installed from the
 * tarball into a new host app on another Fastify 5 minor than the one this
 * repository develops on, the README's embedding snippet as written,
 * `tsc --strict`, then run: two clients of `flow-realtime/client` exchange
 * an op, the OpenAPI document answers, and SIGTERM drains with 1001.
 * Slow (an npm install; the npm cache makes it quicker).
 */

const run = promisify(execFile)

// An npm install and a tsc run on a 2-core machine: more than .taprc's 120 s may be needed.
t.setTimeout(300_000)

/** The host's Fastify: a 5.x minor other than the dev one (checked below). */
const HOST_FASTIFY = '~5.11.0'

/** Without tap's loader and coverage: the host app is not under test by tap. */
const cleanEnv = Object.fromEntries(Object.entries(process.env)
  .filter(([name]) => name !== 'NODE_OPTIONS' && name !== 'NODE_V8_COVERAGE' && !name.startsWith('TAP') && !name.startsWith('npm_')))

/** The ```ts block between `<!-- embedding:start -->` and `<!-- embedding:end -->` in README.md. */
async function readmeSnippet (): Promise<string> {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
  const match = /<!-- embedding:start -->\s*```ts\n([\s\S]*?)```\s*<!-- embedding:end -->/.exec(readme)
  if (match?.[1] === undefined) throw new Error('README.md has no ```ts block between <!-- embedding:start --> and <!-- embedding:end -->')
  return match[1]
}

/** Two clients of the installed flow-realtime/client: one sends, the other gets the op; then both wait for the server to go. */
const CLIENT = `import WebSocket from 'ws'
import { FlowClient } from 'flow-realtime/client'

const url = process.argv[2] ?? ''
const print = (line: object): void => { process.stdout.write(JSON.stringify(line) + '\\n') }
const ann = new FlowClient({ url, WebSocket })
const bob = new FlowClient({ url, WebSocket })
const received = new Promise<unknown>((resolve) => { bob.on('op', (_project, op) => { resolve(op.data) }) })
for (const client of [ann, bob]) {
  client.on('status', (status, retry) => {
    if (retry !== undefined) {
      print({ event: 'closed', code: retry.code })
      ann.close()
      bob.close()
    }
  })
  client.connect()
}
const annBoard = ann.join('board-1')
const bobBoard = bob.join('board-1')
await Promise.all([annBoard.ready, bobBoard.ready])
const { seq } = await annBoard.send({ add: 'sticky' })
print({ event: 'exchanged', seq, data: await received })
`

t.test('a host app on another Fastify 5 minor installs the packed package, type-checks the README snippet and runs it', async (t) => {
  await ensureBuilt()
  const dir = await mkdtemp(join(tmpdir(), 'flow-package-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })

  // prepare already ran (ensureBuilt): no script while packing.
  const { stdout: packed } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT, env: cleanEnv, maxBuffer: 16 * 1024 * 1024 })
  const [pack] = JSON.parse(packed) as Array<{ filename: string, entryCount: number, files: Array<{ path: string }> }>
  if (pack === undefined) throw new Error('npm pack printed no package')
  const paths = pack.files.map((f) => f.path)
  t.ok(paths.includes('LICENSE') && paths.includes('CHANGELOG.md') && paths.includes('dist/cli.js'), 'LICENSE, CHANGELOG.md and the CLI are packed')
  t.notOk(paths.some((p) => /^(test|bench|\.ci|scripts|lib|plugins|adapters)\//.test(p) || p.endsWith('.ts') && !p.endsWith('.d.ts')), 'no tests, bench, CI or TypeScript sources')
  t.ok(pack.entryCount < 250, `a small package (${pack.entryCount} files)`)

  const host = join(dir, 'host')
  await run('mkdir', [host])
  await writeFile(join(host, 'package.json'), JSON.stringify({ name: 'flow-host', private: true, type: 'module' }))
  await writeFile(join(host, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext', strict: true, outDir: 'out', types: ['node'] },
    include: ['server.ts', 'client.ts']
  }))
  await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error',
    join(dir, pack.filename), `fastify@${HOST_FASTIFY}`, '@fastify/websocket@^11', 'ws@^8', 'typescript@~5.9.3', '@types/node@^20.19', '@types/ws@^8'],
  { cwd: host, env: cleanEnv, maxBuffer: 16 * 1024 * 1024, timeout: 150_000 })

  const devMinor = JSON.parse(await readFile(join(ROOT, 'node_modules/fastify/package.json'), 'utf8')) as { version: string }
  const hostFastify = JSON.parse(await readFile(join(host, 'node_modules/fastify/package.json'), 'utf8')) as { version: string }
  const minor = (v: string): string => v.split('.').slice(0, 2).join('.')
  t.not(minor(hostFastify.version), minor(devMinor.version), `the host runs fastify ${hostFastify.version}, the repository ${devMinor.version}`)
  t.notOk(existsSync(join(host, 'node_modules/flow-realtime/node_modules/fastify')), 'one fastify: Flow uses the host\'s (a peer dependency)')

  await writeFile(join(host, 'server.ts'), await readmeSnippet())
  await writeFile(join(host, 'client.ts'), CLIENT)
  const tsc = await run(process.execPath, [join(host, 'node_modules/typescript/bin/tsc'), '-p', '.', '--strict'], { cwd: host, env: cleanEnv }).then(
    () => ({ ok: true, out: '' }), (err: Error & { stdout?: string }) => ({ ok: false, out: err.stdout ?? err.message }))
  t.ok(tsc.ok, `tsc --strict accepts the README snippet and the client\n${tsc.out}`)
  if (!tsc.ok) return

  const server = new ChildHandle(spawn(process.execPath, ['out/server.js'], {
    cwd: host, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PORT: '0', HOST: '127.0.0.1' }, stdio: ['ignore', 'pipe', 'pipe']
  }))
  t.teardown(async () => { if (server.running) { server.kill('SIGKILL'); await server.exited } })
  const listening = await server.waitFor(/Server listening at http:\/\/([^"\s]+)/, { timeoutMs: 30_000 })
  const base = `http://${listening[1] ?? ''}`
  t.notMatch(server.stdout, /maxParamLength/, 'no maxParamLength warning at boot')
  t.equal((await fetch(`${base}/`)).status, 200, 'the host\'s own route')
  t.match(await (await fetch(`${base}/rt/health`)).json(), { status: 'ok' }, 'Flow\'s /rt/health')

  await t.test('<prefix>/docs/json answers the OpenAPI document (needs the OpenAPI branch)', async (t) => {
    const res = await fetch(`${base}/rt/docs/json`)
    t.equal(res.status, 200)
    if (res.status === 200) t.match(await res.json(), { openapi: /^3\./, paths: Object })
  })

  const client = new ChildHandle(spawn(process.execPath, ['out/client.js', `${base.replace('http', 'ws')}/rt/ws`], {
    cwd: host, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'pipe']
  }))
  t.teardown(async () => { if (client.running) { client.kill('SIGKILL'); await client.exited } })
  const exchanged = await client.waitFor(/\{"event":"exchanged".*\}/, { timeoutMs: 15_000 })
  t.same(JSON.parse(exchanged[0]), { event: 'exchanged', seq: 1, data: { add: 'sticky' } }, 'one client\'s op reached the other')

  server.kill('SIGTERM')
  const closed = await client.waitFor(/\{"event":"closed".*\}/, { timeoutMs: 15_000 })
  t.same(JSON.parse(closed[0]), { event: 'closed', code: 1001 }, 'SIGTERM drains: the client is closed with 1001')
  t.equal((await server.exited).code, 0, 'the host exits 0')
  t.equal((await client.exited).code, 0, 'the client ends once closed')
})
