/**
 * Real redis-server processes for tests (STYLE.md, Tests): each test file
 * starts its own on a free loopback port, never the machine's Redis on 6379,
 * and never FLUSHALL; tests share one server through unique key prefixes.
 * The process can be frozen (SIGSTOP), thawed, killed and restarted, for
 * outage tests.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { accessSync, constants } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import type { Test } from 'tap'
import { createClient, type RedisClientType } from 'redis'
import { waitFor } from './wait.js'
import type { RedisCommandClient } from '../../adapters/redis/scripts.js'

const REDIS_SERVER = 'redis-server'
/** How long a redis-server may take to answer PING after it was spawned. */
const START_TIMEOUT_MS = 10_000

export interface StartRedisOptions {
  /** persist every write (`--appendonly yes --appendfsync always`), so a killed server restarts with its data */
  readonly appendOnly?: boolean
  /** a port to use (a test that needs to know it before Redis starts); default: a free one */
  readonly port?: number
  /** more redis-server arguments, e.g. `['--cluster-enabled', 'yes']` */
  readonly args?: readonly string[]
}

export interface TestRedis {
  /** `redis://127.0.0.1:PORT` */
  readonly url: string
  readonly port: number
  /** the server's working directory (its AOF files with `appendOnly`) */
  readonly dir: string
  /** the pid of the current process (changes with restart()) */
  readonly pid: number
  /** Freezes the process (SIGSTOP): connections stay open, nothing is answered. */
  stop (): void
  /** Thaws a frozen process (SIGCONT). */
  cont (): void
  /** Kills the process (SIGKILL) and resolves once it has exited. Idempotent. */
  kill (): Promise<void>
  /**
   * Stops the process if it runs (SIGKILL, or `signal`: SIGTERM shuts down
   * cleanly, writing what it must), then starts it again on the same port and
   * directory and waits for PING.
   */
  restart (signal?: NodeJS.Signals): Promise<void>
}

/** Every redis-server still running, killed if the test process exits first. */
const running = new Set<ChildProcess>()
let exitHookInstalled = false

function installExitHook (): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', () => {
    for (const child of running) child.kill('SIGKILL')
  })
}

function assertRedisServerInstalled (): void {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue
    try {
      accessSync(join(dir, REDIS_SERVER), constants.X_OK)
      return
    } catch {
      // not in this directory
    }
  }
  throw new Error(`${REDIS_SERVER} is not on the PATH: the Redis tests run real servers. ` +
    'Install it (Debian/Ubuntu: `apt-get install redis-server`; macOS: `brew install redis`) and run the tests again.')
}

/** A loopback port that was free a moment ago (bind port 0, read it, close). */
async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  await new Promise<void>(resolve => { server.close(() => { resolve() }) })
  if (address === null || typeof address === 'string') throw new Error('could not find a free port')
  return address.port
}

/** True when a server on `port` answers PING with PONG (not LOADING, not a refused connection). */
export async function answersPing (port: number): Promise<boolean> {
  return await new Promise<boolean>(resolve => {
    const socket = connect({ port, host: '127.0.0.1' })
    let reply = ''
    const done = (ok: boolean): void => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(1000, () => { done(false) })
    socket.once('error', () => { done(false) })
    socket.once('connect', () => { socket.write('PING\r\n') })
    socket.on('data', chunk => {
      reply += chunk.toString('latin1')
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'))
    })
  })
}

interface Spawned {
  readonly child: ChildProcess
  readonly exited: Promise<void>
  /** the last few KiB of the server's output, for error messages */
  readonly output: () => string
  readonly hasExited: () => boolean
}

