import type { BroadcastHandler, BroadcastMessage, Broadcaster } from '../../ports/broadcaster.js'
import type { RedisClient } from './client.js'
import { decodeMessage, encodeEnvelope, envelopePrefix } from './codec.js'
import { redisKeys, type RedisKeys } from './keys.js'
import { ClosedError } from '../../lib/errors.js'
import type { LogWatermarks } from './watermarks.js'

export interface RedisBroadcasterOptions {
  /** publishes (a normal connection) */
  readonly client: RedisClient
  /** a connection used only for Pub/Sub */
  readonly subscriber: RedisClient
  readonly keyPrefix: string
  /** this instance: its own messages are not handed back to it */
  readonly origin: string
  /** told of every message the subscriber receives (a sign of life of the connection) */
  readonly onMessage?: () => void
  /**
   * told the (epoch, seq) of every op another instance's log appended
   * (watermarks.ts: the op log's scripts then notice a log that lost it)
   */
  readonly watermarks?: LogWatermarks
}

/**
 * Fan-out between instances over Redis Pub/Sub, one channel per project.
 * The instance subscribes to a project's channel only while it has a handler
 * for it (a local member) and unsubscribes when the last one leaves.
 * node-redis restores subscriptions after a reconnect; messages published
 * while disconnected are lost (at most once), and the op log fills the gap.
 */
export class RedisBroadcaster implements Broadcaster {
  readonly #client: RedisClient
  readonly #subscriber: RedisClient
  readonly #keys: RedisKeys
  readonly #origin: string
  /** how this instance's own messages start: their echoes are dropped unparsed */
  readonly #ownPrefix: string
  readonly #onMessage: (() => void) | undefined
  readonly #watermarks: LogWatermarks | undefined
  readonly #handlers = new Map<string, BroadcastHandler>()
  readonly #listeners = new Map<string, (raw: string) => void>()
  #closed = false

  constructor (options: RedisBroadcasterOptions) {
    this.#client = options.client
    this.#subscriber = options.subscriber
    this.#keys = redisKeys(options.keyPrefix)
    this.#origin = options.origin
    this.#ownPrefix = envelopePrefix(options.origin)
    this.#onMessage = options.onMessage
    this.#watermarks = options.watermarks
  }

  async subscribe (project: string, handler: BroadcastHandler): Promise<void> {
    this.#assertOpen()
    const channel = this.#keys.channel(project)
    this.#handlers.set(project, handler)
    if (this.#listeners.has(project)) return
    const listener = (raw: string): void => {
      this.#onMessage?.()
      // A batch's envelopes are all from one origin: its first starts the message.
      if (raw.startsWith(this.#ownPrefix)) return
      // The ops of a batch, one message each and in order, as if published one by one.
      for (const envelope of decodeMessage(raw)) {
        if (envelope.origin === this.#origin) continue
        const message = envelope.message
        // A relayed op carries another log's seq (an instance not on the shared log).
        if (message.kind === 'op' && message.relay !== true) this.#watermarks?.saw(project, message.epoch, message.op.seq)
        this.#handlers.get(project)?.(message)
      }
    }
    this.#listeners.set(project, listener)
    try {
      await this.#subscriber.subscribe(channel, listener)
    } catch (err) {
      this.#listeners.delete(project)
      this.#handlers.delete(project)
      throw err
    }
  }

  async unsubscribe (project: string): Promise<void> {
    this.#handlers.delete(project)
    const listener = this.#listeners.get(project)
    if (listener === undefined) return
    this.#listeners.delete(project)
    await this.#subscriber.unsubscribe(this.#keys.channel(project), listener)
  }

  async publish (project: string, message: BroadcastMessage): Promise<void> {
    this.#assertOpen()
    await this.#client.publish(this.#keys.channel(project), encodeEnvelope(this.#origin, message))
  }

  async subscriptions (): Promise<readonly string[]> {
    return [...this.#listeners.keys()]
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const projects = [...this.#listeners.keys()]
    await Promise.all(projects.map(async (p) => { await this.unsubscribe(p).catch(() => {}) }))
    this.#handlers.clear()
  }

  #assertOpen (): void {
    if (this.#closed) throw new ClosedError('broadcaster')
  }
}

export function createRedisBroadcaster (options: RedisBroadcasterOptions): RedisBroadcaster {
  return new RedisBroadcaster(options)
}
