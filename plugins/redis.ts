import fp from 'fastify-plugin'
import { EventEmitter } from 'node:events'
import { createClient, ErrorReply } from 'redis'
import type { FastifyInstance } from 'fastify'
import type { NodeRedisClient, RedisClient } from '../adapters/redis/client.js'
import { SentinelConnection } from '../adapters/redis/sentinel.js'
import { parseSentinels, type FlowConfig } from '../lib/config.js'
import { ConfigError } from '../lib/errors.js'
import { readFileSync } from 'node:fs'

export type { NodeRedisClient, RedisClient }

/** What Redis said of its memory at the last read. */
export interface RedisMemory {
  /** bytes in use (`INFO memory` used_memory) */
  readonly usedMemory: number
  /** the limit (`maxmemory`, bytes); 0: none */
  readonly maxMemory: number
  /** usedMemory / maxMemory; null without a limit */
  readonly ratio: number | null
  /** maxmemory-policy (`CONFIG GET`, or `INFO` where CONFIG is disabled); null when neither tells */
  readonly policy: string | null
  /** when it was read (ms since the epoch) */
  readonly readAt: number
}

/** Flow's Redis connections. */
export interface FlowRedis {
  /** commands and scripts */
  readonly client: RedisClient
  /** Pub/Sub only (a subscribed connection cannot run commands) */
  readonly subscriber: RedisClient
  /** both connections are up */
  readonly ready: () => boolean
  /** Redis' maxmemory-policy once read; any but `noeviction` may evict the op log */
  readonly maxmemoryPolicy: string | null
  /** Redis' memory and policy, read at connect and every FLOW_HEALTH_CHECK_INTERVAL_MS; null until read */
  readonly memory: RedisMemory | null
  /** Reads them now; resolves null when Redis does not answer (the last read stays). */
  readonly checkMemory: () => Promise<RedisMemory | null>
  /** Calls `listener` after every read. */
  readonly onMemory: (listener: (memory: RedisMemory) => void) => void
  /** the last connection error while not connected (e.g. `WRONGPASS ...`), for /health */
  readonly lastError: string | null
  /** with REDIS_SENTINELS: the primary in use (`host:port`), null while none is connected; undefined without Sentinel */
  readonly primary?: () => string | null
}

declare module 'fastify' {
  interface FastifyInstance {
    /** set when a port runs on Redis */
    flowRedis: FlowRedis | null
  }
}

export interface RedisPluginOptions {
  /** a host app's own node-redis client; Flow never closes it */
  readonly client?: NodeRedisClient
  /** longest wait for the first connection at boot (ms); then boot goes on, degraded */
  readonly connectWaitMs?: number
}

/** Keeps reconnecting forever, backing off to 2 s, with jitter. */
export function reconnectDelay (retries: number): number {
  return Math.min(50 * 2 ** Math.min(retries, 10), 2000) + Math.floor(Math.random() * 100)
}

/**
 * The URL to connect to: `REDIS_URL`, with the parts given by `REDIS_HOST`,
 * `REDIS_PORT`, `REDIS_USERNAME`, `REDIS_PASSWORD`, `REDIS_DB` and
 * `REDIS_TLS` put over it.
 */
export function redisUrl (config: FlowConfig): string {
  const url = new URL(config.redisUrl)
  if (config.redisTls === true) url.protocol = 'rediss:'
  if (config.redisTls === false) url.protocol = 'redis:'
  if (config.redisHost !== undefined) url.hostname = config.redisHost
  if (config.redisPort !== undefined) url.port = String(config.redisPort)
  if (config.redisUsername !== undefined) url.username = encodeURIComponent(config.redisUsername)
  if (config.redisPassword !== undefined) url.password = encodeURIComponent(config.redisPassword)
  if (config.redisDb !== undefined) url.pathname = `/${config.redisDb}`
  return url.toString()
}

/** The URL without its password, for logs and /health. */
export function safeRedisUrl (url: string): string {
  const u = new URL(url)
  if (u.password !== '') u.password = '***'
  return u.toString()
}

/**
 * TLS material from REDIS_TLS_CA_FILE, REDIS_TLS_CERT_FILE and
 * REDIS_TLS_KEY_FILE, read once at start; an unreadable file stops start-up
 * naming its variable. Empty when none is set.
 */
