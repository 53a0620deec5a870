import type {
  AppendResult, LogMissing, NewOp, NewOpIfLogExists, OpenedLog, OperationLog, ReadResult
} from '../../ports/operation-log.js'
import type { PutResult } from '../../ports/snapshot-store.js'
import { NO_EPOCH, type LogPosition, type Op } from '../../lib/types.js'
import { idempotencyKey, randomId } from '../../lib/ids.js'
import { ClosedError } from '../../lib/errors.js'
import { storedOpJson, withStoredFrame } from '../../lib/protocol/op-frame.js'

export interface MemoryOperationLogOptions {
  /** ops kept per project, at most (default 1,000) */
  readonly historyLimit?: number
  /** bytes of ops kept per project, at most; the newest op is always kept (default 8 MiB) */
  readonly historyBytes?: number
  /**
   * the budget of the whole log, every project together, in bytes as
   * {@link MemoryOperationLog.bytes} counts them (default: none). Past it,
   * the history of the projects idle longest is dropped first (see the class).
   */
  readonly totalBytes?: number
  /**
   * op ids remembered per project for idempotency: the last idRetention at
   * least, 2 x idRetention at most (default max(historyLimit, 10,000))
   */
  readonly idRetention?: number
  /** the default `maxBytes` of a read (default 1 MiB) */
  readonly pageBytes?: number
  /** a project no append, open or touch reached for this long is forgotten whole (default: never) */
  readonly idleTtlMs?: number
}

/** What `bytes` counts beyond the ops' JSON: an estimate of each structure's own memory. */
const OP_OVERHEAD = 40
const ID_OVERHEAD = 64
const PROJECT_OVERHEAD = 512
/** Sweeps for idle projects at least this often (more often when the idle TTL is shorter). */
const MAX_SWEEP_INTERVAL_MS = 60_000

interface ProjectLog {
  readonly name: string
  readonly epoch: string
  head: number
  /** the stored JSON of the kept ops from index `start`, oldest first; the last is seq `head` */
  stored: string[]
  /** stored[i]'s size (UTF-8 bytes) */
  sizes: number[]
  start: number
  /** the sum of the kept ops' sizes */
  historyBytes: number
  /** op id -> seq of the newest ids; when it holds idRetention, it becomes `olderIds` */
  ids: Map<string, number>
  /** the generation before `ids`: forgotten whole at the next turn (no per-op trim) */
  olderIds: Map<string, number>
  idsBytes: number
  olderIdsBytes: number
  /** performance.now() of the last append, open or touch */
  usedAt: number
  /** the newest snapshot of this epoch (MemorySnapshotStore), its state as JSON */
  snapshot: StoredSnapshot | null
}

/** A snapshot as the memory log keeps it: its state as JSON text (nothing shared with callers). */
export interface StoredSnapshot {
  readonly seq: number
  readonly json: string
  readonly size: number
}

function kept (log: ProjectLog): number {
  return log.stored.length - log.start
}

/**
 * The embedded op log: a bounded history per project in this process, each
 * op held as its stored JSON (so what `bytes` counts is what it holds, and
 * nothing is shared with callers). A project's epoch is made when its log
 * is created (open, or an append), so a restarted process has new epochs
 * and clients that reconnect get `reset`.
 *
 * Memory: each project keeps its ops within `historyLimit` and
 * `historyBytes` (the port's history bounds). With `totalBytes`, once
 * everything the log holds passes it (see `bytes`), it frees memory in this
 * order, stopping as soon as it is under: (1) the oldest ops of the projects
 * idle longest (last append, open or touch), project by project, never the
 * project being appended to or opened; their epoch, head and ids stay, so
 * their members only get `reset` when they ask for that history; (2) whole
 * projects, idle longest first (epoch and ids too: such a project comes back
 * with a new epoch), only when dropping every other project's history was
 * not enough; (3) the oldest ops of the project being appended to, keeping
 * its newest. With `idleTtlMs`, a project no append, open or touch reached
 * for that long is forgotten whole: calls see it gone at once, and a sweep
 * (an unref'd timer, every idleTtlMs or every minute when that is longer;
 * stopped by close()) frees its memory.
 */
