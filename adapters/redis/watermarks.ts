/**
 * What this instance has seen of each project's shared log: the highest seq
 * of the log's epoch it acked, delivered or was told is the head. Redis
 * cannot know that it lost ops it acknowledged (a failover to a replica that
 * lagged, a restart whose AOF lost its last second): the promoted replica
 * holds the log's meta with the same epoch and a lower head, and would give
 * the lost seqs to new ops. The instances that saw those seqs can tell. The
 * op log's scripts take this instance's watermark of a project and move the
 * log to a new epoch when its head is below it (see FENCE in scripts.ts), so
 * a loss always reaches clients as an epoch change (`reset`), never as one
 * (epoch, seq) naming two ops.
 *
 * The op log records what its own calls return; the broadcaster records
 * the seq of every op message another instance published (the ops this
 * instance delivered without appending them). One object is shared by both.
 *
 * Bounded: at most `maxProjects` entries (the least recently updated go
 * first), each at most a project id (128 chars) and four epochs (the
 * current one and three earlier: a store that flaps between replicas may
 * come back to an older epoch) with their seqs; an
 * entry not updated for `idleMs` is dropped (after the log's idle TTL the
 * project comes back with a new epoch anyway, so the entry says nothing).
 */
export interface Watermark {
  readonly epoch: string
  readonly seq: number
}

interface Entry extends Watermark {
  seq: number
  /** Date.now() when it last moved to the end of the map (at most once per refreshMs) */
  at: number
  /**
   * the epochs seen before this one, newest first, at most EARLIER: a store
   * may come back to one (Sentinel flapping between two replicas, one of
   * which still holds an older epoch of the log)
   */
  earlier: Watermark[] | null
}

/** Epochs remembered per project besides the current one. */
const EARLIER = 3

export interface LogWatermarksOptions {
  /** projects remembered, at most (default 50,000) */
  readonly maxProjects?: number
  /** an entry not updated for this long is forgotten (default: never, only by count) */
  readonly idleMs?: number
  /** an updated entry becomes the most recently used at most this often (default 1,000 ms: fewer map moves per op) */
  readonly refreshMs?: number
}

const DEFAULT_MAX_PROJECTS = 50_000

export class LogWatermarks {
  readonly #max: number
  readonly #idleMs: number
  readonly #refreshMs: number
  /** insertion order = update order: the first entry is the least recently updated */
  readonly #seen = new Map<string, Entry>()

  constructor (options: LogWatermarksOptions = {}) {
    const max = options.maxProjects ?? DEFAULT_MAX_PROJECTS
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError('maxProjects must be an integer >= 1')
    const idleMs = options.idleMs ?? Infinity
    if (!(idleMs > 0)) throw new RangeError('idleMs must be > 0')
    this.#max = max
    this.#idleMs = idleMs
    this.#refreshMs = options.refreshMs ?? 1000
  }

  /**
   * The log of `project` was seen at `seq` of `epoch`. Another epoch becomes
   * the current one; the one it replaces is kept among the earlier ones.
   */
  saw (project: string, epoch: string, seq: number): void {
    if (epoch === '') return
    const now = Date.now()
    const known = this.#seen.get(project)
    if (known !== undefined && known.epoch === epoch) {
      // Updated in place; moved to the end (most recently used) at most once per refreshMs.
      if (seq > known.seq) known.seq = seq
      if (now - known.at < this.#refreshMs) return
      known.at = now
      this.#seen.delete(project)
      this.#seen.set(project, known)
      return
    }
    if (known !== undefined) {
      // Back to an epoch seen before: what was seen of it still counts.
      const before = known.earlier?.find((w) => w.epoch === epoch)
      const earlier = [{ epoch: known.epoch, seq: known.seq }, ...(known.earlier ?? []).filter((w) => w !== before)].slice(0, EARLIER)
      this.#seen.delete(project)
      this.#seen.set(project, { epoch, seq: Math.max(seq, before?.seq ?? 0), at: now, earlier })
      return
    }
    this.#forgetIdle(now)
    if (this.#seen.size >= this.#max) this.#seen.delete(this.#seen.keys().next().value as string)
    this.#seen.set(project, { epoch, seq, at: now, earlier: null })
  }

  /** What was seen of `project`'s log in each epoch remembered, the current one first; empty when nothing. */
  all (project: string): readonly Watermark[] {
    const known = this.#entry(project)
    if (known === undefined) return []
    return known.earlier === null ? [known] : [known, ...known.earlier]
  }

  #entry (project: string): Entry | undefined {
    const known = this.#seen.get(project)
    if (known === undefined) return undefined
    if (Date.now() - known.at >= this.#idleMs) {
      this.#seen.delete(project)
      return undefined
    }
    return known
  }

  /** projects remembered now */
  get size (): number {
    return this.#seen.size
  }

  /** Drops at most two entries idle past idleMs, oldest first: amortised over the updates that add entries. */
  #forgetIdle (now: number): void {
    if (this.#idleMs === Infinity) return
    for (let i = 0; i < 2; i++) {
      const first = this.#seen.entries().next().value
      if (first === undefined || now - first[1].at < this.#idleMs) return
      this.#seen.delete(first[0])
    }
  }
}
