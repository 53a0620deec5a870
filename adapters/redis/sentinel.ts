/**
 * A Redis connection that follows the primary of a Sentinel-monitored group
 * across failovers, behind the same narrow interface as a plain node-redis
 * client (RedisClient in client.ts), so the adapters, the connection's health
 * and the failover decorators do not know which one they have.
 *
 * It wraps node-redis' `createSentinel`. Why a wrapper, and not the sentinel
 * object itself:
 *
 * - its `sendCommand(isReadonly, args)` takes a first argument a client's
 *   does not;
 * - its `connect()` gives up after `maxCommandRediscovers` rounds (about 16 s)
 *   and destroys the object; Flow must keep trying for ever (Redis may be
 *   down at boot for longer), so a new sentinel object is made and connected
 *   again, backing off like a client's reconnection;
 * - its `isReady` stays true while the primary's connection is down until
 *   the sentinels report a change, and a command sent then waits (for up to
 *   16 rediscovery rounds) instead of failing; Flow wants calls to fail at
 *   once while disconnected (no offline queue) so the circuit opens: here
 *   `isReady` also needs a connected primary, and calls are refused while it
 *   is false;
 * - it emits errors as strings in places, and `end` when it gives up at boot:
 *   errors are always `Error`s here, and `end` means closed by the owner.
 *
 * Commands go through one reserved connection to the primary
 * (`reserveClient`), so calls run in call order (the op log relies on it);
 * Pub/Sub runs on node-redis' own Pub/Sub connection to the primary, whose
 * subscriptions move to the new primary after a failover.
 */
import { EventEmitter } from 'node:events'
import { createSentinel, type RedisSentinelOptions } from 'redis'
import { DisconnectedError } from '../../lib/errors.js'
import { asError, RetryPause, type RedisClient } from './client.js'

/** A sentinel's address. */
export interface SentinelNode {
  readonly host: string
  readonly port: number
}

type NodeClientOptions = NonNullable<RedisSentinelOptions['nodeClientOptions']>

export interface SentinelConnectionOptions {
  /** the master group name the sentinels monitor (`sentinel monitor <name> ...`) */
  readonly name: string
  /** the sentinels to ask (any one that answers will do; the others are learnt from it) */
  readonly sentinels: readonly SentinelNode[]
  /** options of every connection to the primary: credentials, database, timeouts, reconnection */
  readonly nodeClientOptions: NodeClientOptions
  /** options of the connections to the sentinels */
  readonly sentinelClientOptions?: NodeClientOptions
  /** ms to wait before making a new sentinel object after one gave up connecting; `attempt` counts from 0 */
  readonly retryDelay: (attempt: number) => number
  /** how often the sentinels are asked again for the topology (ms), besides their Pub/Sub events */
  readonly scanIntervalMs: number
  /** options of every command (node-redis 6 takes them at the Sentinel's top level, not per node) */
  readonly commandOptions?: RedisSentinelOptions['commandOptions']
  /** rounds of asking the sentinels before node-redis gives up (default 16, about 16 s); then a new object starts over */
  readonly maxRediscovers?: number
}

/** The events a Flow connection emits, plus `topology-change` (node-redis' event: `{ type, node }`). */
export interface SentinelConnectionEvents {
  error: [Error]
  ready: []
  end: []
  'topology-change': [{ readonly type: string, readonly node?: SentinelNode }]
}

/** A node-redis sentinel object for `options`. */
function newSentinel (options: SentinelConnectionOptions) {
  return createSentinel({
    name: options.name,
    sentinelRootNodes: options.sentinels.map(({ host, port }) => ({ host, port })),
    nodeClientOptions: options.nodeClientOptions,
    ...(options.sentinelClientOptions === undefined ? {} : { sentinelClientOptions: options.sentinelClientOptions }),
    // The primary's connection errors come out on the object: with isReady false, they open the circuit.
    passthroughClientErrorEvents: true,
    // One connection for every command, in call order (a pool lease per call may reorder calls).
    reserveClient: true,
    scanInterval: options.scanIntervalMs,
    ...(options.commandOptions === undefined ? {} : { commandOptions: options.commandOptions }),
    ...(options.maxRediscovers === undefined ? {} : { maxCommandRediscovers: options.maxRediscovers })
  })
}

