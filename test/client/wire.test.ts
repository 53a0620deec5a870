/**
 * The client shares the server's definitions without loading server code:
 * its types come from lib/protocol/wire.ts as `import type` (erased at
 * build), and its runtime copies of the server's id rules are checked here
 * against the server's own. The React hook (react.ts) is the one file that
 * loads a package, `react`, and nothing else at runtime: the core never
 * loads React.
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
/** The hook's file, and the one package it may load at runtime. */
const HOOK = 'react.ts'
const REACT = 'react'

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
  const files = (await readdir(CLIENT)).filter((f) => f.endsWith('.ts') && f !== HOOK)
  t.ok(files.length >= 5)
  for (const file of files) {
    const source = await readFile(new URL(file, CLIENT), 'utf8')
    t.same(modules(emitted(source, file)).filter((m) => !SIBLING.test(m)), [], `${file}: its built JavaScript imports only ./*.js`)
    t.same(modules(source).filter((m) => !SIBLING.test(m) && m !== WIRE_IMPORT), [], `${file}: names no module but ./*.js and ${WIRE_IMPORT}`)
    t.notMatch(source, /\b(Buffer|process|require)\b[.(]/, `${file} uses no Node globals`)
  }
})

t.test('the React hook loads only react at runtime, and no file of the core client imports the hook', async (t) => {
  const source = await readFile(new URL(HOOK, CLIENT), 'utf8')
  t.same(modules(emitted(source, HOOK)), [REACT], `${HOOK}: its built JavaScript imports only react (the client's types are erased)`)
  t.same(modules(source).filter((m) => !SIBLING.test(m) && m !== REACT), [], `${HOOK}: names no module but react and ./*.js`)
  t.notMatch(source, /\b(Buffer|process|require)\b[.(]/, `${HOOK} uses no Node globals`)
  for (const file of (await readdir(CLIENT)).filter((f) => f.endsWith('.ts') && f !== HOOK)) {
    t.notOk(modules(await readFile(new URL(file, CLIENT), 'utf8')).includes(`./${HOOK.replace(/\.ts$/, '.js')}`), `${file} does not import the hook`)
  }
})

t.test('the wire types import nothing and emit no code', async (t) => {
  const source = await readFile(WIRE, 'utf8')
  t.same(modules(source), [], 'wire.ts names no module')
  t.equal(emitted(source, 'wire.ts').trim(), 'export {};', 'wire.ts builds to an empty module')
})
