/**
 * Whether Redis is there, as Flow uses it: one circuit breaker for the
 * connection pair (commands and Pub/Sub: one failure domain), the watchdogs
 * that tell a silent Redis from a slow one, the connections' events, and an
 * end-to-end probe. The failover decorators (adapters/failover/) switch on
 * this breaker; plugins/recovery.ts tells the hub.
 */
import { EventEmitter } from 'node:events'
import { randomBytes } from 'node:crypto'
import { ErrorReply } from 'redis'
import { CircuitBreaker } from '../../lib/breaker.js'
import { DisconnectedError, isCallerError } from '../../lib/errors.js'
import { Watchdog } from '../../lib/watchdog.js'
import type { RedisClient } from './client.js'
import { redisKeys } from './keys.js'
import { OPERATION_LOG_SCRIPTS } from './scripts.js'

/** First probe after the circuit opens (ms): a dropped connection is usually back at once. */
export const PROBE_DELAY_MS = 250
/** The probe delay doubles after each failed probe up to this (ms): a long outage costs one probe every 2 s. */
export const MAX_PROBE_DELAY_MS = 2000
/**
 * Longest a probe plus the re-sync may take, as a multiple of the command
 * timeout and at least this (ms): the re-sync replays the outage buffer,
 * which may be long.
 */
export const MIN_RECOVERY_TIMEOUT_MS = 30_000
export const RECOVERY_TIMEOUT_FACTOR = 10
/**
 * The subscriber may stay silent twice as long as the command connection:
 * Pub/Sub traffic is not steady, and a probe token may queue behind a backlog.
 */
export const SUBSCRIBER_TIMEOUT_FACTOR = 2

/** Server replies that mean "Redis cannot serve now", not "this command is wrong". */
const OUTAGE_REPLY = /^(LOADING|BUSY|MASTERDOWN|READONLY|TRYAGAIN|CLUSTERDOWN|OOM|NOAUTH|NOPERM|WRONGPASS)\b/

/**
 * Whether an error means Redis is away (connection lost, refused, timed
 * out, Redis loading or out of memory), so the port should fall back, rather
 * than a bad call (a validation TypeError, a protocol error, a WRONGTYPE
 * reply), which is the caller's to see.
 */
export function isRedisOutage (err: unknown): boolean {
  if (isCallerError(err)) return false
  if (err instanceof ErrorReply) return OUTAGE_REPLY.test(err.message)
  return err instanceof Error
}

export interface ConnectionHealthOptions {
  /** commands and scripts */
  readonly client: RedisClient
  /** Pub/Sub only */
  readonly subscriber: RedisClient
  readonly keyPrefix: string
  readonly instanceId: string
  /** FLOW_REDIS_COMMAND_TIMEOUT_MS: how long Redis may stay silent while a call waits (ms) */
  readonly timeoutMs: number
  /** FLOW_REDIS_PROBE_INTERVAL_MS: how often the probe runs while healthy (ms) */
  readonly probeIntervalMs: number
  /** the breaker's recover step, run after a successful probe and before the circuit closes (the failover's re-sync) */
  readonly recover: () => Promise<void>
}

export interface ConnectionHealthEvents {
  /** the subscriber reconnected while the circuit stayed closed: Pub/Sub may have dropped messages */
  resubscribed: []
}

/** The health of one Redis connection pair. */
export class ConnectionHealth extends EventEmitter<ConnectionHealthEvents> {
  readonly breaker: CircuitBreaker
  /** the command connection's: a reply to any port (or the probe) shows Redis is there */
  readonly watchdog: Watchdog
  /** the subscriber's: fed by every Pub/Sub message */
  readonly subscriberWatchdog: Watchdog
  readonly #options: ConnectionHealthOptions
  readonly #probe: () => Promise<void>
  #timer: NodeJS.Timeout | undefined
  #started = false
  #refusal: Error | null = null

