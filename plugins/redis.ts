import fp from 'fastify-plugin'
import { createClient } from 'redis'
import type { FastifyInstance } from 'fastify'
import type { RedisClient } from '../adapters/redis/client.js'
import type { FlowConfig } from '../lib/config.js'
import { ConfigError } from '../lib/errors.js'
import { readFileSync } from 'node:fs'

export type { RedisClient }

/** Flow's Redis connections. */
export interface FlowRedis {
  /** commands and scripts */
  readonly client: RedisClient
  /** Pub/Sub only (a subscribed connection cannot run commands) */
  readonly subscriber: RedisClient
  /** both connections are up */
  readonly ready: () => boolean
  /** Redis' maxmemory-policy once read; an `allkeys-*` policy may evict the op log */
  maxmemoryPolicy: string | null
  /** the last connection error while not connected (e.g. `WRONGPASS ...`), for /health */
  readonly lastError: string | null
}

declare module 'fastify' {
  interface FastifyInstance {
    /** set when a port runs on Redis */
    flowRedis: FlowRedis | null
  }
}

export interface RedisPluginOptions {
  /** a host app's own node-redis client; Flow never closes it */
  readonly client?: RedisClient
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

/** Client options that make failures visible fast (STYLE.md trap 4). */
export const CLIENT_OPTIONS = {
  // Commands fail at once while disconnected: no unbounded offline queue.
  disableOfflineQueue: true,
  // A frozen Redis is only seen through an idle socket timeout plus pings.
  pingInterval: 1000,
  socket: { connectTimeout: 3000, socketTimeout: 5000, reconnectStrategy: reconnectDelay }
} as const

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
  const owned: RedisClient[] = []
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
  if (opts.client !== undefined) {
    client = opts.client
    // The host's socket options (TLS, reconnection) are kept.
    subscriber = watch(client.duplicate({ disableOfflineQueue: true, pingInterval: CLIENT_OPTIONS.pingInterval, name: `${fastify.flowConfig.instanceId}-sub` }), 'subscriber')
  } else {
    const socket = { ...CLIENT_OPTIONS.socket, ...tlsOptions(config) }
    client = watch(createClient({ url: redisUrl(config), ...CLIENT_OPTIONS, socket, name: `${fastify.flowConfig.instanceId}` }), 'command')
    owned.push(client)
    subscriber = watch(client.duplicate({ ...CLIENT_OPTIONS, socket, name: `${fastify.flowConfig.instanceId}-sub` }), 'subscriber')
  }
  owned.push(subscriber)

  const redis: FlowRedis = {
    client,
    subscriber,
    ready: () => client.isReady && subscriber.isReady,
    maxmemoryPolicy: null,
    get lastError () { return status.lastError }
  }
  fastify.decorate('flowRedis', redis)

  const connecting = owned.map(async (c) => {
    await c.connect().catch((err: unknown) => { log.warn({ err }, 'redis is not reachable yet; retrying in the background') })
  })
  if (opts.client !== undefined && !client.isOpen) log.warn('the Redis client passed to Flow is not connected; Flow does not connect it')

  const checkPolicy = async (): Promise<void> => {
    try {
      const reply = await client.configGet('maxmemory-policy')
      redis.maxmemoryPolicy = reply['maxmemory-policy'] ?? null
      if (redis.maxmemoryPolicy?.startsWith('allkeys-') === true) {
        log.warn({ policy: redis.maxmemoryPolicy }, 'Redis may evict keys of any kind under memory pressure, the op log included: use noeviction or volatile-*')
      }
    } catch (err) {
      log.debug({ err }, 'cannot read maxmemory-policy (CONFIG may be disabled)')
    }
  }
  client.on('ready', () => { void checkPolicy() })

  const wait = opts.connectWaitMs ?? config.redisConnectWaitMs
  let timer: NodeJS.Timeout | undefined
  await Promise.race([
    Promise.all(connecting),
    new Promise<void>((resolve) => { timer = setTimeout(resolve, wait) })
  ])
  clearTimeout(timer)
  if (client.isReady) await checkPolicy()

  fastify.addHook('onClose', async () => {
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
