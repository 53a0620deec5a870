/**
 * The single-file browser builds (`npm run build` → dist/browser/): the
 * client in one ES module that imports nothing, with the same exports as
 * dist/client/index.js and working against a real server; the React hook in
 * one that imports only `react`; both served by the demo at
 * `{prefix}/client/` to pages of any origin, revalidated through their ETag.
 */
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { ensureBuilt, ROOT, spawnNode } from '../helpers/process.js'
import { startServer } from '../helpers/server.js'

/** `from '…'`, `import '…'` and `import('…')`: every module a file names. */
const MODULE = /\b(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g
const modules = (text: string): string[] => [...text.matchAll(MODULE)].map((m) => m[1] as string)

await ensureBuilt()
const CLIENT_FILE = join(ROOT, 'dist', 'browser', 'flow-client.js')
const REACT_FILE = join(ROOT, 'dist', 'browser', 'flow-react.js')
const clientSource = await readFile(CLIENT_FILE, 'utf8')
const reactSource = await readFile(REACT_FILE, 'utf8')

/**
 * Loads the builds in a child Node (a build artifact stays out of the
 * coverage of the sources it is built from), runs two clients of the bundle
 * against `ws`, and prints what the parent checks, as JSON.
 */
const PROBE = `
import WebSocket from 'ws'
const [clientFile, perFile, reactFile, ws] = process.argv.slice(1)
const bundle = await import(clientFile)
const out = {
  exports: Object.keys(bundle).sort(),
  perFileExports: Object.keys(await import(perFile)).sort(),
  hookExports: Object.keys(await import(reactFile))
}
const ann = new bundle.FlowClient({ url: ws + '?userId=ann', WebSocket })
const bob = new bundle.FlowClient({ url: ws + '?userId=bob', WebSocket })
const seen = new Promise((resolve) => bob.on('op', (project, op) => resolve(op.data)))
const a = ann.join('bundle')
const b = bob.join('bundle')
ann.connect()
bob.connect()
await Promise.all([a.ready, b.ready])
out.seq = (await a.send({ hello: 'from the bundle' })).seq
out.seen = await seen
ann.close()
bob.close()
console.log(JSON.stringify(out))
`

t.test('the client\'s browser build imports nothing and exports what the client exports', async (t) => {
  t.same(modules(clientSource.replace(/^\/\/# sourceMappingURL=.*$/m, '')), [], 'flow-client.js names no module')
  t.match(clientSource, /\n\/\/# sourceMappingURL=flow-client\.js\.map\n$/, 'but its source map, beside it')
  t.notMatch(clientSource, /\b(Buffer|process|require)\b[.(]/, 'no Node globals')
  t.same(modules(reactSource), ['react'], 'flow-react.js names react only')
})

t.test('the browser builds load, and the client\'s collaborates through a real server', async (t) => {
  const server = await startServer(t)
  const files = [CLIENT_FILE, join(ROOT, 'dist', 'client', 'index.js'), REACT_FILE].map((f) => pathToFileURL(f).href)
  const probe = spawnNode(t, ['--input-type=module', '-e', PROBE, ...files, server.ws])
  const exit = await probe.exited
  t.same(exit, { code: 0, signal: null }, probe.stderr)
  const out = JSON.parse(probe.stdout) as { exports: string[], perFileExports: string[], hookExports: string[], seq: number, seen: unknown }
  t.same(out.exports, out.perFileExports, 'the same exports as dist/client/index.js')
  t.same(out.hookExports, ['useFlowProject'], 'the hook\'s build exports the hook')
  t.equal(out.seq, 1, 'an op sent through the bundle is acknowledged')
  t.same(out.seen, { hello: 'from the bundle' }, 'and handed to the other client')
})

t.test('the demo serves the browser builds to any origin, with an ETag to revalidate', async (t) => {
  const server = await startServer(t, { prefix: '/rt', demo: true })
  const res = await server.app.inject({ url: '/rt/client/flow-client.js', headers: { origin: 'https://app.example' } })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/javascript/)
  t.equal(res.body, clientSource, 'the file of dist/browser/')
  t.equal(res.headers['access-control-allow-origin'], '*', 'a module script of another origin may load it')
  t.equal(res.headers['cache-control'], 'public, no-cache', 'kept, but revalidated before each use')
  const etag = res.headers.etag
  t.match(etag, /^"[A-Za-z0-9_-]{27}"$/, 'a strong ETag: the content\'s hash')

  const again = await server.app.inject({ url: '/rt/client/flow-client.js', headers: { 'if-none-match': String(etag) } })
  t.equal(again.statusCode, 304, 'unchanged: 304')
  t.equal(again.body, '')
  t.equal(again.headers.etag, etag)
  const weak = await server.app.inject({ url: '/rt/client/flow-client.js', headers: { 'if-none-match': `"other", W/${String(etag)}` } })
  t.equal(weak.statusCode, 304, 'a list, and a weak form of the tag, match too')
  const stale = await server.app.inject({ url: '/rt/client/flow-client.js', headers: { 'if-none-match': '"an-older-build"' } })
  t.equal(stale.statusCode, 200, 'another build\'s tag gets the file')

  const hook = await server.app.inject({ url: '/rt/client/flow-react.js' })
  t.equal(hook.statusCode, 200)
  t.equal(hook.body, reactSource)
  t.not(hook.headers.etag, etag, 'each file has its own tag')
  t.equal((await server.app.inject({ method: 'HEAD', url: '/rt/client/flow-client.js' })).statusCode, 200, 'HEAD too')

  const map = await server.app.inject({ url: '/rt/client/flow-client.js.map' })
  t.equal(map.statusCode, 200, 'the source map too')
  t.match(map.headers['content-type'], /^application\/json/)
  t.match(JSON.parse(map.body), { sources: ['../../client/backoff.ts'] }, 'mapped to the TypeScript sources, through tsc\'s maps')

  for (const file of ['index.js', 'project.js', 'react.js', '..%2Fapp.js']) {
    t.equal((await server.app.inject({ url: `/rt/client/${file}` })).statusCode, 404, `${file}: not served`)
  }
  const page = await server.app.inject({ url: '/rt/app.js' })
  t.match(page.body, /from '\.\/client\/flow-client\.js'/, 'the demo page loads the single file')
})