  constructor (options: ConnectionHealthOptions) {
    super()
    this.#options = options
    this.watchdog = new Watchdog(options.timeoutMs)
    this.subscriberWatchdog = new Watchdog(options.timeoutMs * SUBSCRIBER_TIMEOUT_FACTOR)
    const probe = createRedisProbe({ ...options, watchdog: this.watchdog, subscriberWatchdog: this.subscriberWatchdog })
    // A refusal fails the probe before it runs, and after: it may come while the probe runs.
    this.#probe = async () => {
      this.#checkRefusal()
      await probe()
      this.#checkRefusal()
    }
    this.breaker = new CircuitBreaker({
      probe: this.#probe,
      recover: options.recover,
      probeDelayMs: PROBE_DELAY_MS,
      maxProbeDelayMs: MAX_PROBE_DELAY_MS,
      probeTimeoutMs: Math.max(MIN_RECOVERY_TIMEOUT_MS, options.timeoutMs * RECOVERY_TIMEOUT_FACTOR)
    })
  }

  /** Why Redis is refused though it answers (see {@link refuse}); null when it is not. */
  get refusal (): Error | null {
    return this.#refusal
  }

  /**
   * Holds the ports off a Redis that answers but must not be used (an
   * eviction policy that may evict the op log): with a reason, trips the
   * breaker now (the ports fall back to memory) and fails every probe with
   * that reason, so the circuit stays open; with null, lifts the refusal
   * and probes at once (the ports come back after the re-sync). Idempotent.
   */
  refuse (reason: Error | null): void {
    const refused = this.#refusal !== null
    this.#refusal = reason
    if (reason !== null) this.breaker.trip(reason)
    else if (refused) this.breaker.probeNow()
  }

  #checkRefusal (): void {
    if (this.#refusal !== null) throw this.#refusal
  }

  /** Told of every Pub/Sub message: the subscriber is there. */
  readonly onMessage = (): void => { this.subscriberWatchdog.alive() }

  /**
   * Starts watching, once whoever reacts to the breaker listens: the
   * connections' events trip the breaker or ask for a probe, the probe runs
   * every interval while the circuit is closed (a subscriber that is
   * connected but delivers nothing counts as down), and a connection that is
   * not up yet opens the circuit now.
   */
  start (): void {
    if (this.#started) return
    this.#started = true
    const { client, subscriber, probeIntervalMs } = this.#options
    const b = this.breaker
    for (const c of [client, subscriber]) {
      c.on('error', (err: Error) => { if (!c.isReady) b.trip(err) })
      c.on('end', () => { b.trip(new DisconnectedError('Redis connection closed')) })
      c.on('ready', () => { b.probeNow() })
    }
    subscriber.on('ready', () => { if (b.state === 'closed') this.emit('resubscribed') })
    // Refused while the re-sync ran: the circuit closed past the probe's check (after the failover's own listeners).
    b.on('close', () => { if (this.#refusal !== null) b.trip(this.#refusal) })
    let probing = false
    this.#timer = setInterval(() => {
      if (b.state !== 'closed' || probing) return
      probing = true
      this.#probe().catch((err: unknown) => { if (b.state === 'closed') b.trip(err) }).finally(() => { probing = false })
    }, probeIntervalMs)
    this.#timer.unref()
    if (!client.isReady || !subscriber.isReady) b.trip(new DisconnectedError('Redis is not connected at boot'))
  }

  close (): void {
    clearInterval(this.#timer)
    this.breaker.dispose()
  }
}

interface ProbeOptions {
  readonly client: RedisClient
  readonly subscriber: RedisClient
  readonly keyPrefix: string
  readonly instanceId: string
  readonly watchdog: Watchdog
  readonly subscriberWatchdog: Watchdog
}

/**
 * An end-to-end check of Redis as Flow uses it: appends to a probe stream
 * through the command connection and publishes a token that must come back
 * through the subscriber connection. A subscriber that is "connected" but
 * delivers nothing fails it, as does a Redis that answers PING but cannot
 * write (out of memory, read-only replica).
 *
 * It also loads the op log's scripts: every return to Redis goes through a
 * probe, so no append meets an empty script cache (after a Redis restart),
 * where NOSCRIPT retries can run one sender's appends out of order
 * (runScript in scripts.ts).
 */
export function createRedisProbe (options: ProbeOptions): () => Promise<void> {
  const keys = redisKeys(options.keyPrefix)
  const channel = keys.probeChannel(options.instanceId)
  const stream = keys.probeStream()
  const waiting = new Map<string, () => void>()
  const commands = options.watchdog
  const subscriber = options.subscriberWatchdog
  let subscribed: Promise<void> | null = null
  const onMessage = (token: string): void => {
    const done = waiting.get(token)
    if (done !== undefined) {
      waiting.delete(token)
      done()
    }
  }
  return async (): Promise<void> => {
    if (!options.client.isReady || !options.subscriber.isReady) throw new DisconnectedError('Redis is not connected')
    // node-redis restores the subscription after a reconnect.
    subscribed ??= options.subscriber.subscribe(channel, onMessage).catch((err: unknown) => {
      subscribed = null
      throw err
    })
    await subscriber.watch(subscribed, 'probe subscribe')
    const token = randomBytes(8).toString('hex')
    const back = new Promise<void>((resolve) => { waiting.set(token, resolve) })
    try {
      const append = ['XADD', stream, 'MAXLEN', '~', '1000', '*', 'i', options.instanceId, 't', token]
      await commands.watch(options.client.sendCommand(append), 'probe append')
      await Promise.all(OPERATION_LOG_SCRIPTS.map(async (script) =>
        await commands.watch(options.client.sendCommand(['SCRIPT', 'LOAD', script.source]), 'probe script load')))
      await commands.watch(options.client.publish(channel, token), 'probe publish')
      await subscriber.watch(back, 'Redis probe round trip')
    } finally {
      waiting.delete(token)
    }
  }
}
