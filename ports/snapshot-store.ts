import type { LogPosition } from '../lib/types.js'

/**
 * A project's state at a position of its op log: what a client (or the
 * host's reducer) folded the ops `1..seq` of `epoch` into. `state` is any
 * JSON value; the server does not interpret it.
 */
export interface Snapshot extends LogPosition {
  readonly project: string
  readonly state: unknown
}

/** Why a snapshot was not stored. */
export type SnapshotRefusal =
  /** the project's log has another epoch (or none): the snapshot belongs to another life of the log */
  | 'epoch'
  /** its seq is above the log's head: ops it claims to contain do not exist */
  | 'ahead'
  /** a snapshot at this seq or a newer one is stored already: newer replaces older, never the reverse */
  | 'older'
  /** this server keeps no snapshots (a host handed in an op log without a snapshot store beside it) */
  | 'disabled'

export type PutResult =
  | { readonly stored: true }
  | { readonly stored: false, readonly reason: SnapshotRefusal }

/**
 * The newest snapshot of each project, kept beside its op log and checked
 * against it: a snapshot is stored only for the log's current epoch, at a
 * seq the log has reached, and only when it is newer than the one stored.
 * A joiner whose position the history no longer serves gets the snapshot
 * and the ops after it (docs/protocol.md, Snapshots).
 *
 * A snapshot lives as long as its project's log: it is forgotten with it
 * (idle expiry, data loss) and never outlives a change of epoch (`get`
 * answers null for a snapshot of another epoch than the log's).
 *
 * While a snapshot at seq S is stored, the op log keeps the ops after S
 * beyond its usual bounds (up to twice them), and trims the ops up to S
 * first: the snapshot and the ops after it together serve any joiner.
 *
 * `put` rejects with a TypeError, before the store is touched, when the
 * project id, epoch or seq is malformed or the state is not a JSON value; a
 * failing backing store rejects with its own error.
 *
 * Adapters: MemorySnapshotStore (beside the memory op log) and
 * RedisSnapshotStore (in the project's hash tag, checked by one script
 * against the log's meta).
 */
export interface SnapshotStore {
  /**
   * The project's newest snapshot of the log's current epoch, or null when
   * there is none (never stored, stored for another epoch, forgotten). A
   * copy: the caller may keep or change it.
   */
  get (project: string): Promise<Snapshot | null>

  /**
   * Stores the snapshot when, atomically with the check: its epoch is the
   * log's current epoch, its seq is at most the log's head, and it is newer
   * (a higher seq) than the snapshot stored. Otherwise stores nothing and
   * resolves the reason. Extends the project's idle expiry like an append.
   */
  put (snapshot: Snapshot): Promise<PutResult>

  /** Frees what the adapter created. Idempotent. */
  close (): Promise<void>
}