export function tlsOptions (config: FlowConfig): { tls?: true, ca?: Buffer, cert?: Buffer, key?: Buffer } {
  const read = (file: string | undefined, env: string): Buffer | undefined => {
    if (file === undefined) return undefined
    try {
      return readFileSync(file)
    } catch (err) {
      throw new ConfigError(`${env} cannot be read: ${(err as Error).message}`)
    }
  }
  const ca = read(config.redisTlsCaFile, 'REDIS_TLS_CA_FILE')
  const cert = read(config.redisTlsCertFile, 'REDIS_TLS_CERT_FILE')
  const key = read(config.redisTlsKeyFile, 'REDIS_TLS_KEY_FILE')
  if ((cert === undefined) !== (key === undefined)) throw new ConfigError('REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together')
  if (ca === undefined && cert === undefined) return {}
  return { tls: true, ...(ca === undefined ? {} : { ca }), ...(cert === undefined ? {} : { cert, key }) }
}

/** The fields of an `INFO` reply (`name:value` lines). */
export function parseInfo (reply: string): Map<string, string> {
  const fields = new Map<string, string>()
  for (const line of reply.split(/\r?\n/)) {
    const colon = line.indexOf(':')
    if (colon > 0 && !line.startsWith('#')) fields.set(line.slice(0, colon), line.slice(colon + 1).trim())
  }
  return fields
}

/** Client options that make failures visible fast (STYLE.md trap 4). */
export const CLIENT_OPTIONS = {
  // Commands fail at once while disconnected: no unbounded offline queue.
  disableOfflineQueue: true,
  // node-redis 6 turns Redis Enterprise maintenance notifications on with RESP3 ('auto'), which relaxes the
  // socket timeout during maintenance: Flow's outage detection (socketTimeout, pings, its watchdogs) stays as documented.
  maintNotifications: 'disabled',
  // node-redis 6 fails a command still waiting to be written after 5 s by default: a stall of this
  // process (or a burst) would then fail calls as if Redis were away. Flow's own watchdog decides that
  // (FLOW_REDIS_COMMAND_TIMEOUT_MS, counted from when the event loop runs again), as with node-redis 5.
  commandOptions: { timeout: undefined },
  // A frozen Redis is only seen through an idle socket timeout plus pings.
  pingInterval: 1000,
  socket: { connectTimeout: 3000, socketTimeout: 5000, reconnectStrategy: reconnectDelay }
} as const

/** What the plugin opens and closes: a node-redis client or a Sentinel connection. */
interface Owned {
  readonly isReady: boolean
  connect: () => Promise<unknown>
  close: () => Promise<unknown>
  destroy: () => unknown
}

/** The value of CONFIG GET's one parameter: a [name, value] array (RESP2) or a map (RESP3). */
export function configValue (reply: unknown, name: string): string | null {
  if (Array.isArray(reply)) {
    for (let i = 0; i + 1 < reply.length; i += 2) if (String(reply[i]) === name) return String(reply[i + 1])
    return null
  }
  if (reply instanceof Map) return reply.has(name) ? String(reply.get(name)) : null
  if (reply !== null && typeof reply === 'object' && name in reply) return String((reply as Record<string, unknown>)[name])
  return null
}

/**
 * The Sentinel connection of REDIS_SENTINELS and REDIS_SENTINEL_NAME: the
 * user, password and database of the Redis URL, the client options above
 * for every connection to the primary, and the same reconnection back-off
 * between attempts to find one.
 */
