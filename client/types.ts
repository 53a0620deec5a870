/**
 * Types of the Flow client: its options and its events, and the protocol's
 * data they carry (`Presence`, `Member`, `Op`: lib/protocol/wire.ts, the
 * server's own definition, imported as types only). No runtime code.
 */
import type { FlowError } from './errors.js'
import type { Member, Op, Presence } from '../lib/protocol/wire.js'

export type { Presence, Member, Op } from '../lib/protocol/wire.js'

/** What a send resolves to: where the op sits in the project's log. */
export interface Ack {
  readonly id: string
  readonly seq: number
  /** the epoch `seq` belongs to */
  readonly epoch: string
}

/** The `ack` event: one per send, when the send's promise resolves. */
export interface AckEvent extends Ack {
  /** the data the app sent */
  readonly data: unknown
  /**
   * false: this ack is the next entry of the ordered stream (seq = the
   * previous op's or ack's seq + 1): apply it. true: the op is already part
   * of the state a `reset` told the app to load or a `snapshot` handed it
   * (it was acknowledged at or below that seq, or in the epoch the reset or
   * snapshot ended): do not apply it again.
   */
  readonly stale: boolean
}

export type Status = 'connecting' | 'open' | 'closed' | 'reconnecting'

/** Why the client is waiting before its next connection attempt. */
export interface RetryInfo {
  /** attempts since the last stable connection (0 for the first retry) */
  readonly attempt: number
  /** how long the client waits before this attempt */
  readonly delayMs: number
  /** close code of the connection that ended (1006 when it never opened) */
  readonly code: number
  readonly reason: string
}

/** The events of a FlowClient, each with the arguments its listeners get. */
export interface FlowEvents {
  /** another session's op, in seq order, never twice */
  op: (project: string, op: Op) => void
  /** the session's own op is acknowledged (as its send promise resolves) */
  ack: (project: string, ack: AckEvent) => void
  /** the member list changed (a join, a leave, or a (re)join's fresh list) */
  members: (project: string, members: readonly Member[]) => void
  /** another session's presence changed */
  presence: (project: string, sessionId: string, userId: string, state: Presence) => void
  /** the op log's history no longer reaches back: reload state up to `seq`, live ops continue after it */
  reset: (project: string, epoch: string, seq: number) => void
  /**
   * (a join with `snapshot: true`) the project's state at `seq` of `epoch`:
   * the app's state becomes `state`, and the ops after `seq` follow
   */
  snapshot: (project: string, state: unknown, info: SnapshotInfo) => void
  /** the connection's status changed; `retry` is set while a new attempt is scheduled */
  status: (status: Status, retry?: RetryInfo) => void
  /** a protocol error not tied to a send (those reject the send's promise) */
  error: (error: FlowError) => void
}

/**
 * A WebSocket as the client uses it: the browser's, or the `ws` package's.
 * Event handlers are declared bivariantly so both implementations' handler
 * types fit.
 */
export interface WebSocketLike {
  readonly readyState: number
  send (data: string): void
  close (code?: number, reason?: string): void
  onopen: Handler<unknown> | null
  onmessage: Handler<MessageEventLike> | null
  onclose: Handler<CloseEventLike> | null
  onerror: Handler<unknown> | null
}

export type WebSocketConstructor = new (url: string) => WebSocketLike

/** A function type whose parameter is checked bivariantly (like a method's). */
type Handler<E> = { bivarianceHack (event: E): void }['bivarianceHack']

export interface MessageEventLike {
  readonly data: unknown
}

export interface CloseEventLike {
  readonly code: number
  readonly reason: string
}

export interface ReconnectOptions {
  /** ceiling of the first retry's delay, in ms (default 250) */
  readonly minDelayMs?: number
  /** largest delay between two attempts, in ms (default 10,000) */
  readonly maxDelayMs?: number
  /** a connection open this long counts as stable: the next retry starts again from the minimum (default 5,000) */
  readonly stableAfterMs?: number
}

export type TokenSource = string | (() => string | Promise<string>)

export interface FlowClientOptions {
  /** the server's WebSocket endpoint: `wss://host/ws` (or `{prefix}/ws`) */
  readonly url: string
  /** a token, or a function called before every connection attempt (fresh tokens) */
  readonly token?: TokenSource
  /** a WebSocket constructor; default the global `WebSocket` (browsers, Node 22+) */
  readonly WebSocket?: WebSocketConstructor
  readonly reconnect?: ReconnectOptions
  /**
   * How often the client pings, in ms; a connection from which nothing
   * arrived for a whole interval after a ping is dropped and replaced
   * (default 30,000; 0: never).
   */
  readonly pingIntervalMs?: number
  /** at most one presence frame per project per this many ms; the last state is always sent (default 50) */
  readonly presenceThrottleMs?: number
  /** largest op frame the client sends, in bytes (the server's payload limit, default 64 KiB) */
  readonly maxFrameBytes?: number
}

/** What a `reset` callback is told. */
export interface ResetInfo {
  readonly project: string
  readonly epoch: string
  readonly seq: number
}

/** Where a snapshot's state is in the project's log: what the ops `1..seq` of `epoch` fold into. */
export interface SnapshotInfo {
  readonly project: string
  readonly epoch: string
  readonly seq: number
}

/** Where an uploaded snapshot's state is; default: the handle's `epoch` and `seq`. */
export interface SnapshotPosition {
  readonly epoch: string
  readonly seq: number
}

/** The server's answer to `uploadSnapshot`. */
export interface StoredResult {
  /** true: kept; the project's joiners beyond the history may get it */
  readonly stored: boolean
  /**
   * why it was not kept: `epoch` (not the current one), `ahead` (above the
   * head), `older` (one at this seq or a newer one is kept), `disabled` (the
   * server keeps no snapshots)
   */
  readonly reason?: 'epoch' | 'ahead' | 'older' | 'disabled'
}

export interface JoinOptions {
  /** the presence other members see; later changes through `setPresence` */
  readonly presence?: Presence
  /**
   * The last seq the app already has (default 0: the app is handed the whole
   * kept history as `op` events, or a `reset` when it no longer reaches back).
   */
  readonly since?: number
  /** the epoch `since` belongs to; without it the first replay trusts `since` */
  readonly epoch?: string
  /**
   * Called on every `reset` of this project. Reload the project's state up
   * to `seq` (from your own store, or `GET /projects/:project/ops`). The
   * client holds the live ops back until the returned promise settles, then
   * hands them over from `seq + 1`.
   */
  readonly onReset?: (reset: ResetInfo) => void | Promise<void>
  /**
   * (protocol 1.2) The app takes the project's state: every join, rejoin and
   * sync asks for a `snapshot` where the history cannot serve the app's
   * position (and the first join, without `since`, always gets one, at seq 0
   * with the server's initial state when the project has none stored), so
   * the app gets `onSnapshot` and the ops after it instead of a `reset`.
   * `reset` still comes when neither a snapshot nor the history can serve.
   */
  readonly snapshot?: boolean
  /**
   * Called on every `snapshot` of this project (with `snapshot: true`): the
   * app's state becomes `state`, the project's state up to `seq`. Like
   * `onReset`, live ops wait until the returned promise settles, then
   * continue from `seq + 1`.
   */
  readonly onSnapshot?: (state: unknown, info: SnapshotInfo) => void | Promise<void>
}

export interface SendOptions {
  /** the op's idempotency key (1 to 64 of `A-Z a-z 0-9 _ -`); generated when missing */
  readonly id?: string
}

/** An op sent and not acknowledged yet. */
export interface PendingOp {
  readonly id: string
  readonly data: unknown
}
