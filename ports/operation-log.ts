import type { LogPosition, Op } from '../lib/types.js'

/** What a caller hands to {@link OperationLog.append}: an op without its seq. */
export interface NewOp {
  readonly project: string
  /** idempotency key: 1 to 64 chars of [A-Za-z0-9_-] */
  readonly id: string
  readonly userId: string
  readonly sessionId: string | null
  readonly data: unknown
  readonly ts: number
  /**
   * The append creates the project's log when it has none (the default).
   * To append only to a log that exists, pass `create: false`: a
   * {@link NewOpIfLogExists}.
   */
  readonly create?: true
}

/**
 * An op to append only when the project has a log: without one, `append`
 * writes nothing and resolves {@link LogMissing} (a caller that may not create
 * projects, e.g. past a per-identity cap, refuses the op then). One exception:
 * the failover decorator, while it serves from its fallback, cannot know which
 * projects the primary has, and takes such an op like any other.
 */
export interface NewOpIfLogExists extends Omit<NewOp, 'create'> {
  readonly create: false
}

/** The op was appended with the project's next seq. */
export interface Appended {
  readonly duplicate: false
  /** true when this append created the project's log (a new epoch) */
  readonly created: boolean
  readonly epoch: string
  readonly op: Op
  readonly missing?: undefined
}

/** An op with this id was already accepted: nothing was appended. */
export interface Duplicate {
  readonly duplicate: true
  readonly epoch: string
  /** the seq the op was accepted with */
  readonly seq: number
  readonly id: string
  readonly missing?: undefined
}

/** `create: false` and the project has no log: nothing was written. */
export interface LogMissing {
  readonly duplicate: false
  readonly created: false
  readonly missing: true
}

/** What an append that may create the log resolves. */
export type AppendResult = Appended | Duplicate

/** The project's position, from {@link OperationLog.open}. */
export interface OpenedLog extends LogPosition {
  /** true when this call created the project's log (a new epoch, nothing in it) */
  readonly created: boolean
}

export interface ReadResult {
  /** the log's current epoch; NO_EPOCH (lib/types.ts) when the project has no log */
  readonly epoch: string
  /** the project's head when the read was served (0 when it has no log) */
  readonly head: number
  /**
   * ops with since < seq, oldest first, contiguous, at most `limit` of them
   * and within `maxBytes` after the first (see {@link OperationLog.read});
   * empty when reset
   */
  readonly ops: readonly Op[]
  /**
   * true when the log cannot answer exactly: `since` is above the head, the
   * oldest kept op is newer than since + 1, or the caller's epoch is not the
   * current one (for a project with no log: `since` > 0, or an epoch other
   * than NO_EPOCH). The caller must tell its client to reload (`reset`).
   */
  readonly reset: boolean
}

/**
 * The per-project, append-only, sequenced log of operations.
 *
 * Adapters: MemoryOperationLog (bounded history per project, one process) and
 * RedisOperationLog (one stream per project, shared by the cluster).
 *
 * **Size of an op**: the length in bytes (UTF-8) of its stored JSON, the op's
 * fields other than `project` and `seq` (`storedOpJson`, lib/protocol/op-frame.ts).
 *
 * **History bounds**: each project keeps its newest ops within two bounds,
 * `historyLimit` ops and `historyBytes` bytes (options of the adapter): the
 * oldest ops go first, and the newest op is always kept, even when it alone
 * is larger than `historyBytes`. So the last N ops stay readable for every
 * N <= historyLimit whose ops together are at most historyBytes; for no
 * larger N is that promised. An adapter may keep less under a budget of its
 * own (the memory log's `totalBytes`) and says when.
 *
 * **A log exists** once `open` or an append created it. `head` and `read`
 * never create one. A log is created with a new epoch (an opaque random
 * string, never NO_EPOCH) and lives until it is forgotten: with an idle TTL
 * (the adapters' `idleTtlMs`) a project that no append, `open` or `touch`
 * reached for that long loses its whole log (epoch, ops, ids), as does one
 * whose data the store lost; it comes back with a new epoch.
 */
export interface OperationLog {
  /**
   * `cluster` when every instance shares this log (one seq per project
   * cluster-wide); `instance` when the log is this process's own, so seqs are
   * per instance.
   */
  readonly scope: 'cluster' | 'instance'

  /**
   * True when `append` also broadcasts the sequenced op to the other
   * instances, atomically with the append and in seq order; the caller must
   * then not publish it again.
   */
  readonly publishesOps: boolean

  /**
   * Appends an op and assigns it the project's next seq (1, 2, 3, ... within
   * an epoch, no gap, no repeat, across every caller sharing the log), then
   * trims the project's history to its bounds (see the interface).
   * Atomic: the seq, the id check and the append happen as one step, so two
   * concurrent appends never get the same seq. Calls made in order by one
   * caller are assigned increasing seqs in that order.
   * Creates the project's log when it has none and resolves `created: true`
   * with the new epoch. With `create: false` ({@link NewOpIfLogExists}) it
   * creates nothing: a project without a log resolves {@link LogMissing} and
   * nothing is written.
   * Idempotent on `id` per sender (another user's op with that id is
   * another op: one user's id never absorbs another's): when an op with the same id and the same
   * `userId` was accepted for the same project (within the log's id retention: at least the last `idRetention`
   * ids, at least the history bound) it resolves `{ duplicate: true }` with
   * the original seq and appends nothing.
   * Extends the project's idle expiry.
   * Rejects when the backing store fails; then the op may or may not have been
   * appended (a retry with the same id is safe).
   */
  append (op: NewOp): Promise<AppendResult>
  append (op: NewOp | NewOpIfLogExists): Promise<AppendResult | LogMissing>

  /**
   * Reads ops with since < seq <= head, oldest first, contiguous: at most
   * `limit` (>= 1) and, after the first op, no op that would take the page's
   * size (the sum of its ops' sizes) past `maxBytes` (default: the adapter's
   * `pageBytes`, 1 MiB by default). The first op is served even when it alone
   * is larger. A page may so end before the head: the caller continues from
   * its last op's seq.
   * Resolves `reset: true` with no ops when the range cannot be served
   * exactly (see {@link ReadResult.reset}); `epoch`, when given, must be the
   * log's current epoch. A project with no log resolves epoch NO_EPOCH and
   * head 0, with no ops.
   * Never creates anything, and does not extend the idle expiry.
   */
  read (project: string, since: number, limit: number, epoch?: string, maxBytes?: number): Promise<ReadResult>

  /**
   * The project's current epoch and head (0 when it has no op yet); NO_EPOCH
   * and 0 when it has no log. Never creates anything, and does not extend the
   * idle expiry.
   */
  head (project: string): Promise<LogPosition>

  /**
   * The project's position, creating its log when it has none: a new epoch
   * and head 0 (`created: true`; after a store lost part of a log, the head
   * continues above the seqs it still remembers, so a seq never names two
   * ops). Atomic: concurrent calls for one project,
   * from every caller sharing the log, create one epoch, and one of them
   * resolves `created: true`. Extends the project's idle expiry.
   */
  open (project: string): Promise<OpenedLog>

  /**
   * Extends the idle expiry of each of `projects` that has a log, as an
   * append would, and creates nothing (a project without a log is skipped).
   * Keeps the history of projects in use but quiet (members, no ops).
   */
  touch (projects: readonly string[]): Promise<void>

  /** Frees what the adapter created. Idempotent. */
  close (): Promise<void>
}
