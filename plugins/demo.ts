import fp from 'fastify-plugin'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import { ConfigError } from '../lib/errors.js'

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

/** Every `.js` file of `dir`, by name (none when `dir` is missing). */
function readScripts (dir: string): Map<string, string> {
  const files = new Map<string, string>()
  if (!existsSync(dir)) return files
  for (const name of readdirSync(dir)) {
    if (name.endsWith('.js')) files.set(name, readFileSync(join(dir, name), 'utf8'))
  }
  return files
}

const HTML = 'text/html; charset=utf-8'
const JS = 'text/javascript; charset=utf-8'

/**
 * A live demo, a shared board of sticky notes: `{prefix}/` serves the page
 * (demo/index.html and demo/app.js) and `{prefix}/client/*.js` the built
 * browser client (dist/client/). Files are read once, at register time.
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
  const client = readScripts(join(root, 'dist', 'client'))
  if (client.size === 0) fastify.log.warn('flow-demo: dist/client/ is missing (run `npm run build`): the demo page will not load')

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
    const source = client.get(request.params.file)
    if (source === undefined) return await reply.code(404).type('text/plain; charset=utf-8').send('not found (is the client built? `npm run build`)')
    return await reply.type(JS).send(source)
  })
}

export default fp(demoPlugin, { name: 'flow-demo', fastify: '5.x', dependencies: ['flow-config'] })
