import type { BroadcastMessage } from '../../ports/broadcaster.js'
import type { ExpiredSession } from '../../ports/session-store.js'
import type { PutResult, Snapshot } from '../../ports/snapshot-store.js'
import type { Member } from '../types.js'
import { randomId } from '../ids.js'
import { ConfigError } from '../errors.js'
import { Stats } from '../stats.js'
import { ByteBudgets, type IdentityBudgets } from './budgets.js'
import { Connection } from './connection.js'
import type { HubConfig, HubContext, HubLogger, HubPorts } from './context.js'
import { Delivery } from './delivery.js'
import { guardPorts } from './guard.js'
import { Intake } from './intake.js'
import { Membership } from './membership.js'
import { Outbox } from './outbox.js'
import type { LocalProject } from './project.js'
import { ProjectApi, type History, type PostedOp } from './project-api.js'
import { ProjectRegistry } from './projects.js'
import { CreationLimiter, TokenBucket } from './rate-limiter.js'
import { SessionKeeper } from './session-keeper.js'
import { Snapshots, type SnapshotReducer } from './snapshots.js'
import type { OnOp } from './op-hook.js'
import { Replayer } from './replay.js'
import { byJoin, pageOf, type MemberPage } from './member-page.js'
import { CLOSE, type Identity, type Transport } from './transport.js'

export type { HubConfig, HubLogger, HubPorts } from './context.js'
export type { History, PostedOp } from './project-api.js'
export type { SnapshotReducer } from './snapshots.js'
export type { MemberPage } from './member-page.js'
export type { OnOp, OpCheck } from './op-hook.js'

export interface HubOptions {
  readonly config: HubConfig
  readonly ports: HubPorts
  readonly instanceId: string
  readonly logger: HubLogger
  readonly stats?: Stats
  /** a host reducer: the server folds ops into snapshots (lib/hub/snapshots.ts) */
  readonly snapshots?: SnapshotReducer
  /** the host's check of each op a client sends (lib/hub/op-hook.ts) */
  readonly onOp?: OnOp
}

/** The idle expiry of the projects served here is extended at least this often (and four times per idle TTL). */
const KEEP_ALIVE_MAX_MS = 3_600_000

/**
 * The collaboration hub: connections, projects, sessions and the order of
 * delivery. It knows the ports, not Fastify, ws or Redis.
 *
 * This class holds the connections, the heartbeat and the drain, and wires
 * the parts, one job each: `Intake` (frames in), `Membership` (join, leave,
 * presence), `SessionKeeper` (TTL, reaping, write-back after an outage),
 * `Delivery` (appends, acks, in-order delivery, gap fill, resync),
 * `Replayer` (a member's catch-up: replay, or a snapshot and the ops after
 * it), `Snapshots` (uploads, reads, the host reducer's folding),
 * `ProjectRegistry` (the projects served here), `ProjectApi` (members,
 * history and posts without a connection) and `Outbox` (everything sent).
 */
export class Hub {
  readonly stats: Stats
  readonly instanceId: string
  /**
   * Bytes per second each identity is sent (history: replays, HTTP reads) and
   * sends (frames, posted ops, snapshots), shared by its connections and
   * requests. The HTTP API spends them too.
   */
  readonly budgets: IdentityBudgets
  readonly #config: HubConfig
  readonly #logger: HubLogger
  readonly #ports: HubPorts
  readonly #connections = new Set<Connection>()
  readonly #projects: ProjectRegistry
  readonly #outbox: Outbox
  readonly #delivery: Delivery
  readonly #membership: Membership
  readonly #keeper: SessionKeeper
  readonly #intake: Intake
  readonly #api: ProjectApi
  readonly #snapshots: Snapshots
  readonly #heartbeat: NodeJS.Timeout
  readonly #keepAlive: NodeJS.Timeout
  #draining = false
  #drained: Promise<void> | undefined
  #closed = false

