import { randomBytes } from 'node:crypto'
import type { RedisClient } from './client.js'
import { redisKeys } from './keys.js'
import { OPERATION_LOG_SCRIPTS } from './scripts.js'
import { Watchdog } from '../failover/outage.js'

export interface RedisProbeOptions {
  readonly client: RedisClient
  readonly subscriber: RedisClient
  readonly keyPrefix: string
  readonly instanceId: string
  /** how long a connection may stay silent while the probe waits on it (ms) */
  readonly timeoutMs: number
  /** the command connection's watchdog (shared with the ports: their replies show Redis is there) */
  readonly watchdog?: Watchdog
  /**
   * the subscriber's watchdog: fed by every Pub/Sub message, so a probe token
   * queued behind a backlog of messages is not taken for a dead subscriber
   */
  readonly subscriberWatchdog?: Watchdog
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
export function createRedisProbe (options: RedisProbeOptions): { probe: () => Promise<void> } {
  const keys = redisKeys(options.keyPrefix)
  const channel = keys.probeChannel(options.instanceId)
  const stream = keys.probeStream()
  const waiting = new Map<string, () => void>()
  const commands = options.watchdog ?? new Watchdog(options.timeoutMs)
  const subscriber = options.subscriberWatchdog ?? new Watchdog(options.timeoutMs)
  let subscribed: Promise<void> | null = null
  const onMessage = (token: string): void => {
    const done = waiting.get(token)
    if (done !== undefined) {
      waiting.delete(token)
      done()
    }
  }
  const probe = async (): Promise<void> => {
    if (!options.client.isReady || !options.subscriber.isReady) throw new Error('Redis is not connected')
    // node-redis restores the subscription after a reconnect.
    subscribed ??= options.subscriber.subscribe(channel, onMessage).catch((err: unknown) => {
      subscribed = null
      throw err
    })
    await subscriber.watch(subscribed, 'probe subscribe')
    const token = randomBytes(8).toString('hex')
    const back = new Promise<void>((resolve) => { waiting.set(token, resolve) })
    try {
      await commands.watch(options.client.sendCommand(['XADD', stream, 'MAXLEN', '~', '1000', '*', 'i', options.instanceId, 't', token]), 'probe append')
      await Promise.all(OPERATION_LOG_SCRIPTS.map(async (script) => await commands.watch(options.client.sendCommand(['SCRIPT', 'LOAD', script.source]), 'probe script load')))
      await commands.watch(options.client.publish(channel, token), 'probe publish')
      await subscriber.watch(back, 'Redis probe round trip')
    } finally {
      waiting.delete(token)
    }
  }
  return { probe }
}
