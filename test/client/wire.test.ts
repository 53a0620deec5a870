/**
 * The client shares the server's definitions without loading server code:
 * its types come from lib/protocol/wire.ts as `import type` (erased at
 * build), and its runtime copies of the server's id rules are checked here
 * against the server's own.
 */
import t from 'tap'
import { readdir, readFile } from 'node:fs/promises'
import ts from 'typescript'
import * as clientIds from '../../client/ids.js'
import * as serverIds from '../../lib/ids.js'

const CLIENT = new URL('../../client/', import.meta.url)
const WIRE = new URL('../../lib/protocol/wire.ts', import.meta.url)
/** The one module outside client/ the client may name, for its types only. */
const WIRE_IMPORT = '../lib/protocol/wire.js'
/** `from '…'`, `import '…'` and `import('…')`: every module a file names. */
const MODULE = /\b(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g
const SIBLING = /^\.\/[a-z-]+\.js$/

function modules (text: string): string[] {
  return [...text.matchAll(MODULE)].map((m) => m[1] as string)
}

/** What the build makes of a client file (tsconfig's verbatimModuleSyntax: `import type` is erased, `import { type X }` is not). */
function emitted (source: string, fileName: string): string {
  return ts.transpileModule(source, {
    fileName,
    compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true, removeComments: true }
  }).outputText
}

t.test('the client\'s id rules are the server\'s', async (t) => {
  for (const name of ['PROJECT_ID', 'OP_ID'] as const) {
    t.equal(clientIds[name].source, serverIds[name].source, `${name}: same pattern as lib/ids.ts`)
    t.equal(clientIds[name].flags, serverIds[name].flags, `${name}: same flags as lib/ids.ts`)
  }
})

t.test('the client loads only its own files at runtime and takes only the wire types from the server', async (t) => {
  const files = (await readdir(CLIENT)).filter((f) => f.endsWith('.ts'))
  t.ok(files.length >= 5)
  for (const file of files) {
    const source = await readFile(new URL(file, CLIENT), 'utf8')
    t.same(modules(emitted(source, file)).filter((m) => !SIBLING.test(m)), [], `${file}: its built JavaScript imports only ./*.js`)
    t.same(modules(source).filter((m) => !SIBLING.test(m) && m !== WIRE_IMPORT), [], `${file}: names no module but ./*.js and ${WIRE_IMPORT}`)
    t.notMatch(source, /\b(Buffer|process|require)\b[.(]/, `${file} uses no Node globals`)
  }
})

t.test('the wire types import nothing and emit no code', async (t) => {
  const source = await readFile(WIRE, 'utf8')
  t.same(modules(source), [], 'wire.ts names no module')
  t.equal(emitted(source, 'wire.ts').trim(), 'export {};', 'wire.ts builds to an empty module')
})
