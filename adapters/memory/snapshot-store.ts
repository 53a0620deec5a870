import type { PutResult, Snapshot, SnapshotStore } from '../../ports/snapshot-store.js'
import { ClosedError } from '../../lib/errors.js'
import { snapshotStateJson } from '../../lib/snapshot.js'
import { isProjectId } from '../../lib/ids.js'
import type { MemoryOperationLog } from './operation-log.js'

/**
 * The embedded snapshot store: each project's newest snapshot is held by the
 * memory op log beside the project's ops (MemoryOperationLog.storeSnapshot),
 * so the check against the log's epoch and head is one synchronous step, the
 * snapshot counts in the log's memory budget, and it is forgotten with the
 * project (idle expiry, budget, close). Its state is kept as JSON text:
 * callers never share an object with the store.
 */
export class MemorySnapshotStore implements SnapshotStore {
  readonly #log: MemoryOperationLog
  #closed = false

  constructor (log: MemoryOperationLog) {
    this.#log = log
  }

  async get (project: string): Promise<Snapshot | null> {
    this.#assertOpen()
    if (!isProjectId(project)) throw new TypeError(`invalid project id ${JSON.stringify(project)}`)
    const found = this.#log.snapshotOf(project)
    if (found === null) return null
    return { project, epoch: found.epoch, seq: found.snapshot.seq, state: JSON.parse(found.snapshot.json) as unknown }
  }

  async put (snapshot: Snapshot): Promise<PutResult> {
    this.#assertOpen()
    const json = snapshotStateJson(snapshot)
    return this.#log.storeSnapshot(snapshot.project, snapshot.epoch, snapshot.seq, json)
  }

  /** Marks the store closed; the snapshots go with the log when it is closed. */
  async close (): Promise<void> {
    this.#closed = true
  }

  #assertOpen (): void {
    if (this.#closed) throw new ClosedError('snapshot store')
  }
}

export function createMemorySnapshotStore (log: MemoryOperationLog): MemorySnapshotStore {
  return new MemorySnapshotStore(log)
}
