/**
 * The circuit-breaker decorator: how a port on Redis keeps serving through a
 * Redis outage, and comes back. This module is the whole outage path of the
 * ports; adapters/redis/connection-health.ts tells when Redis is away or
 * back, and plugins/recovery.ts tells the hub.
 *
 * 1. Normal: each decorated port calls its primary (Redis) under the
 *    connection's watchdog. A call that fails with an outage error (the
 *    connection is lost, Redis is silent, LOADING, OOM...) trips the
 *    connection's breaker.
 * 2. The breaker opens: every decorated port of the connection switches at
 *    once to a fresh fallback (memory): a new op log (a new epoch: members
 *    get `reset`) with its snapshots, an outage buffer of the ops it
 *    accepts, a session store of this instance's own sessions; the
 *    broadcaster drops what it would publish and remembers subscriptions.
 *    `fallback` is emitted.
 * 3. The breaker's probe finds Redis again and runs `resync` (the recover
 *    step, before the circuit closes): subscriptions first (so no op
 *    published meanwhile is missed), then the outage buffer's ops in order
 *    and idempotently by op id, then the snapshots (those of the outage's
 *    epoch are discarded: see snapshot-store.ts), then the removal of
 *    sessions that left. Each port switches back to its primary once its
 *    part is done; a failure leaves the circuit open and the probe tries
 *    again later.
 * 4. The circuit closes: `recovered` is emitted with the sessions that left
 *    during the outage, whose leave the other instances must now hear, and
 *    the number of snapshots discarded.
 */
import { EventEmitter } from 'node:events'
import type { Broadcaster } from '../../ports/broadcaster.js'
import type { OperationLog } from '../../ports/operation-log.js'
import type { ExpiredSession, SessionStore } from '../../ports/session-store.js'
import type { SnapshotStore } from '../../ports/snapshot-store.js'
import { FailoverBroadcaster } from './broadcaster.js'
import { FailoverOperationLog, type OperationLogControl } from './operation-log.js'
import { FailoverSessionStore, type SessionStoreControl } from './session-store.js'
import { FailoverSnapshotStore, type SnapshotStoreControl } from './snapshot-store.js'
import type { PortControl, Serving, SwitchOptions } from './switch.js'

export type { Breaker, Serving } from './switch.js'
export { FailoverBroadcaster, FailoverOperationLog, FailoverSessionStore, FailoverSnapshotStore }

/** `L`: the fallback op log's type, which the fallback snapshot store is made over. */
export interface FailoverPortsOptions<L extends OperationLog = OperationLog> extends SwitchOptions {
  /**
   * the ports to decorate (those on Redis); a port left out is not
   * decorated; `snapshots` only beside `log` (they are checked against it)
   */
  readonly primary: {
    readonly sessions?: SessionStore
    readonly broadcaster?: Broadcaster
    readonly log?: OperationLog
    readonly snapshots?: SnapshotStore
  }
  /** fresh, empty fallbacks, made at the start of each outage */
  readonly fallback: {
    readonly sessions: () => SessionStore
    readonly log: () => L
    /** the snapshot store beside a fallback log (its ops' epoch and head are the ones a snapshot is checked against) */
    readonly snapshots: (log: L) => SnapshotStore
  }
  /** ops the outage buffer may hold; beyond, appends answer `unavailable` */
  readonly maxBuffered: number
  /** bytes of ops the outage buffer may hold */
  readonly maxBufferedBytes: number
}

export interface FailoverEvents {
  /** every decorated port now serves from its fallback; why the breaker opened */
  fallback: [reason: unknown]
  /** the circuit closed again; the sessions that left during the outage, and the snapshots of the outage's epoch discarded */
  recovered: [left: ExpiredSession[], discardedSnapshots: number]
}

/** The decorated ports of one failure domain, where each serves from, and the re-sync. */
export interface FailoverPorts extends EventEmitter<FailoverEvents> {
  readonly sessions?: SessionStore
  readonly broadcaster?: Broadcaster
  readonly log?: OperationLog
  readonly snapshots?: SnapshotStore
  /** where each decorated port serves from; null for a port that is not decorated */
  status (): PortsServing
  /** ops accepted during the outage and not yet in the primary */
  readonly buffered: number
  /** The breaker's recover step: moves what the fallbacks took to the primaries, in order (see above). */
  resync (): Promise<void>
}

