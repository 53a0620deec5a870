// Builds dist/ (`npm run build`) only when it is missing or a source is newer
// than everything in it: `npm start` (prestart) and `npm install` in a clone
// or from a git URL (prepare) then start from dist/ without running tsc
// each time. Does nothing where there are no sources (an installed package,
// the Docker image's runtime stage).
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
/** What dist/ is built from (tsconfig.build.json's include, and the browser bundle's source, client/). */
const SOURCES = ['app.ts', 'server.ts', 'cli.ts', 'lib', 'plugins', 'ports', 'adapters', 'client', 'tsconfig.json', 'tsconfig.build.json']
/** Outputs that must exist, whatever the times say. */
const OUTPUTS = ['dist/app.js', 'dist/server.js', 'dist/cli.js', 'dist/client/index.js', 'dist/browser/flow-client.js']

/** The newest modification time under `path` (a file or a folder), 0 when it is missing. */
function newest (path) {
  if (!existsSync(path)) return 0
  const stats = statSync(path)
  if (!stats.isDirectory()) return stats.mtimeMs
  let max = 0
  for (const entry of readdirSync(path)) max = Math.max(max, newest(join(path, entry)))
  return max
}

if (!existsSync(join(root, 'app.ts'))) process.exit(0)

const missing = OUTPUTS.filter((file) => !existsSync(join(root, file)))
const source = Math.max(...SOURCES.map((s) => newest(join(root, s))))
const built = newest(join(root, 'dist'))
if (missing.length === 0 && source <= built) process.exit(0)

const why = missing.length > 0 ? `${missing[0]} is missing` : 'a source is newer than dist/'
if (!existsSync(join(root, 'node_modules', 'typescript'))) {
  if (missing.length > 0) {
    console.error(`flow: ${why} and TypeScript is not installed: run npm install (with dev dependencies), then npm run build`)
    process.exit(1)
  }
  console.error(`flow: ${why}, but TypeScript is not installed: starting from the dist/ there is`)
  process.exit(0)
}
console.error(`flow: ${why}: npm run build`)
const result = spawnSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' })
process.exit(result.status ?? 1)
