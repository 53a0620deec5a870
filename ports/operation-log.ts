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
}

export type AppendResult =
  /** The op was appended with the project's next seq. */
  | { readonly duplicate: false, readonly epoch: string, readonly op: Op }
  /** An op with this id was already accepted: nothing was appended. */
  | { readonly duplicate: true, readonly epoch: string, readonly seq: number, readonly id: string }

export interface ReadResult {
  readonly epoch: string
  /** the project's head when the read was served */
  readonly head: number
  /** ops with since < seq, oldest first, contiguous, at most `limit` of them; empty when reset */
  readonly ops: readonly Op[]
  /**
   * true when the log cannot answer exactly: `since` is above the head, the
   * oldest kept op is newer than since + 1, or the caller's epoch is not the
   * current one. The caller must tell its client to reload (`reset`).
   */
  readonly reset: boolean
}

/**
 * The per-project, append-only, sequenced log of operations.
 *
 * Adapters: MemoryOperationLog (bounded ring per project, one process) and
 * RedisOperationLog (one stream per project, shared by the cluster).
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
   * an epoch, no gap, no repeat, across every caller sharing the log).
   * Atomic: the seq, the id check and the append happen as one step, so two
   * concurrent appends never get the same seq. Calls made in order by one
   * caller are assigned increasing seqs in that order.
   * Idempotent on `id`: when an op with the same id was accepted for the same
   * project (within the log's id retention, at least its history bound), it
   * resolves `{ duplicate: true }` with the original seq and appends nothing.
   * Rejects when the backing store fails; then the op may or may not have been
   * appended (a retry with the same id is safe).
   */
  append (op: NewOp): Promise<AppendResult>

  /**
   * Reads ops with since < seq <= head, oldest first, at most `limit` (>= 1).
   * Resolves `reset: true` with no ops when the range cannot be served
   * exactly (see {@link ReadResult.reset}); `epoch`, when given, must be the
   * log's current epoch. A project that never had an op has head 0.
   */
  read (project: string, since: number, limit: number, epoch?: string): Promise<ReadResult>

  /** The project's current epoch and head (0 when it has no op yet). */
  head (project: string): Promise<LogPosition>

  /** Frees what the adapter created. Idempotent. */
  close (): Promise<void>
}