  constructor (options: HubOptions) {
    this.#config = options.config
    this.instanceId = options.instanceId
    this.#logger = options.logger
    this.stats = options.stats ?? new Stats()
    const { config, logger } = options
    // A port that rejects is a dependency failure: the client gets `unavailable`, and it is counted.
    const ports = guardPorts(options.ports, (port, err) => {
      this.stats.countPortError(port)
      logger.warn({ err, port }, 'port call failed')
    })
    this.#ports = ports
    const draining = (): boolean => this.#draining
    this.#outbox = new Outbox(config, this.stats, logger, (conn) => { this.disconnect(conn) })
    const creations = new CreationLimiter(config.projectsPerMinute)
    this.#projects = new ProjectRegistry(ports, this.stats, logger, {
      message: (lp, message) => { this.#received(lp, message) },
      ready: (lp) => { if (lp.flush()) this.#delivery.scheduleGapFill(lp) }
    }, creations, config.memberBatchMs)
    const { stats } = this
    if (options.onOp !== undefined && typeof options.onOp !== 'function') {
      throw new ConfigError('onOp must be a function')
    }
    this.budgets = {
      reads: new ByteBudgets(config.identityReadBytesPerSecond),
      writes: new ByteBudgets(config.identityWriteBytesPerSecond)
    }
    const ctx: HubContext = {
      config, ports, logger, stats, projects: this.#projects, outbox: this.#outbox, creations, budgets: this.budgets,
      onOp: options.onOp
    }
    this.#snapshots = new Snapshots(ctx, options.snapshots)
    this.#delivery = new Delivery(ctx, this.#snapshots)
    this.#keeper = new SessionKeeper(ctx)
    const replayer = new Replayer(ctx, this.#snapshots)
    this.#membership = new Membership(ctx, replayer, this.#keeper)
    const parts = { membership: this.#membership, delivery: this.#delivery, replayer, snapshots: this.#snapshots }
    this.#intake = new Intake(ctx, parts, draining)
    this.#api = new ProjectApi(ctx, this.#delivery, this.#snapshots, draining)
    this.#heartbeat = setInterval(() => { this.#beat() }, config.heartbeatMs)
    this.#heartbeat.unref()
    // A project with members is not idle: its log's idle expiry is extended well before it is due.
    this.#keepAlive = setInterval(() => {
      this.#projects.touchAll().catch((err: unknown) => { logger.warn({ err }, 'extending the idle expiry failed') })
    }, Math.min(config.projectIdleTtl * 1000 / 4, KEEP_ALIVE_MAX_MS))
    this.#keepAlive.unref()
  }