export class MemoryOperationLog implements OperationLog {
  readonly scope = 'instance'
  readonly publishesOps = false
  /** in order of last use (append, open, touch): the idle longest first */
  readonly #logs = new Map<string, ProjectLog>()
  readonly #historyLimit: number
  readonly #historyBytes: number
  readonly #totalBytes: number
  readonly #idRetention: number
  readonly #pageBytes: number
  readonly #idleTtlMs: number | undefined
  readonly #sweeper: NodeJS.Timeout | undefined
  #bytes = 0
  #closed = false

  constructor (options: MemoryOperationLogOptions = {}) {
    this.#historyLimit = atLeastOne(options.historyLimit ?? 1000, 'historyLimit')
    this.#historyBytes = atLeastOne(options.historyBytes ?? 8 * 1024 * 1024, 'historyBytes')
    this.#totalBytes = atLeastOne(options.totalBytes ?? Infinity, 'totalBytes')
    this.#idRetention = atLeastOne(options.idRetention ?? Math.max(this.#historyLimit, 10_000), 'idRetention')
    this.#pageBytes = atLeastOne(options.pageBytes ?? 1024 * 1024, 'pageBytes')
    if (options.idleTtlMs !== undefined) {
      const ttl = atLeastOne(options.idleTtlMs, 'idleTtlMs')
      this.#idleTtlMs = ttl
      this.#sweeper = setInterval(() => { this.#sweep() }, Math.min(ttl, MAX_SWEEP_INTERVAL_MS))
      this.#sweeper.unref()
    }
  }

  /**
   * What the log holds, in bytes: the kept ops' JSON, plus an estimate of
   * the memory of each kept op, remembered op id and project beyond it.
   * Never above `totalBytes` after a call returns, unless the one project
   * being appended to alone is larger (its newest op and its ids are kept).
   */
  get bytes (): number {
    return this.#bytes
  }

  /** How many projects have a log here. */
  get projects (): number {
    return this.#logs.size
  }

