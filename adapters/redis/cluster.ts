/**
 * A connection to a Redis Cluster behind the same narrow interface as a
 * plain node-redis client (RedisClient in client.ts) and the Sentinel
 * connection (sentinel.ts), so the adapters, the connection's health and the
 * failover decorators need not know which one they have. It wraps node-redis
 * 6's `createCluster`. Groundwork for issue 15: nothing uses it yet, and the
 * adapters' scripts still need the changes of docs/cluster-design.md.
 *
 * What node-redis does here (read in @redis/client 6.3.1, checked by
 * test/adapters/cluster-connection.test.ts against a real cluster):
 *
 * - routing: a command goes to the master of its first key's slot, over one
 *   connection per master, so the calls of one slot (one project: every key
 *   of a project shares its hash tag) run in call order. The raw
 *   `sendCommand(firstKey, isReadonly, args)` does not find the key itself:
 *   {@link routingKey} gives it (the first key after numkeys for EVAL and
 *   EVALSHA, else the first argument), keyless commands go where node-redis'
 *   command table says (INFO, CONFIG, TIME: a random node; SCRIPT LOAD and
 *   SCRIPT FLUSH: every node; PING: every master);
 * - `MOVED`: the topology is read again and the command sent to the new
 *   owner; `ASK` (a slot being migrated): ASKING plus the command on the
 *   target; both up to `maxCommandRedirections` (16) times;
 * - a multi-key command of one slot caught halfway through a migration
 *   (`TRYAGAIN`) is *not* retried: it fails, and Flow counts TRYAGAIN as an
 *   outage reply (connection-health.ts). Moving a slot with all its keys in
 *   one MIGRATE (`redis-cli --cluster reshard --cluster-pipeline` larger than
 *   the slot's keys) avoids it;
 * - sharded Pub/Sub: `sSubscribe` opens one Pub/Sub connection per master
 *   holding subscribed channels; when a slot moves, Redis unsubscribes its
 *   channels (an unsolicited SUNSUBSCRIBE) and node-redis subscribes them
 *   again on the new owner (`sharded-channel-moved`, node-redis issue 3311);
 *   when a master goes away from the topology (a failover), its channels are
 *   subscribed again on the new owners. Messages published in between are
 *   lost, and nothing tells the caller;
 * - reconnection: every node connection reconnects on its own; while one
 *   keeps failing, the topology is read again every
 *   `topologyRefreshMs` (node-redis' default is 5 s; 1 s here), which is how
 *   a promoted replica is found: a command to the dead master fails with a
 *   connection error, not MOVED, so it would never ask.
 *
 * What this wrapper adds:
 *
 * - `sendCommand(args)` without node-redis' `firstKey`/`isReadonly`
 *   arguments (always the master), `publish` as SPUBLISH and
 *   `subscribe`/`unsubscribe` as SSUBSCRIBE/SUNSUBSCRIBE: every channel of
 *   Flow is sharded in cluster mode (a classic SUBSCRIBE would not receive
 *   the append script's SPUBLISH, nor a classic PUBLISH a sharded one);
 * - `isReady` is true only while every master of the topology (and every
 *   sharded Pub/Sub connection) is connected: node-redis' own stays true
 *   while a master is down. A failover is a short outage for Flow, as the
 *   issue asks: calls are refused at once meanwhile (no offline queue), an
 *   `error` is emitted when the cluster stops being ready, `ready` when it is
 *   ready again (checked on node events and every `readyCheckIntervalMs`);
 * - `connect()` keeps trying for ever (node-redis' gives up when no seed
 *   answers), backing off with `retryDelay`;
 * - `sendCommandFor(key, args)` sends a keyless command (WAIT, WAITAOF) on
 *   the connection of `key`'s master, behind the calls already sent there;
 *   `sendToMasters(args)` sends one to each master (INFO memory, CONFIG GET).
 */
import { EventEmitter } from 'node:events'
import { createCluster, type RedisClusterOptions } from 'redis'
import { DisconnectedError } from '../../lib/errors.js'
import { asError, RetryPause, type RedisClient } from './client.js'

/** A seed node's address. */
export interface ClusterNode {
  readonly host: string
  readonly port: number
}

type NodeClientOptions = NonNullable<RedisClusterOptions['defaults']>

