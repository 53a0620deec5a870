import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { Test } from 'tap'
import { waitFor } from './wait.js'

/** The repository root (where package.json is). */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url))

const run = promisify(execFile)

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/**
 * A child process whose output is kept, so a test awaits the line it
 * expects instead of sleeping.
 */
export class ChildHandle {
  readonly child: ChildProcess
  stdout = ''
  stderr = ''
  readonly exited: Promise<Exit>
  #exit: Exit | null = null
  readonly #listeners = new Set<() => void>()

  constructor (child: ChildProcess) {
    this.child = child
    child.stdout?.setEncoding('utf8')
    child.stderr?.setEncoding('utf8')
    child.stdout?.on('data', (chunk: string) => { this.stdout += chunk; this.#notify() })
    child.stderr?.on('data', (chunk: string) => { this.stderr += chunk; this.#notify() })
    this.exited = new Promise((resolve) => {
      // 'close': the process exited and its output streams are read to the end.
      child.on('close', (code, signal) => {
        this.#exit = { code, signal }
        this.#notify()
        resolve(this.#exit)
      })
    })
  }

  /** Whether the process has not exited yet. */
  get running (): boolean {
    return this.#exit === null && this.child.exitCode === null && this.child.signalCode === null
  }

  #notify (): void {
    for (const listener of [...this.#listeners]) listener()
  }

  /**
   * Resolves the first match of `pattern` in stdout (or stderr) at or after
   * character `from`; rejects when the process exits without it or after
   * `timeoutMs`, showing the output so far.
   */
  async waitFor (pattern: RegExp, options: { stream?: 'stdout' | 'stderr', from?: number, timeoutMs?: number } = {}): Promise<RegExpMatchArray> {
    const stream = options.stream ?? 'stdout'
    const from = options.from ?? 0
    const timeoutMs = options.timeoutMs ?? 10_000
    return await new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = (): void => {
        const match = this[stream].slice(from).match(pattern)
        if (match !== null) {
          done()
          resolve(match)
        } else if (this.#exit !== null) {
          done()
          reject(new Error(`process exited (${JSON.stringify(this.#exit)}) without printing ${String(pattern)}\n${this.#describe()}`))
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`no ${String(pattern)} within ${timeoutMs} ms\n${this.#describe()}`))
      }, timeoutMs)
      const done = (): void => {
        clearTimeout(timer)
        this.#listeners.delete(check)
      }
      this.#listeners.add(check)
      check()
    })
  }

  #describe (): string {
    return `--- stdout\n${this.stdout.slice(-4000)}\n--- stderr\n${this.stderr.slice(-4000)}`
  }

  kill (signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.running) this.child.kill(signal)
  }
}

/**
 * Starts `node ...args` in the repository root with only PATH and `env` in
 * its environment (no tap loader, no coverage, no NODE_ENV from outside).
 * Killed with SIGKILL at the end of `t` if it is still running.
 */
export function spawnNode (t: Test, args: readonly string[], env: Record<string, string> = {}): ChildHandle {
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const handle = new ChildHandle(child)
  t.teardown(async () => {
    if (handle.running) {
      child.kill('SIGKILL')
      await handle.exited
    }
  })
  return handle
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  if (address === null || typeof address === 'string') throw new Error('no address')
  return address.port
}

const SOURCES = ['lib', 'plugins', 'ports', 'adapters', 'client']
const CONFIGS = ['app.ts', 'server.ts', 'tsconfig.json', 'tsconfig.build.json', 'package.json']
const STAMP = join(ROOT, 'dist', '.test-build-stamp')

async function newestSource (): Promise<number> {
  let newest = 0
  const visit = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) await visit(path)
      else if (entry.name.endsWith('.ts')) newest = Math.max(newest, (await stat(path)).mtimeMs)
    }
  }
  for (const dir of SOURCES) await visit(join(ROOT, dir))
  for (const file of CONFIGS) newest = Math.max(newest, (await stat(join(ROOT, file))).mtimeMs)
  return newest
}

/**
 * `npm run build` when a source is newer than the last build made here.
 * Test files run in parallel: a lock directory makes one build at a time,
 * so no test starts `dist/` while another rewrites it.
 */
export async function ensureBuilt (): Promise<void> {
  const lock = join(tmpdir(), `flow-build-${createHash('sha256').update(ROOT).digest('hex').slice(0, 12)}.lock`)
  await waitFor(async () => {
    try {
      await mkdir(lock)
      return true
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      // A lock left by a killed run is stale after two minutes.
      const since = await stat(lock).then((s) => Date.now() - s.mtimeMs, () => 0)
      if (since > 120_000) await rm(lock, { recursive: true, force: true })
      return undefined
    }
  }, { what: 'the build lock', timeoutMs: 180_000, intervalMs: 50 })
  try {
    const built = await stat(STAMP).then((s) => s.mtimeMs, () => 0)
    if (await newestSource() >= built) {
      // Without tap's loader and coverage: tsc is not under test.
      const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => name !== 'NODE_OPTIONS' && name !== 'NODE_V8_COVERAGE'))
      await run('npm', ['run', 'build'], { cwd: ROOT, env })
      await writeFile(STAMP, new Date().toISOString())
    }
  } finally {
    await rm(lock, { recursive: true, force: true })
  }
}

export interface EntryServer {
  readonly proc: ChildHandle
  /** http://HOST:PORT */
  readonly http: string
  /** ws://HOST:PORT/ws */
  readonly ws: string
}

/**
 * Starts `npm start`'s entry, `node dist/server.js`, with `env` (PORT 0
 * and HOST 127.0.0.1 unless given) and resolves once it listens. Call
 * {@link ensureBuilt} first.
 */
export async function startEntry (t: Test, env: Record<string, string> = {}): Promise<EntryServer> {
  const proc = spawnNode(t, ['dist/server.js'], { PORT: '0', HOST: '127.0.0.1', ...env })
  // Starting takes 1-2 s on a quiet machine; the suite runs two files at once on 2 cores beside
  // browsers and Redis servers, where it was seen to take 10 s.
  const match = await proc.waitFor(/Server listening at http:\/\/([^"\s]+)/, { timeoutMs: 30_000 })
  const address = match[1] as string
  return { proc, http: `http://${address}`, ws: `ws://${address}/ws` }
}