  append (op: NewOp): Promise<AppendResult>
  append (op: NewOp | NewOpIfLogExists): Promise<AppendResult | LogMissing>
  async append (input: NewOp | NewOpIfLogExists): Promise<AppendResult | LogMissing> {
    this.#assertOpen()
    // First: a value JSON cannot hold throws before anything changes.
    const json = storedOpJson(input)
    let log = this.#live(input.project)
    const created = log === undefined
    if (log === undefined) {
      if (input.create === false) return { duplicate: false, created: false, missing: true }
      log = this.#create(input.project)
    }
    this.#use(log)
    const key = idempotencyKey(input.userId, input.id)
    const seen = log.ids.get(key) ?? log.olderIds.get(key)
    if (seen !== undefined) {
      return { duplicate: true, epoch: log.epoch, seq: seen, id: input.id }
    }
    log.head += 1
    const size = Buffer.byteLength(json)
    log.stored.push(json)
    log.sizes.push(size)
    log.historyBytes += size
    this.#bytes += size + OP_OVERHEAD
    while (this.#overBounds(log)) this.#dropOldest(log)
    this.#remember(log, key, log.head)
    this.#keepBudget(log)
    return { duplicate: false, created, epoch: log.epoch, op: decode(input.project, log.head, json) }
  }

  async read (project: string, since: number, limit: number, epoch?: string, maxBytes = this.#pageBytes): Promise<ReadResult> {
    this.#assertOpen()
    const log = this.#live(project)
    if (log === undefined) {
      return { epoch: NO_EPOCH, head: 0, ops: [], reset: since > 0 || (epoch !== undefined && epoch !== NO_EPOCH) }
    }
    const first = log.head - kept(log) + 1
    const reset = (epoch !== undefined && epoch !== log.epoch) || since > log.head || first > since + 1
    if (reset) return { epoch: log.epoch, head: log.head, ops: [], reset: true }
    const count = Math.max(1, limit)
    const ops: Op[] = []
    let bytes = 0
    for (let seq = since + 1; seq <= log.head && ops.length < count; seq++) {
      const i = log.start + seq - first
      const size = log.sizes[i] as number
      if (ops.length > 0 && bytes + size > maxBytes) break
      bytes += size
      ops.push(decode(project, seq, log.stored[i] as string))
    }
    return { epoch: log.epoch, head: log.head, ops, reset: false }
  }

  async head (project: string): Promise<LogPosition> {
    this.#assertOpen()
    const log = this.#live(project)
    return log === undefined ? { epoch: NO_EPOCH, seq: 0 } : { epoch: log.epoch, seq: log.head }
  }

  async open (project: string): Promise<OpenedLog> {
    this.#assertOpen()
    let log = this.#live(project)
    const created = log === undefined
    log ??= this.#create(project)
    this.#use(log)
    this.#keepBudget(log)
    return { epoch: log.epoch, seq: log.head, created }
  }

  async touch (projects: readonly string[]): Promise<void> {
    this.#assertOpen()
    for (const project of projects) {
      const log = this.#live(project)
      if (log !== undefined) this.#use(log)
    }
  }

  async close (): Promise<void> {
    this.#closed = true
    if (this.#sweeper !== undefined) clearInterval(this.#sweeper)
    this.#logs.clear()
    this.#bytes = 0
  }

  /** The project's log, unless it has none or it was idle past the TTL (then it is forgotten now). */
  #live (project: string): ProjectLog | undefined {
    const log = this.#logs.get(project)
    if (log !== undefined && this.#idleTtlMs !== undefined && performance.now() - log.usedAt >= this.#idleTtlMs) {
      this.#forget(log)
      return undefined
    }
    return log
  }

  #create (project: string): ProjectLog {
    const log: ProjectLog = {
      name: project,
      epoch: randomId(9),
      head: 0,
      stored: [],
      sizes: [],
      start: 0,
      historyBytes: 0,
      ids: new Map(),
      olderIds: new Map(),
      idsBytes: 0,
      olderIdsBytes: 0,
      usedAt: performance.now(),
      snapshot: null
    }
    this.#logs.set(project, log)
    this.#bytes += PROJECT_OVERHEAD
    return log
  }

