import type { PutResult, Snapshot, SnapshotStore } from '../../ports/snapshot-store.js'
import type { Op } from '../types.js'
import type { SnapshotUpload } from '../protocol/wire.js'
import { jsonBytes } from '../protocol/frames.js'
import { isEpoch, stateJson } from '../snapshot.js'
import { ConfigError, ForbiddenError, LimitExceededError, NotJoinedError } from '../errors.js'
import type { Connection } from './connection.js'
import type { HubContext } from './context.js'

/**
 * A host's reducer: the server folds each project's ops into a state and
 * stores it as a snapshot every `every` ops (FLOW_SNAPSHOT_EVERY), so a
 * joiner beyond the history gets the state and the ops after it. `reduce`
 * must be pure and synchronous; a reducer that throws stops that snapshot
 * (logged), never an op.
 */
export interface SnapshotReducer {
  readonly reduce: (state: unknown, op: Op) => unknown
  /** the state before any op (default null) */
  readonly initial?: unknown
  /** ops between two snapshots (default FLOW_SNAPSHOT_EVERY) */
  readonly every?: number
  /** the projects the reducer applies to (default: all) */
  readonly projects?: (project: string) => boolean
}

/**
 * The snapshot store of a server that keeps none (a host handed in its own
 * op log and no snapshot store to check against it): no snapshot is ever
 * found, and every upload is refused with `disabled`. Joiners that take
 * state get the initial state and the whole history, or `reset`.
 */
export function noSnapshots (): SnapshotStore {
  return {
    get: async () => null,
    put: async () => ({ stored: false, reason: 'disabled' }),
    close: async () => {}
  }
}

/**
 * Ops read per page when folding (pages are bounded by FLOW_REPLAY_PAGE_BYTES
 * too): few round trips, as each waits behind the appends queued on the
 * connection, and a fold must outpace a busy project's appends.
 */
const FOLD_PAGE = 10_000
/** Projects folded at once by one instance; more wait their turn. */
const MAX_FOLDING = 2
/** Projects waiting to be folded, at most (the oldest request is dropped: a later op asks again). */
const MAX_WAITING = 10_000

/**
 * Snapshots: uploads (the `snapshot` frame and `PUT /projects/:p/snapshot`),
 * reads, and the host reducer's folding. The fold of a project runs in the
 * background on the instance that appended its `every`-th op: it reads the
 * stored snapshot and the ops after it from the log (so it needs no member
 * here and survives restarts), folds them, and stores the result.
 */
export class Snapshots {
  readonly #ctx: HubContext
  readonly #reducer: SnapshotReducer | undefined
  readonly #every: number
  /** per project, the newest seq (and its epoch) a fold was asked for, waiting its turn */
  readonly #waiting = new Map<string, { epoch: string, seq: number }>()
  readonly #folding = new Set<string>()
  #closed = false

  constructor (ctx: HubContext, reducer: SnapshotReducer | undefined) {
    this.#ctx = ctx
    if (reducer !== undefined) {
      if (typeof reducer.reduce !== 'function') {
        throw new ConfigError('the snapshots option needs reduce(state, op), a function')
      }
      if (reducer.every !== undefined && !(Number.isSafeInteger(reducer.every) && reducer.every >= 1)) {
        throw new ConfigError(`snapshots.every must be an integer >= 1, not ${String(reducer.every)}`)
      }
      if (reducer.projects !== undefined && typeof reducer.projects !== 'function') {
        throw new ConfigError('snapshots.projects must be a function (project) => boolean')
      }
      // The initial state is stored as a snapshot: it must be JSON.
      if (reducer.initial !== undefined) {
        try {
          stateJson(reducer.initial)
        } catch {
          throw new ConfigError('snapshots.initial must be a JSON value')
        }
      }
    }
    this.#reducer = reducer
    this.#every = reducer?.every ?? ctx.config.snapshotEvery
  }

  /** The state a joiner that asked for state starts from when no snapshot is stored: the reducer's initial one. */
  get initial (): unknown {
    return this.#reducer?.initial ?? null
  }

  /** The project's newest snapshot of its current epoch, or null. */
  async get (project: string): Promise<Snapshot | null> {
    return await this.#ctx.ports.snapshots.get(project)
  }

  /** Stores a snapshot a client or backend made, when it is newer and matches the log. */
  async put (snapshot: Snapshot): Promise<PutResult> {
    const max = this.#ctx.config.snapshotMaxBytes
    if (jsonBytes(snapshot.state) > max) throw new LimitExceededError(`a snapshot's state is larger than ${max} bytes`)
    // No log has an epoch of another form: not the current one.
    if (!isEpoch(snapshot.epoch)) return { stored: false, reason: 'epoch' }
    return await this.#ctx.ports.snapshots.put(snapshot)
  }

