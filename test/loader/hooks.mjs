// Module hooks (node:module register) that run the TypeScript test files and
// the sources they import through esbuild's transform: types stripped, an
// inline source map (for coverage and stack traces), nothing else changed.
// The code base is erasable syntax only (tsconfig's erasableSyntaxOnly), so
// this is what ts-node's transpile-only mode did, without loading TypeScript
// in each test process. Registered by register.mjs.
import { readFile, stat } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { transform } from 'esbuild'

const TS = /\.(ts|mts|cts)$/

/** @param {URL} url */
async function isFile (url) {
  try {
    return (await stat(fileURLToPath(url))).isFile()
  } catch {
    return false
  }
}

/**
 * `./x.js` names `./x.ts` where only the .ts exists (TypeScript's nodenext imports).
 * @type {import('node:module').ResolveHook}
 */
export async function resolve (specifier, context, next) {
  try {
    return await next(specifier, context)
  } catch (err) {
    const local = specifier.startsWith('.') || specifier.startsWith('/') || specifier.startsWith('file:')
    const code = err instanceof Error && 'code' in err ? err.code : undefined
    const m = /\.(js|mjs|cjs)$/.exec(specifier)
    if (!local || code !== 'ERR_MODULE_NOT_FOUND' || context.parentURL === undefined || m === null) throw err
    const ext = m[1] ?? 'js'
    const url = new URL(`${specifier.slice(0, -ext.length)}${ext.replace('js', 'ts')}`, context.parentURL)
    if (!(await isFile(url))) throw err
    return { url: url.href, shortCircuit: true, format: ext === 'cjs' ? 'commonjs' : 'module' }
  }
}

/** @type {import('node:module').LoadHook} */
export async function load (url, context, next) {
  if (!url.startsWith('file:') || !TS.test(url)) return next(url, context)
  const path = fileURLToPath(url)
  const cjs = url.endsWith('.cts')
  const out = await transform(await readFile(path, 'utf8'), {
    loader: 'ts',
    format: cjs ? 'cjs' : 'esm',
    target: 'es2022',
    sourcemap: 'inline',
    sourcefile: path,
    // As tsc compiles them (tsconfig.json: es2022, verbatimModuleSyntax).
    tsconfigRaw: { compilerOptions: { useDefineForClassFields: true, verbatimModuleSyntax: true } }
  })
  return { format: cjs ? 'commonjs' : 'module', source: out.code, shortCircuit: true }
}
