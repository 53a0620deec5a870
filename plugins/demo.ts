import fp from 'fastify-plugin'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import { ConfigError } from '../lib/errors.js'
import type { SnapshotReducer } from '../lib/hub/snapshots.js'
import type { Op } from '../lib/types.js'

/** One note of the demo board: its text and who added it. */
export interface DemoNote {
  readonly text: string
  readonly userId: string
}

/** The demo board's state, as its snapshots hold it: the notes on the board, by id, in the order added. */
export interface DemoBoardState {
  readonly notes: Readonly<Record<string, DemoNote>>
}

const isObject = (v: unknown): v is Readonly<Record<string, unknown>> => typeof v === 'object' && v !== null

/** The notes of a state as a fresh object without a prototype (an id `__proto__` is a note like any other). */
function notesOf (state: unknown): Record<string, DemoNote> {
  const notes = isObject(state) && isObject(state.notes) ? state.notes : {}
  return Object.assign(Object.create(null) as Record<string, DemoNote>, notes)
}

/**
 * Folds one op of the demo board, `{ add: { id, text } }` or `{ remove: id }`,
 * exactly as demo/app.js's `apply` does: an add sets the note (its text as a
 * string, its author the op's user), a remove deletes it, anything else
 * changes nothing. Pure, synchronous, never throws (a malformed op, or a state
 * a client uploaded that is not a board, counts as nothing); the state holds
 * only the notes on the board, so it grows and shrinks with the board.
 */
export function foldDemoBoard (state: unknown, op: Op): DemoBoardState {
  const data = op.data
  const add = isObject(data) && isObject(data.add) && typeof data.add.id === 'string' ? data.add : undefined
  const remove = isObject(data) && typeof data.remove === 'string' ? data.remove : undefined
  const board = isObject(state) && isObject(state.notes) ? state as unknown as DemoBoardState : { notes: {} }
  if (add === undefined && (remove === undefined || !Object.hasOwn(board.notes, remove))) return board
  const notes = notesOf(board)
  if (add !== undefined) notes[add.id as string] = { text: String(add.text), userId: op.userId }
  if (remove !== undefined) delete notes[remove]
  return { notes }
}

/**
 * The demo board on the reducer path (protocol 1.2, Snapshots): `demo: true`
 * uses it as the `snapshots` option when the host passes none, so a new tab
 * gets the board as a snapshot and the ops after it, however long its log.
 * Only for the demo's projects (`demo`, `demo-*`): the other projects of a
 * server started with `npm start` are the app's, whose state is not a board
 * (they get no snapshot from it, and keep their usual history bounds).
 */
export const demoBoard: SnapshotReducer = {
  initial: { notes: {} } satisfies DemoBoardState,
  reduce: foldDemoBoard,
  projects: isDemoProject
}

/** The projects the demo board folds: `demo` and `demo-*`. */
export function isDemoProject (project: string): boolean {
  return project === 'demo' || project.startsWith('demo-')
}

/**
 * The package root: the nearest directory above this module with a
 * package.json (`plugins/` when run from source, `dist/plugins/` when built).
 */
function packageRoot (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir)
    if (parent === dir) throw new ConfigError('demo is on, but no package.json is above this module (an incomplete install)')
    dir = parent
  }
  return dir
}

const HTML = 'text/html; charset=utf-8'
const JS = 'text/javascript; charset=utf-8'

/** A built browser file, with the ETag its content hash gives it. */
interface Asset {
  readonly body: string
  readonly type: string
  readonly etag: string
}

/** The single-file browser builds (`npm run build`, dist/browser/) served at `{prefix}/client/`, and their source maps. */
const BROWSER_FILES = ['flow-client.js', 'flow-client.js.map', 'flow-react.js', 'flow-react.js.map']

/** The files of `dir` named in `names` that exist, by name, each with a strong ETag of its content's SHA-256. */
function readAssets (dir: string, names: readonly string[]): Map<string, Asset> {
  const assets = new Map<string, Asset>()
  for (const name of names) {
    const path = join(dir, name)
    if (!existsSync(path)) continue
    const body = readFileSync(path, 'utf8')
    const type = name.endsWith('.map') ? 'application/json; charset=utf-8' : JS
    assets.set(name, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` })
  }
  return assets
}

/** Whether an If-None-Match header names `etag` (or is `*`); weak validators compare equal, as RFC 9110 says for GET. */
function matches (header: string | undefined, etag: string): boolean {
  if (header === undefined) return false
  return header.split(',').some((tag) => {
    const t = tag.trim()
    return t === '*' || t.replace(/^W\//, '') === etag
  })
}

/**
 * A live demo, a shared board of sticky notes: `{prefix}/` serves the page
 * (demo/index.html and demo/app.js), and `{prefix}/client/flow-client.js`
 * and `{prefix}/client/flow-react.js` the single-file browser builds
 * (dist/browser/), which pages of other origins may load too. Files are read
 * once, at register time.
 *
 * The browser files keep their URL across releases, so a cache may keep
 * them but must ask before using them again (`no-cache`): the ETag, a hash of
 * the content, makes that a 304 until a deploy changes the file, and a
 * client older than its server is never used.
 */
async function demoPlugin (fastify: FastifyInstance): Promise<void> {
  const root = packageRoot()
  const demo = join(root, 'demo')
  // An install without the demo's files (the Docker image copies dist/ only) runs without the demo.
  if (!existsSync(join(demo, 'index.html')) || !existsSync(join(demo, 'app.js'))) {
    fastify.log.info(`flow-demo: no ${demo}/, the demo page is not served`)
    return
  }
  const page = readFileSync(join(demo, 'index.html'), 'utf8')
  const app = readFileSync(join(demo, 'app.js'), 'utf8')
  const browser = readAssets(join(root, 'dist', 'browser'), BROWSER_FILES)
  if (!browser.has('flow-client.js')) fastify.log.warn('flow-demo: dist/browser/flow-client.js is missing (run `npm run build`): the demo page will not load')

  // A host app without a prefix may have its own `/`: leave it alone.
  const at = fastify.prefix.replace(/\/$/, '')
  if (fastify.hasRoute({ method: 'GET', url: `${at}/` }) || (at !== '' && fastify.hasRoute({ method: 'GET', url: at }))) {
    fastify.log.info(`flow-demo: GET ${at}/ is the host's route, the demo page is not served`)
  } else {
    // The page's own URLs are relative: it must be served from a path ending in '/'.
    fastify.get('/', async (request, reply) => {
      const [path = '', query] = request.url.split('?', 2)
      if (!path.endsWith('/')) return await reply.redirect(`${path}/${query === undefined ? '' : `?${query}`}`)
      return await reply.type(HTML).send(page)
    })
  }
  fastify.get('/app.js', async (_request, reply) => await reply.type(JS).send(app))
  fastify.get<{ Params: { file: string } }>('/client/:file', async (request, reply) => {
    const asset = browser.get(request.params.file)
    if (asset === undefined) return await reply.code(404).type('text/plain; charset=utf-8').send('not found (is the client built? `npm run build`)')
    // A module script from another origin is fetched in CORS mode: the file is public, any page may load it.
    void reply.headers({ 'access-control-allow-origin': '*', 'cache-control': 'public, no-cache', etag: asset.etag })
    if (matches(request.headers['if-none-match'], asset.etag)) return await reply.code(304).send()
    return await reply.type(asset.type).send(asset.body)
  })
}

export default fp(demoPlugin, { name: 'flow-demo', fastify: '5.x', dependencies: ['flow-config'] })