type Sentinel = ReturnType<typeof newSentinel>
type Listener = Parameters<Sentinel['unsubscribe']>[1]

export class SentinelConnection extends EventEmitter<SentinelConnectionEvents> implements RedisClient {
  readonly #options: SentinelConnectionOptions
  #sentinel: Sentinel
  /** the current sentinel object's connect() resolved: its reserved connection is taken */
  #connected = false
  #connecting: Promise<void> | null = null
  #closed = false
  readonly #pause = new RetryPause()

  constructor (options: SentinelConnectionOptions) {
    super()
    if (options.sentinels.length === 0) throw new TypeError('SentinelConnection needs at least one sentinel')
    this.#options = options
    this.#sentinel = this.#create()
  }

  /** Not closed by its owner. */
  get isOpen (): boolean {
    return !this.#closed
  }

  /** Connected to the primary the sentinels name: calls can be sent now. */
  get isReady (): boolean {
    return !this.#closed && this.#connected && this.#sentinel.isReady && this.#sentinel.getMasterNode() !== undefined
  }

  /** The primary in use (`host:port`); null while none is connected. */
  get primary (): string | null {
    const node = this.#connected ? this.#sentinel.getMasterNode() : undefined
    return node === undefined ? null : `${node.host}:${node.port}`
  }

  #create (): Sentinel {
    const sentinel = newSentinel(this.#options)
    sentinel.on('error', (err: unknown) => { if (this.#sentinel === sentinel) this.emit('error', asError(err)) })
    // The first `ready` comes before connect() resolves (and the reserved connection is taken): announced by #connectUntilUp.
    sentinel.on('ready', () => { if (this.#sentinel === sentinel && this.#connected) this.emit('ready') })
    sentinel.on('topology-change', (event: { type: string, node?: SentinelNode }) => {
      if (this.#sentinel === sentinel) this.emit('topology-change', event)
    })
    return sentinel
  }

  /**
   * Connects, and keeps trying until it is connected or closed: resolves
   * then (it never rejects). Errors on the way are emitted as `error`.
   */
  async connect (): Promise<this> {
    this.#connecting ??= this.#connectUntilUp()
    await this.#connecting
    return this
  }

  async #connectUntilUp (): Promise<void> {
    for (let attempt = 0; !this.#closed; attempt++) {
      const sentinel = this.#sentinel
      try {
        await sentinel.connect()
        if (this.#closed) return
        this.#connected = true
        this.emit('ready')
        return
      } catch (err) {
        if (this.#closed) return
        this.emit('error', asError(err))
        // connect() gave up and destroyed the sentinel object: a new one, after a pause.
        this.#sentinel = this.#create()
        await this.#pause.sleep(this.#options.retryDelay(attempt))
      }
    }
  }

  #assertReady (): void {
    if (!this.isReady) throw new DisconnectedError('Redis (Sentinel): no primary connected')
  }

  /** Sends a command to the primary. Rejects at once while no primary is connected. */
  async sendCommand (args: readonly string[]): Promise<unknown> {
    this.#assertReady()
    return await this.#sentinel.sendCommand(false, [...args])
  }

  async publish (channel: string, message: string): Promise<unknown> {
    return await this.sendCommand(['PUBLISH', channel, message])
  }

  /** Subscribes on the Pub/Sub connection to the primary; it follows the primary across failovers. */
  async subscribe (channel: string, listener: (message: string, channel: string) => void): Promise<void> {
    this.#assertReady()
    await this.#sentinel.subscribe(channel, listener)
  }

  async unsubscribe (channel: string, listener?: (message: string, channel: string) => void): Promise<void> {
    if (this.#closed) return
    await this.#sentinel.unsubscribe(channel, listener as Listener)
  }

  /** Closes, letting calls in flight finish. Idempotent. */
  async close (): Promise<void> {
    await this.#end(async (sentinel) => { await sentinel.close() })
  }

  /** Closes now, failing calls in flight. Idempotent. */
  async destroy (): Promise<void> {
    await this.#end(async (sentinel) => { await sentinel.destroy() })
  }

  async #end (how: (sentinel: Sentinel) => Promise<void>): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#pause.wake()
    const sentinel = this.#sentinel
    try {
      await (this.#connected ? how(sentinel) : sentinel.destroy())
    } catch {
      // already closed
    }
    await this.#connecting
    this.emit('end')
  }
}