export interface PortsServing {
  readonly sessions: Serving | null
  readonly broadcaster: Serving | null
  readonly log: Serving | null
  readonly snapshots: Serving | null
}

/** Decorates the given primaries with failover to fresh fallbacks, sharing one breaker and watchdog. */
export function createFailoverPorts<L extends OperationLog> (options: FailoverPortsOptions<L>): FailoverPorts {
  const { primary, fallback } = options
  const b = primary.broadcaster === undefined ? undefined : FailoverBroadcaster.create({ ...options, primary: primary.broadcaster })
  const l = primary.log === undefined
    ? undefined
    : FailoverOperationLog.create({ ...options, primary: primary.log, fallback: fallback.log, maxBuffered: options.maxBuffered,
      maxBufferedBytes: options.maxBufferedBytes })
  if (primary.snapshots !== undefined && l === undefined) throw new TypeError('snapshots are decorated only beside the op log')
  const s = primary.sessions === undefined ? undefined : FailoverSessionStore.create({ ...options, primary: primary.sessions, fallback: fallback.sessions })
  // One snapshot store per fallback log: the one beside the log serving now.
  const views = new WeakMap<OperationLog, SnapshotStore>()
  const snapshotsBeside = (log: OperationLog): SnapshotStore => {
    let view = views.get(log)
    if (view === undefined) {
      view = fallback.snapshots(log as L)
      views.set(log, view)
    }
    return view
  }
  const n = primary.snapshots === undefined || l === undefined
    ? undefined
    : FailoverSnapshotStore.create({ ...options, primary: primary.snapshots,
      fallback: () => { const log = l.control.fallbackLog; return log === null ? null : snapshotsBeside(log) } })
  // The order of the re-sync: subscriptions, then ops, then snapshots, then sessions.
  const controls: PortControl[] = [b?.control, l?.control, n?.control, s?.control].filter((c) => c !== undefined)
  return new FailoverGroup(options, controls, { broadcaster: b, log: l, snapshots: n, sessions: s })
}

class FailoverGroup extends EventEmitter<FailoverEvents> implements FailoverPorts {
  readonly sessions: SessionStore | undefined
  readonly broadcaster: Broadcaster | undefined
  readonly log: OperationLog | undefined
  readonly snapshots: SnapshotStore | undefined
  readonly #controls: readonly PortControl[]
  readonly #parts: {
    readonly broadcaster: { readonly control: PortControl } | undefined
    readonly log: { readonly control: OperationLogControl } | undefined
    readonly snapshots: { readonly control: SnapshotStoreControl } | undefined
    readonly sessions: { readonly control: SessionStoreControl } | undefined
  }

  constructor (options: SwitchOptions, controls: readonly PortControl[], parts: {
    readonly broadcaster: { readonly port: Broadcaster, readonly control: PortControl } | undefined
    readonly log: { readonly port: OperationLog, readonly control: OperationLogControl } | undefined
    readonly snapshots: { readonly port: SnapshotStore, readonly control: SnapshotStoreControl } | undefined
    readonly sessions: { readonly port: SessionStore, readonly control: SessionStoreControl } | undefined
  }) {
    super()
    this.sessions = parts.sessions?.port
    this.broadcaster = parts.broadcaster?.port
    this.log = parts.log?.port
    this.snapshots = parts.snapshots?.port
    this.#controls = controls
    this.#parts = parts
    // Registered after the decorators' own listeners: the ports have switched when these run.
    options.breaker.on('open', (reason) => { this.emit('fallback', reason) })
    options.breaker.on('close', () => {
      this.emit('recovered', parts.sessions?.control.takeLeft() ?? [], parts.snapshots?.control.takeDiscarded() ?? 0)
    })
  }

  status (): PortsServing {
    return {
      sessions: this.#parts.sessions?.control.serving ?? null,
      broadcaster: this.#parts.broadcaster?.control.serving ?? null,
      log: this.#parts.log?.control.serving ?? null,
      snapshots: this.#parts.snapshots?.control.serving ?? null
    }
  }

  get buffered (): number {
    return this.#parts.log?.control.buffered ?? 0
  }

  async resync (): Promise<void> {
    for (const control of this.#controls) await control.resync()
  }
}