export interface ClusterConnectionOptions {
  /** seed nodes to read the topology from (any one that answers will do) */
  readonly rootNodes: readonly ClusterNode[]
  /** options of every connection to a node: credentials, TLS, timeouts, reconnection, offline queue */
  readonly nodeClientOptions: NodeClientOptions
  /** ms to wait before trying the seeds again after none answered; `attempt` counts from 0 */
  readonly retryDelay: (attempt: number) => number
  /** options of every command (node-redis takes them at the cluster's top level) */
  readonly commandOptions?: RedisClusterOptions['commandOptions']
  /** ms after a node connection starts failing before the topology is read again, and between reads while it fails (default 1000) */
  readonly topologyRefreshMs?: number
  /** how often readiness is checked besides the nodes' events (ms, default 100) */
  readonly readyCheckIntervalMs?: number
  /** MOVED/ASK redirections of one command, at most (node-redis' default 16) */
  readonly maxRedirections?: number
}

/** The events a Flow connection emits. */
export interface ClusterConnectionEvents {
  error: [Error]
  ready: []
  end: []
}

function newCluster (options: ClusterConnectionOptions) {
  return createCluster({
    rootNodes: options.rootNodes.map(({ host, port }) => ({ socket: { host, port } })),
    defaults: options.nodeClientOptions,
    // Masters only: a replica may lag, and Flow reads what it has just written.
    useReplicas: false,
    topologyRefreshOnReconnectionAttemptStrategy: options.topologyRefreshMs ?? 1000,
    ...(options.commandOptions === undefined ? {} : { commandOptions: options.commandOptions }),
    ...(options.maxRedirections === undefined ? {} : { maxCommandRedirections: options.maxRedirections })
  })
}

type Cluster = ReturnType<typeof newCluster>
type Listener = (message: string, channel: string) => void

/** Commands without a key: node-redis routes them by its command table (or to a random node). */
const KEYLESS = new Set([
  'PING', 'ECHO', 'INFO', 'CONFIG', 'TIME', 'SCRIPT', 'FUNCTION', 'CLUSTER', 'CLIENT', 'COMMAND', 'DBSIZE',
  'WAIT', 'WAITAOF', 'PUBLISH', 'PUBSUB', 'MEMORY', 'LATENCY', 'SLOWLOG', 'ROLE', 'LASTSAVE', 'HELLO', 'AUTH', 'SELECT'
])
const EVAL_LIKE = new Set(['EVAL', 'EVALSHA', 'EVAL_RO', 'EVALSHA_RO', 'FCALL', 'FCALL_RO'])

/**
 * The key whose slot a command is routed by: for EVAL, EVALSHA and FCALL
 * the first of their KEYS (undefined with none), for a keyless command
 * undefined, for any other the first argument (true of every keyed command
 * Flow sends: SET, EXISTS, SREM, XADD, HGET, ...).
 */
export function routingKey (args: readonly string[]): string | undefined {
  const name = args[0]?.toUpperCase()
  if (name === undefined || KEYLESS.has(name)) return undefined
  if (EVAL_LIKE.has(name)) return Number(args[2]) > 0 ? args[3] : undefined
  return args[1]
}

export class ClusterConnection extends EventEmitter<ClusterConnectionEvents> implements RedisClient {
  readonly #options: ClusterConnectionOptions
  readonly #cluster: Cluster
  #connected = false
  #connecting: Promise<void> | null = null
  #closed = false
  readonly #pause = new RetryPause()
  /** isReady at the last check: a change emits `ready` or `error` */
  #wasReady = false
  #timer: NodeJS.Timeout | undefined