function spawnServer (port: number, dir: string, appendOnly: boolean, extra: readonly string[]): Spawned {
  const args = [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--save', '',
    '--dir', dir,
    '--daemonize', 'no',
    '--loglevel', 'warning',
    ...(appendOnly ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
    ...extra
  ]
  const child = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  running.add(child)
  let output = ''
  const collect = (chunk: Buffer): void => { output = (output + chunk.toString('utf8')).slice(-4096) }
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  let exited = false
  const exit = new Promise<void>(resolve => {
    child.once('exit', () => {
      exited = true
      running.delete(child)
      resolve()
    })
    child.once('error', err => {
      output += `\n${String(err)}`
      exited = true
      running.delete(child)
      resolve()
    })
  })
  return { child, exited: exit, output: () => output, hasExited: () => exited }
}

/** Spawns a server and waits for PING; rejects with its output when it exits or does not answer in time. */
async function startServer (port: number, dir: string, appendOnly: boolean, extra: readonly string[]): Promise<Spawned> {
  const server = spawnServer(port, dir, appendOnly, extra)
  try {
    await waitFor(async () => {
      if (server.hasExited()) throw new Error(`redis-server on port ${port} exited: ${server.output()}`)
      return await answersPing(port)
    }, { what: `redis-server on port ${port} to answer PING`, timeoutMs: START_TIMEOUT_MS, intervalMs: 20 })
  } catch (err) {
    server.child.kill('SIGKILL')
    await server.exited
    throw err
  }
  return server
}

/**
 * Starts a real redis-server on a free loopback port, without persistence
 * (or with an always-fsynced AOF when asked), in its own temporary directory.
 * Resolves once it answers PING; it is killed and its directory removed at
 * the end of `t`. Throws, never skips, when redis-server is not installed.
 */
export async function startRedis (t: Test, options: StartRedisOptions = {}): Promise<TestRedis> {
  assertRedisServerInstalled()
  installExitHook()
  const appendOnly = options.appendOnly ?? false
  const extra = options.args ?? []
  const dir = await mkdtemp(join(tmpdir(), 'flow-redis-'))
  let port = 0
  let server: Spawned | undefined
  // The free port may be taken between our check and redis-server's bind: try another one.
  for (let attempt = 1; server === undefined; attempt++) {
    port = options.port ?? await freePort()
    try {
      server = await startServer(port, dir, appendOnly, extra)
    } catch (err) {
      if (attempt >= 3 || options.port !== undefined || !String(err).includes('Address already in use')) {
        await rm(dir, { recursive: true, force: true })
        throw err
      }
    }
  }
  let current: Spawned = server

  const kill = async (): Promise<void> => {
    if (current.hasExited()) return
    current.child.kill('SIGKILL')
    await current.exited
  }
  const signal = (name: NodeJS.Signals): void => {
    if (current.hasExited()) throw new Error(`redis-server on port ${port} is not running`)
    current.child.kill(name)
  }

  t.teardown(async () => {
    await kill()
    await rm(dir, { recursive: true, force: true })
  })

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    get pid (): number {
      if (current.child.pid === undefined) throw new Error('redis-server has no pid')
      return current.child.pid
    },
    stop: () => { signal('SIGSTOP') },
    cont: () => { signal('SIGCONT') },
    kill,
    restart: async (stopWith: NodeJS.Signals = 'SIGKILL') => {
      if (!current.hasExited()) {
        current.child.kill(stopWith)
        await current.exited
      }
      current = await startServer(port, dir, appendOnly, extra)
    }
  }
}

let prefixCounter = 0

/** A key prefix no other test, run or process uses: `t<pid>x<counter><random>`. */
export function uniquePrefix (): string {
  prefixCounter += 1
  return `t${process.pid}x${prefixCounter}${randomBytes(3).toString('hex')}`
}

export type TestRedisClient = RedisClientType

/** A client that records every command it is asked to send, and sends it on `client`. */
export function recording (client: TestRedisClient): { client: RedisCommandClient, commands: string[][] } {
  const commands: string[][] = []
  return {
    commands,
    client: {
      sendCommand: async (args) => {
        commands.push([...args])
        return await client.sendCommand(args)
      }
    }
  }
}

export interface RedisClientOptions {
  /** reject commands at once while disconnected instead of queueing them until the reconnection (default false) */
  readonly disableOfflineQueue?: boolean
}

/**
 * A node-redis client connected to `url`, destroyed at the end of `t`. It
 * reconnects quickly (every 50 ms) after an outage, and has an `'error'`
 * listener so a lost connection does not crash the test process.
 */
export async function redisClient (t: Test, url: string, options: RedisClientOptions = {}): Promise<TestRedisClient> {
  const client: TestRedisClient = createClient({
    url,
    disableOfflineQueue: options.disableOfflineQueue ?? false,
    // As Flow's own clients (plugins/redis.ts): no node-redis 6 time limit on a command waiting to be written.
    commandOptions: { timeout: undefined },
    socket: { reconnectStrategy: () => 50 }
  })
  client.on('error', () => {
    // Connection errors during outage tests are expected; commands still reject.
  })
  t.teardown(() => {
    if (client.isOpen) client.destroy()
  })
  await client.connect()
  return client
}

/** Every key under `prefix` (`prefix:*`), sorted, found with SCAN. */
export async function keysUnder (client: TestRedisClient, prefix: string): Promise<string[]> {
  const keys: string[] = []
  for await (const batch of client.scanIterator({ MATCH: `${prefix}:*`, COUNT: 1000 })) keys.push(...batch)
  return keys.sort()
}
