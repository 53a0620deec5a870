/**
 * A real Redis Sentinel setup for tests: a primary, one replica of it and
 * three sentinels monitoring them, every process on a free loopback port,
 * each sentinel with its own config file in a temporary directory (sentinels
 * rewrite their config). Every process is killed at the end of the test.
 * Needs `redis-server` only (`redis-server <conf> --sentinel` is a sentinel).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { createClient } from 'redis'
import { answersPing, startRedis, type TestRedis } from './redis.js'
import { freePort } from './process.js'
import { waitFor } from './wait.js'

/** The master group name the sentinels monitor. */
export const SENTINEL_NAME = 'flowtest'

export interface SentinelGroupOptions {
  /** `sentinel down-after-milliseconds` (default 1000) */
  readonly downAfterMs?: number
  /** `sentinel failover-timeout` (default 5000) */
  readonly failoverTimeoutMs?: number
  /** replicas of the primary (default 1) */
  readonly replicas?: number
}

export interface TestSentinelGroup {
  readonly name: string
  /** the first primary */
  readonly primary: TestRedis
  /** its (first) replica, which a failover promotes when it is the only one */
  readonly replica: TestRedis
  /** every replica */
  readonly replicas: readonly TestRedis[]
  /** the sentinels' ports */
  readonly sentinelPorts: readonly number[]
  /** `127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`, as REDIS_SENTINELS wants it */
  readonly sentinels: string
  /** The port of the primary a sentinel names now (asks each in turn until one answers). */
  primaryPort: () => Promise<number>
  /** Runs a command on a sentinel (the first that answers). */
  ask: (args: string[]) => Promise<unknown>
}

const running = new Set<ChildProcess>()
let hooked = false

function killAllOnExit (): void {
  if (hooked) return
  hooked = true
  process.on('exit', () => { for (const child of running) child.kill('SIGKILL') })
}

async function startSentinel (t: Test, dir: string, primaryPort: number, options: SentinelGroupOptions): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const conf = join(dir, `sentinel-${port}.conf`)
    await writeFile(conf, [
      `port ${port}`,
      'bind 127.0.0.1',
      'daemonize no',
      `dir ${dir}`,
      'loglevel warning',
      `sentinel monitor ${SENTINEL_NAME} 127.0.0.1 ${primaryPort} 2`,
      `sentinel down-after-milliseconds ${SENTINEL_NAME} ${options.downAfterMs ?? 1000}`,
      `sentinel failover-timeout ${SENTINEL_NAME} ${options.failoverTimeoutMs ?? 5000}`,
      `sentinel parallel-syncs ${SENTINEL_NAME} 1`,
      ''
    ].join('\n'))
    const child = spawn('redis-server', [conf, '--sentinel'], { stdio: ['ignore', 'pipe', 'pipe'] })
    running.add(child)
    let output = ''
    const collect = (chunk: Buffer): void => { output = (output + chunk.toString('utf8')).slice(-4096) }
    child.stdout.on('data', collect)
    child.stderr.on('data', collect)
    let exited = false
    const exit = new Promise<void>((resolve) => {
      child.once('exit', () => { exited = true; running.delete(child); resolve() })
      child.once('error', (err) => { output += `\n${String(err)}`; exited = true; running.delete(child); resolve() })
    })
    t.teardown(async () => {
      if (!exited) child.kill('SIGKILL')
      await exit
    })
    try {
      await waitFor(async () => {
        if (exited) throw new Error(`sentinel on port ${port} exited: ${output}`)
        return await answersPing(port)
      }, { what: `the sentinel on port ${port} to answer PING`, timeoutMs: 10_000, intervalMs: 20 })
      return port
    } catch (err) {
      if (attempt >= 3 || !String(err).includes('Address already in use')) throw err
    }
  }
}

/** Counts the entries of a SENTINEL REPLICAS / SENTINELS reply (RESP2 arrays or RESP3 maps). */
function entries (reply: unknown): Array<Record<string, string>> {
  if (!Array.isArray(reply)) return []
  return reply.map((entry: unknown) => {
    if (Array.isArray(entry)) {
      const out: Record<string, string> = {}
      for (let i = 0; i + 1 < entry.length; i += 2) out[String(entry[i])] = String(entry[i + 1])
      return out
    }
    if (entry instanceof Map) return Object.fromEntries([...entry].map(([k, v]) => [String(k), String(v)]))
    return Object.fromEntries(Object.entries(entry as Record<string, unknown>).map(([k, v]) => [k, String(v)]))
  })
}

/**
 * Starts a primary, its replica and three sentinels (quorum 2), and waits
 * until the replica is in sync and every sentinel knows the replica and the
 * two other sentinels: from then on, killing the primary makes them promote
 * the replica.
 */
export async function startSentinelGroup (t: Test, options: SentinelGroupOptions = {}): Promise<TestSentinelGroup> {
  const primary = await startRedis(t)
  const replicas = await Promise.all(Array.from({ length: options.replicas ?? 1 },
    async () => await startRedis(t, { args: ['--replicaof', '127.0.0.1', String(primary.port)] })))
  const replica = replicas[0] as TestRedis
  const dir = await mkdtemp(join(tmpdir(), 'flow-sentinel-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  killAllOnExit()
  const sentinelPorts: number[] = []
  for (let i = 0; i < 3; i++) sentinelPorts.push(await startSentinel(t, dir, primary.port, options))

  const clients = await Promise.all(sentinelPorts.map(async (port) => {
    const client = createClient({ socket: { host: '127.0.0.1', port, reconnectStrategy: () => 50 } })
    client.on('error', () => {})
    t.teardown(() => { if (client.isOpen) client.destroy() })
    await client.connect()
    return client
  }))
  for (const r of replicas) {
    const replicaClient = createClient({ url: r.url, socket: { reconnectStrategy: () => 50 } })
    replicaClient.on('error', () => {})
    t.teardown(() => { if (replicaClient.isOpen) replicaClient.destroy() })
    await replicaClient.connect()
    await waitFor(async () => (await replicaClient.info('replication')).includes('master_link_status:up'),
      { what: 'the replica to be in sync with the primary', timeoutMs: 15_000, intervalMs: 50 })
    replicaClient.destroy()
  }
  await waitFor(async () => {
    for (const c of clients) {
      const sentinels = entries(await c.sendCommand(['SENTINEL', 'SENTINELS', SENTINEL_NAME]))
      const known = entries(await c.sendCommand(['SENTINEL', 'REPLICAS', SENTINEL_NAME]))
      if (known.length !== replicas.length || known.some((r) => (r.flags ?? '').includes('down')) || sentinels.length !== 2) return false
    }
    return true
  }, { what: 'every sentinel to know the replicas and the two other sentinels', timeoutMs: 20_000, intervalMs: 100 })

  const ask = async (args: string[]): Promise<unknown> => {
    let last: unknown
    for (const c of clients) {
      if (!c.isReady) continue
      try {
        return await c.sendCommand(args)
      } catch (err) {
        last = err
      }
    }
    throw new Error(`no sentinel answered ${args.join(' ')}: ${String(last)}`)
  }
  return {
    name: SENTINEL_NAME,
    primary,
    replica,
    replicas,
    sentinelPorts,
    sentinels: sentinelPorts.map((p) => `127.0.0.1:${p}`).join(','),
    primaryPort: async () => Number((await ask(['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_NAME]) as string[])[1]),
    ask
  }
}