  get connectionCount (): number { return this.#connections.size }
  get projectCount (): number { return this.#projects.size }
  get sessionCount (): number {
    let n = 0
    for (const p of this.#projects.values()) n += p.members.size
    return n
  }

  get draining (): boolean { return this.#draining }
  /** ops waiting for the log (appends and relays) */
  get opsInFlight (): number { return this.#delivery.inFlight }

  // ---------------------------------------------------------------- connections

  /**
   * Takes a new client connection. The caller wires the transport's events to
   * `frame`, `pong` and `disconnect`. `budgetKey` names whose byte budgets
   * (`budgets`) it spends: by default its user's; the WebSocket plugin passes
   * the address when clients carry no credential.
   */
  connect (transport: Transport, identity: Identity, budgetKey = `user:${identity.userId}`): Connection {
    const now = Date.now()
    const bucket = new TokenBucket(this.#config.rateLimit, this.#config.rateBurst, now)
    const conn = new Connection(randomId(9), transport, identity, budgetKey, { bucket }, this.#outbox.sink)
    this.#connections.add(conn)
    this.stats.connectionsOpened++
    if (this.#draining) transport.close(CLOSE.goingAway, 'server shutting down')
    return conn
  }

  /** A pong (or any sign of life) from the client. */
  pong (conn: Connection): void {
    conn.missedPings = 0
  }

  /** One WebSocket message from the client. Never throws. */
  frame (conn: Connection, data: Buffer | string, isBinary: boolean): void {
    this.#intake.frame(conn, data, isBinary)
  }

  /**
   * The connection closed: its sessions leave at once, but (1.3) those that
   * joined with `resume` on a connection that dropped (`conn.dropped`) are
   * held for the resume grace first. On shutdown they are held only when the
   * session store is shared: the instance that reaps them announces their
   * leave when nobody resumed them.
   */
  disconnect (conn: Connection): void {
    if (!this.#connections.delete(conn)) return
    conn.closed = true
    this.stats.connectionsClosed++
    const hold = conn.dropped && (!this.#draining || this.#ports.sessions.scope === 'cluster')
    // After whatever the connection had queued, so a join in flight is undone too.
    conn.chain = conn.chain.then(async () => {
      await Promise.all([...conn.projects.keys()].map(async (project) => {
        await this.#membership.remove(conn, project, hold).catch((err: unknown) => {
          this.#logger.warn({ err, project }, 'leave on disconnect failed')
        })
      }))
    })
  }

  /** A message of another instance about a project served here. */
  #received (lp: LocalProject, message: BroadcastMessage): void {
    this.stats.broadcastsReceived++
    if (message.kind === 'op') this.#delivery.received(lp, message.op, message.epoch, message.relay === true)
    else this.#membership.received(lp, message)
  }

  // ---------------------------------------------------------------- recovery

  /**
   * Re-reads every local project's position (after a port switched to or
   * from its fallback, or the subscriber reconnected): missed ops are
   * delivered, an epoch change resets the members.
   */
  async resyncAll (): Promise<void> {
    await this.#delivery.resyncAll()
  }

  /**
   * After an outage: announces the leaves other instances could not hear,
   * writes the sessions of local connections back to the store (announcing
   * each one the store had lost), tells local members the joins and leaves
   * of elsewhere they missed, and resyncs every project.
   */
  async recover (left: readonly ExpiredSession[]): Promise<void> {
    await this.#keeper.writeBack(left)
    await this.#delivery.resyncAll()
  }

  /**
   * Brings what local members were told of who is in each project in line
   * with the session store (after Pub/Sub may have dropped member events).
   */
  async reconcileMembers (): Promise<void> {
    await this.#keeper.reconcileAll()
  }

  // ---------------------------------------------------------------- project API

  /** Members of a project across every instance. */
  async members (project: string): Promise<Member[]> {
    return await this.#api.members(project)
  }

  /** (1.3) A page of a project's members across every instance, in join order, after the cursor `after`. */
  async memberPage (project: string, after: string | undefined, limit: number): Promise<MemberPage> {
    return pageOf((await this.#api.members(project)).sort(byJoin), after, limit)
  }

  /** A page of history: ops with since < seq, at most `limit`. */
  async history (project: string, since: number, limit: number): Promise<History> {
    return await this.#api.history(project, since, limit)
  }

  /** A page of history that starts at the project's snapshot when it is newer than `since` (1.2). */
  async historyFromSnapshot (project: string, since: number, limit: number): Promise<History> {
    return await this.#api.history(project, since, limit, true)
  }

  /** The project's snapshot (not_found when none). */
  async snapshot (project: string): Promise<Snapshot> {
    return await this.#api.snapshot(project)
  }

  /** Stores a snapshot made by the host or a backend: kept when newer and matching the log. */
  async putSnapshot (project: string, epoch: string, seq: number, state: unknown): Promise<PutResult> {
    return await this.#api.putSnapshot(project, epoch, seq, state)
  }

  /**
   * Publishes an op as `userId`: appended with the project's next seq and
   * delivered to every member like a client op (`id` makes it idempotent;
   * one is made when undefined). The host's own ops skip the `onOp` check;
   * the HTTP API passes the poster's `identity`, which runs it.
   */
  async post (project: string, userId: string, id: string | undefined, data: unknown,
    identity?: Identity): Promise<PostedOp> {
    return await this.#api.post(project, userId, id, data, identity)
  }

  // ---------------------------------------------------------------- heartbeat and shutdown

  #beat (): void {
    const now = Date.now()
    for (const conn of this.#connections) {
      // Not read while paused: its pongs wait with its frames.
      if (conn.pausedUntil > now) continue
      if (conn.missedPings >= 2) {
        conn.dropped = true
        conn.transport.terminate()
        this.disconnect(conn)
        continue
      }
      conn.missedPings++
      try { conn.transport.ping() } catch { /* closing */ }
    }
  }

  /**
   * Graceful shutdown: stops taking frames, waits (up to the shutdown
   * timeout) for ops in flight and unsent data, then closes every connection
   * with 1001 and removes its sessions.
   */
  drain (timeoutMs = this.#config.shutdownTimeoutMs): Promise<void> {
    this.#drained ??= this.#drain(timeoutMs)
    return this.#drained
  }

  async #drain (timeoutMs: number): Promise<void> {
    this.#draining = true
    const deadline = Date.now() + timeoutMs
    const busy = (): boolean => this.#delivery.inFlight > 0 ||
      [...this.#connections].some((c) => c.transport.bufferedAmount > 0 || c.queued > 0)
    while (Date.now() < deadline && busy()) {
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    const conns = [...this.#connections]
    // The drain gave unsent data its time: what is still queued is dropped, and 1001 goes out at once.
    for (const conn of conns) this.#outbox.close(conn, CLOSE.goingAway, 'server shutting down', { discardQueued: true })
    await Promise.race([
      Promise.all(conns.map(async (c) => { await c.chain })),
      new Promise((resolve) => setTimeout(resolve, Math.max(100, deadline - Date.now())).unref())
    ])
  }

  /** Stops the timers. The ports are closed by whoever created them. */
  close (): void {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#heartbeat)
    clearInterval(this.#keepAlive)
    this.#snapshots.close()
    this.#keeper.close()
    for (const lp of this.#projects.values()) {
      if (lp.gapTimer !== undefined) clearTimeout(lp.gapTimer)
      // (1.3) Held sessions stay in a shared store for another instance to reap or resume.
      for (const held of lp.suspended.values()) clearTimeout(held.timer)
    }
  }
}