  constructor (options: ClusterConnectionOptions) {
    super()
    if (options.rootNodes.length === 0) throw new TypeError('ClusterConnection needs at least one seed node')
    this.#options = options
    this.#cluster = newCluster(options)
    const cluster = this.#cluster
    cluster.on('error', (err: unknown) => { this.emit('error', asError(err)) })
    cluster.on('node-error', (err: unknown, node?: { host?: string, port?: number }) => {
      const e = asError(err)
      this.emit('error', node === undefined ? e : new Error(`Redis Cluster node ${String(node.host)}:${String(node.port)}: ${e.message}`, { cause: e }))
      this.#check()
    })
    cluster.on('node-ready', () => { this.#check() })
    cluster.on('node-disconnect', () => { this.#check() })
    cluster.on('sharded-channel-moved-error', (err: unknown, channel: string) => {
      this.emit('error', new Error(`Redis Cluster: could not subscribe ${channel} again after its slot moved: ${asError(err).message}`, { cause: err }))
    })
  }

  /** Not closed by its owner. */
  get isOpen (): boolean {
    return !this.#closed
  }

  /** Every master of the topology, and every sharded Pub/Sub connection, is connected: calls can be sent now. */
  get isReady (): boolean {
    if (this.#closed || !this.#connected || !this.#cluster.isReady) return false
    const masters = this.#cluster.masters
    if (masters.length === 0) return false
    return masters.every((m) => m.client?.isReady === true && (m.pubSub === undefined || m.pubSub.connectPromise !== undefined || m.pubSub.client.isReady))
  }

  /** The masters of the topology as node-redis knows it (`host:port`). */
  get masters (): string[] {
    return this.#connected ? this.#cluster.masters.map((m) => m.address) : []
  }

  #check (): void {
    if (this.#closed || !this.#connected) return
    const ready = this.isReady
    if (ready === this.#wasReady) return
    this.#wasReady = ready
    if (ready) this.emit('ready')
    else this.emit('error', new DisconnectedError('Redis Cluster: a master (or its Pub/Sub connection) is not connected'))
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
      try {
        await this.#cluster.connect()
        if (this.#closed) return
        this.#connected = true
        this.#timer = setInterval(() => { this.#check() }, this.#options.readyCheckIntervalMs ?? 100)
        this.#timer.unref()
        this.#check()
        return
      } catch (err) {
        if (this.#closed) return
        this.emit('error', asError(err))
        await this.#pause.sleep(this.#options.retryDelay(attempt))
      }
    }
  }

  #assertReady (): void {
    if (!this.isReady) throw new DisconnectedError('Redis Cluster: not every master is connected')
  }

  /** Sends a command to the master of its key's slot ({@link routingKey}). Rejects at once while not ready. */
  async sendCommand (args: readonly string[]): Promise<unknown> {
    this.#assertReady()
    return await this.#cluster.sendCommand(routingKey(args), false, [...args])
  }

  /** Sends `args` on the connection of `key`'s master, behind the calls already sent there (WAIT, WAITAOF). */
  async sendCommandFor (key: string, args: readonly string[]): Promise<unknown> {
    this.#assertReady()
    const client = await this.#cluster.getNodeClientForKey(key, false)
    return await client.sendCommand([...args])
  }

  /** Sends `args` to every master; resolves each one's reply by address. */
  async sendToMasters (args: readonly string[]): Promise<Map<string, unknown>> {
    this.#assertReady()
    const masters = this.#cluster.masters
    const replies = await Promise.all(masters.map(async (m) => await (await this.#cluster.nodeClient(m)).sendCommand([...args])))
    return new Map(masters.map((m, i) => [m.address, replies[i]]))
  }

  /** SPUBLISH: to the master of the channel's slot, delivered to that shard's subscribers only. */
  async publish (channel: string, message: string): Promise<unknown> {
    this.#assertReady()
    return await this.#cluster.sendCommand(channel, false, ['SPUBLISH', channel, message])
  }

  /** SSUBSCRIBE on the Pub/Sub connection of the channel's master; node-redis follows the slot when it moves. */
  async subscribe (channel: string, listener: Listener): Promise<void> {
    this.#assertReady()
    await this.#cluster.sSubscribe(channel, listener)
  }

  async unsubscribe (channel: string, listener?: Listener): Promise<void> {
    if (this.#closed || !this.#connected) return
    await this.#cluster.sUnsubscribe(channel, listener)
  }

  /** Closes, letting calls in flight finish. Idempotent. */
  async close (): Promise<void> {
    await this.#end(async (cluster) => { await cluster.close() })
  }

  /** Closes now, failing calls in flight. Idempotent. */
  async destroy (): Promise<void> {
    await this.#end(async (cluster) => { cluster.destroy() })
  }

  async #end (how: (cluster: Cluster) => Promise<void>): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#timer)
    this.#pause.wake()
    try {
      await (this.#connected ? how(this.#cluster) : this.#cluster.destroy())
    } catch {
      // already closed
    }
    await this.#connecting
    this.emit('end')
  }
}