  /** A `snapshot` frame: stored when the sender is a member of the project; answered by `stored`. */
  async upload (conn: Connection, frame: SnapshotUpload): Promise<void> {
    if (!conn.projects.has(frame.project)) throw new NotJoinedError(`not joined to ${frame.project}`)
    if (!conn.identity.allows(frame.project, 'write')) {
      throw new ForbiddenError(`read-only in ${frame.project}: snapshots are refused`)
    }
    const { project, epoch, seq, state } = frame
    const result = await this.put({ project, epoch, seq, state })
    this.#ctx.outbox.reply(conn, {
      type: 'stored',
      project,
      epoch,
      seq,
      stored: result.stored,
      reason: result.stored ? undefined : result.reason,
      ref: frame.ref
    })
  }

  /** An op was appended: every `every` ops of a project the reducer applies to, fold it in the background. */
  appended (project: string, epoch: string, seq: number): void {
    const reducer = this.#reducer
    if (reducer === undefined || this.#closed || (seq !== 1 && seq % this.#every !== 0)) return
    if (reducer.projects !== undefined && !reducer.projects(project)) return
    if (seq === 1) {
      // The initial state as the snapshot at 0: from the first op on, the log
      // keeps the ops after it (up to twice its bounds) for the first fold.
      this.put({ project, epoch, seq: 0, state: reducer.initial ?? null }).catch((err: unknown) => {
        this.#ctx.logger.warn({ err, project }, 'the initial snapshot could not be stored')
      })
      if (this.#every !== 1) return
    }
    this.#waiting.delete(project)
    this.#waiting.set(project, { epoch, seq })
    if (this.#waiting.size > MAX_WAITING) this.#waiting.delete(this.#waiting.keys().next().value as string)
    this.#next()
  }

  #next (): void {
    while (this.#folding.size < MAX_FOLDING && !this.#closed) {
      const project = [...this.#waiting.keys()].find((p) => !this.#folding.has(p))
      if (project === undefined) return
      const at = this.#waiting.get(project) as { epoch: string, seq: number }
      this.#waiting.delete(project)
      this.#folding.add(project)
      this.#fold(project, at.epoch, at.seq).catch((err: unknown) => {
        this.#ctx.logger.warn({ err, project }, 'a snapshot could not be made')
      }).finally(() => {
        this.#folding.delete(project)
        this.#next()
      })
    }
  }

  /** Folds the project's ops up to `seq` of `epoch` onto its stored snapshot (or the initial state) and stores it. */
  /**
   * Folds the project's ops onto its stored snapshot (or the initial state)
   * up to the head, at least to `seq`, storing a snapshot every `every` ops
   * on the way and one at the end. Folding to the head (not only to `seq`)
   * and storing on the way keep a fold that fell behind a fast writer from
   * falling off the history: each stored snapshot lets the log trim the ops
   * it covers and keep the ones after it.
   */
  async #fold (project: string, epoch: string, seq: number): Promise<void> {
    const reducer = this.#reducer as SnapshotReducer
    const { ports, config, logger } = this.#ctx
    const stored = await ports.snapshots.get(project)
    if (stored !== null && stored.epoch === epoch && stored.seq >= seq) return
    const initial = { seq: 0, state: structuredClone(reducer.initial ?? null) }
    const base = stored !== null && stored.epoch === epoch ? stored : initial
    let state = base.state
    let from = base.seq
    let saved = base.seq
    const save = async (): Promise<boolean> => {
      const result = await this.put({ project, epoch, seq: from, state })
      saved = from
      if (!result.stored && result.reason !== 'older') {
        logger.debug({ project, seq: from, reason: result.reason }, 'snapshot not stored')
      }
      // Another instance stored a newer one, or the epoch moved on: this fold is not needed.
      return result.stored
    }
    for (;;) {
      const page = await ports.log.read(project, from, FOLD_PAGE, epoch, config.replayPageBytes)
      if (page.reset) {
        if (from > saved) await save()
        if (from < seq) {
          logger.warn({ project, from, seq }, 'no snapshot made: the history no longer reaches back to the last one')
        }
        return
      }
      for (const op of page.ops) {
        state = reducer.reduce(state, op)
        from = op.seq
      }
      if (page.ops.length === 0 || from >= page.head) break
      if (from - saved >= this.#every && !await save()) return
    }
    if (from > saved) await save()
  }

  close (): void {
    this.#closed = true
    this.#waiting.clear()
  }
}