export function sentinelConnection (config: FlowConfig, name: string): SentinelConnection {
  const { commandOptions, ...nodeOptions } = CLIENT_OPTIONS
  const url = new URL(redisUrl(config))
  const db = url.pathname.replace(/^\//, '')
  const credentials = {
    ...(url.username === '' ? {} : { username: decodeURIComponent(url.username) }),
    ...(url.password === '' ? {} : { password: decodeURIComponent(url.password) })
  }
  return new SentinelConnection({
    name: config.redisSentinelName ?? '',
    sentinels: parseSentinels(config.redisSentinels ?? ''),
    nodeClientOptions: { ...nodeOptions, socket: { ...CLIENT_OPTIONS.socket }, ...credentials, ...(db === '' ? {} : { database: Number(db) }), name },
    // node-redis 6 takes the command options of a Sentinel at its top level only.
    commandOptions,
    sentinelClientOptions: { socket: { connectTimeout: CLIENT_OPTIONS.socket.connectTimeout }, maintNotifications: 'disabled' },
    retryDelay: reconnectDelay,
    scanIntervalMs: SENTINEL_SCAN_INTERVAL_MS
  })
}

/** How often the sentinels are asked for the topology besides their events (ms): a failed reconfiguration is retried by then. */
export const SENTINEL_SCAN_INTERVAL_MS = 5000

/**
 * Creates the command connection and a dedicated subscriber connection when
 * any port runs on Redis. Never blocks boot on Redis: it waits at most
 * `connectWaitMs` for the first connection, then goes on (the ports fail
 * with `unavailable` until Redis is there). Closes only what it created.
 */
async function redisPlugin (fastify: FastifyInstance, opts: RedisPluginOptions): Promise<void> {
  const { config } = fastify.flowConfig
  const anyRedis = config.useRedisCollaboration || config.useRedisWebsockets || config.useRedisEventOrdering
  if (!anyRedis) {
    fastify.decorate('flowRedis', null)
    return
  }
  const log = fastify.log.child({ component: 'redis' })
  const owned: Owned[] = []
  // Filled in below; the connection listeners write the last error into it.
  const status: { lastError: string | null } = { lastError: null }
  const watch = (client: RedisClient, role: string): RedisClient => {
    // Without an 'error' listener a lost connection kills the process.
    client.on('error', (err: Error) => {
      if (!client.isReady) status.lastError = err.message
      log.debug({ err, role }, 'redis connection error')
    })
    client.on('ready', () => {
      status.lastError = null
      log.info({ role }, 'redis connected')
    })
    client.on('end', () => { log.debug({ role }, 'redis connection closed') })
    return client
  }
  let client: RedisClient
  let subscriber: RedisClient
  let sentinel: SentinelConnection | null = null
  if (opts.client !== undefined) {
    if (config.redisSentinels !== undefined) log.warn('REDIS_SENTINELS is not used: the host app passed its own Redis client')
    client = opts.client
    // The host's socket options (TLS, reconnection) are kept.
    const duplicate = opts.client.duplicate({ disableOfflineQueue: true, pingInterval: CLIENT_OPTIONS.pingInterval, name: `${fastify.flowConfig.instanceId}-sub` })
    subscriber = watch(duplicate, 'subscriber')
    owned.push(duplicate)
  } else if (config.redisSentinels !== undefined) {
    // One Sentinel connection serves both roles: its commands go to the primary on one connection,
    // its Pub/Sub on another, and both move to the new primary after a failover.
    sentinel = sentinelConnection(config, fastify.flowConfig.instanceId)
    const s = sentinel
    let known: string | null = null
    s.on('topology-change', (event) => {
      if (event.type !== 'MASTER_CHANGE' || event.node === undefined) {
        log.debug({ event }, 'Redis Sentinel topology change')
        return
      }
      // Also emitted when node-redis reconnects to the same primary: only a new address is a failover.
      const primary = `${event.node.host}:${event.node.port}`
      if (known !== null && known !== primary) log.warn({ primary, was: known }, 'Redis Sentinel: the primary changed; moving to it')
      else if (known === null) log.info({ primary }, 'Redis Sentinel: the primary')
      known = primary
    })
    client = watch(s, 'sentinel')
    subscriber = client
    owned.push(s)
  } else {
    const socket = { ...CLIENT_OPTIONS.socket, ...tlsOptions(config) }
    const command = createClient({ url: redisUrl(config), ...CLIENT_OPTIONS, socket, name: `${fastify.flowConfig.instanceId}` })
    const sub = command.duplicate({ ...CLIENT_OPTIONS, socket, name: `${fastify.flowConfig.instanceId}-sub` })
    client = watch(command, 'command')
    subscriber = watch(sub, 'subscriber')
    owned.push(command, sub)
  }

  let memory: RedisMemory | null = null
  const memoryEvents = new EventEmitter<{ memory: [RedisMemory] }>()
  const redis: FlowRedis = {
    client,
    subscriber,
    ready: () => client.isReady && subscriber.isReady,
    get maxmemoryPolicy () { return memory?.policy ?? null },
    get memory () { return memory },
    checkMemory: async () => await checkMemory(),
    onMemory: (listener) => { memoryEvents.on('memory', listener) },
    get lastError () { return status.lastError },
    ...(sentinel === null ? {} : { primary: () => sentinel.primary })
  }
  fastify.decorate('flowRedis', redis)

  const connecting = owned.map(async (c) => {
    await c.connect().catch((err: unknown) => { log.warn({ err }, 'redis is not reachable yet; retrying in the background') })
  })
  if (opts.client !== undefined && !opts.client.isOpen) log.warn('the Redis client passed to Flow is not connected; Flow does not connect it')

  const warnRatio = config.redisMemoryWarnRatio
  let configRefused = false
  const readPolicy = async (info: Map<string, string>): Promise<string | null> => {
    try {
      const policy = configValue(await client.sendCommand(['CONFIG', 'GET', 'maxmemory-policy']), 'maxmemory-policy')
      if (policy !== null) return policy
    } catch (err) {
      if (!(err instanceof ErrorReply)) throw err
      // Managed Redis often disables CONFIG (rename-command, ACL): INFO tells the policy too.
      if (!configRefused) log.debug({ err }, 'cannot read maxmemory-policy with CONFIG GET (CONFIG may be disabled); reading it from INFO')
      configRefused = true
    }
    return info.get('maxmemory_policy') ?? null
  }
  let reading: Promise<RedisMemory | null> | null = null
  const read = async (): Promise<RedisMemory | null> => {
    try {
      const info = parseInfo(String(await client.sendCommand(['INFO', 'memory'])))
      const usedMemory = Number(info.get('used_memory') ?? Number.NaN)
      const maxMemory = Number(info.get('maxmemory') ?? 0)
      const policy = await readPolicy(info)
      if (!Number.isFinite(usedMemory)) throw new Error('INFO memory has no used_memory')
      const ratio = Number.isFinite(maxMemory) && maxMemory > 0 ? usedMemory / maxMemory : null
      const next: RedisMemory = { usedMemory, maxMemory: Number.isFinite(maxMemory) ? maxMemory : 0, ratio, policy, readAt: Date.now() }
      const before = memory
      memory = next
      if (policy !== (before?.policy ?? null) && policy !== null) {
        const evicts = policy !== 'noeviction'
        log[evicts ? 'warn' : 'info']({ policy, was: before?.policy ?? null },
          evicts ? 'Redis may evict Flow\'s keys under memory pressure (the op log\'s carry an idle TTL): use noeviction' : 'Redis maxmemory-policy read')
      }
      const over = ratio !== null && ratio > warnRatio
      const wasOver = before?.ratio !== null && before?.ratio !== undefined && before.ratio > warnRatio
      if (over && !wasOver) {
        log.warn({ usedMemory, maxMemory, ratio, warnRatio }, 'Redis memory is over FLOW_REDIS_MEMORY_WARN_RATIO of maxmemory: at maxmemory its writes fail (or it evicts)')
      } else if (!over && wasOver) log.info({ usedMemory, maxMemory, ratio }, 'Redis memory is back under FLOW_REDIS_MEMORY_WARN_RATIO')
      memoryEvents.emit('memory', next)
      return next
    } catch (err) {
      log.debug({ err }, 'cannot read Redis memory')
      return null
    }
  }
  // One read at a time: a slow Redis does not pile reads up.
  const checkMemory = async (): Promise<RedisMemory | null> => {
    if (!client.isReady) return null
    reading ??= read().finally(() => { reading = null })
    return await reading
  }
  client.on('ready', () => { void checkMemory() })
  const memoryTimer = setInterval(() => { void checkMemory() }, config.healthCheckIntervalMs)
  memoryTimer.unref()

  const wait = opts.connectWaitMs ?? config.redisConnectWaitMs
  let timer: NodeJS.Timeout | undefined
  await Promise.race([
    Promise.all(connecting),
    new Promise<void>((resolve) => { timer = setTimeout(resolve, wait) })
  ])
  clearTimeout(timer)
  if (client.isReady) await checkMemory()

  fastify.addHook('onClose', async () => {
    clearInterval(memoryTimer)
    await Promise.all(owned.map(async (c) => {
      try {
        if (c.isReady) await c.close()
        else c.destroy()
      } catch {
        // already closed
      }
    }))
  })
}

export default fp(redisPlugin, { name: 'flow-redis', fastify: '5.x', dependencies: ['flow-config'] })