  /** An append, open or touch: the project becomes the most recently used. */
  #use (log: ProjectLog): void {
    log.usedAt = performance.now()
    this.#logs.delete(log.name)
    this.#logs.set(log.name, log)
  }

  #forget (log: ProjectLog): void {
    this.#logs.delete(log.name)
    this.#bytes -= PROJECT_OVERHEAD + log.historyBytes + kept(log) * OP_OVERHEAD + log.idsBytes + log.olderIdsBytes +
      (log.snapshot?.size ?? 0)
  }

  /**
   * Whether the oldest kept op goes: the history is past its bounds and that
   * op is covered by the project's snapshot (seq <= the snapshot's), or the
   * history is past twice its bounds. So the ops after a snapshot stay
   * readable up to twice the bounds, and those it covers go first.
   */
  #overBounds (log: ProjectLog): boolean {
    const n = kept(log)
    if (n <= 1 || (n <= this.#historyLimit && log.historyBytes <= this.#historyBytes)) return false
    const oldest = log.head - n + 1
    if (log.snapshot === null || oldest <= log.snapshot.seq) return true
    return n > 2 * this.#historyLimit || log.historyBytes > 2 * this.#historyBytes
  }

  /**
   * The project's snapshot (MemorySnapshotStore): its epoch and stored
   * form, or null when the project has no log or no snapshot. Creates
   * nothing; does not extend the idle expiry.
   */
  snapshotOf (project: string): { readonly epoch: string, readonly snapshot: StoredSnapshot } | null {
    this.#assertOpen()
    const log = this.#live(project)
    return log?.snapshot == null ? null : { epoch: log.epoch, snapshot: log.snapshot }
  }

  /**
   * Stores a snapshot when `epoch` is the log's, `seq` at most its head and
   * above the stored snapshot's (the SnapshotStore port's `put`); extends the
   * idle expiry like an append. The snapshot counts in `bytes`, and goes with
   * its project.
   */
  storeSnapshot (project: string, epoch: string, seq: number, json: string): PutResult {
    this.#assertOpen()
    const log = this.#live(project)
    if (log === undefined || log.epoch !== epoch) return { stored: false, reason: 'epoch' }
    if (seq > log.head) return { stored: false, reason: 'ahead' }
    if (log.snapshot !== null && log.snapshot.seq >= seq) return { stored: false, reason: 'older' }
    const size = Buffer.byteLength(json)
    this.#bytes += size - (log.snapshot?.size ?? 0)
    log.snapshot = { seq, json, size }
    this.#use(log)
    // History the snapshot now covers may go at once, as at an append.
    while (this.#overBounds(log)) this.#dropOldest(log)
    this.#keepBudget(log)
    return { stored: true }
  }

  #dropOldest (log: ProjectLog): void {
    const size = log.sizes[log.start] as number
    log.stored[log.start] = ''
    log.start += 1
    log.historyBytes -= size
    this.#bytes -= size + OP_OVERHEAD
    // Compact once the dropped slots are half the array: O(1) amortised per op.
    if (log.start >= 64 && log.start * 2 >= log.stored.length) {
      log.stored = log.stored.slice(log.start)
      log.sizes = log.sizes.slice(log.start)
      log.start = 0
    }
  }

  /**
   * Two generations instead of deleting the oldest id on every append
   * (Map.keys().next() + delete costs microseconds once the map is large).
   */
  #remember (log: ProjectLog, id: string, seq: number): void {
    if (log.ids.size >= this.#idRetention) {
      this.#bytes -= log.olderIdsBytes
      log.olderIds = log.ids
      log.olderIdsBytes = log.idsBytes
      log.ids = new Map()
      log.idsBytes = 0
    }
    log.ids.set(id, seq)
    log.idsBytes += id.length + ID_OVERHEAD
    this.#bytes += id.length + ID_OVERHEAD
  }

  /** Back under totalBytes, in the order the class comment gives; `current` was just used. */
  #keepBudget (current: ProjectLog): void {
    if (this.#bytes <= this.#totalBytes) return
    for (const log of this.#logs.values()) {
      if (log === current) break
      while (this.#bytes > this.#totalBytes && kept(log) > 0) this.#dropOldest(log)
      if (this.#bytes <= this.#totalBytes) return
    }
    for (const log of this.#logs.values()) {
      if (log === current) break
      this.#forget(log)
      if (this.#bytes <= this.#totalBytes) return
    }
    while (this.#bytes > this.#totalBytes && kept(current) > 1) this.#dropOldest(current)
  }

  /** Forgets the projects idle past the TTL: the idle longest come first, so it stops at the first one in use. */
  #sweep (): void {
    const ttl = this.#idleTtlMs as number
    const now = performance.now()
    for (const log of this.#logs.values()) {
      if (now - log.usedAt < ttl) return
      this.#forget(log)
    }
  }

  #assertOpen (): void {
    if (this.#closed) throw new ClosedError('operation log')
  }
}

export function createMemoryOperationLog (options?: MemoryOperationLogOptions): MemoryOperationLog {
  return new MemoryOperationLog(options)
}

function atLeastOne (value: number, name: string): number {
  if (!(value >= 1)) throw new RangeError(`${name} must be >= 1`)
  return value
}

/** A fresh op from its stored JSON (the log's own text: trusted), with its frame ready made. */
function decode (project: string, seq: number, json: string): Op {
  const stored = JSON.parse(json) as Pick<Op, 'id' | 'userId' | 'sessionId' | 'data' | 'ts'>
  return withStoredFrame({ project, seq, id: stored.id, userId: stored.userId, sessionId: stored.sessionId, data: stored.data, ts: stored.ts }, json)
}
