import type { PutResult, Snapshot, SnapshotStore } from '../../ports/snapshot-store.js'
import { PortSwitch, type PortControl, type SwitchOptions } from './switch.js'

export interface FailoverSnapshotStoreOptions extends SwitchOptions {
  readonly primary: SnapshotStore
  /**
   * The snapshot store of the op log's fallback in use now (the snapshots of
   * the outage's epoch live beside its ops), or null when the op log serves
   * from its primary again (the outage's epoch is over): called on each call
   * made while this port serves from its fallback.
   */
  readonly fallback: () => SnapshotStore | null
}

/** The snapshot store decorator's control: where it serves from, and what the outage's snapshots came to. */
export interface SnapshotStoreControl extends PortControl {
  /** how many snapshots the fallback stored during the last outage; read and cleared by the caller at recovery */
  takeDiscarded (): number
}

/**
 * The snapshot store with a fallback. During an outage snapshots are
 * checked against and stored beside the op log's fallback (the outage's own
 * epoch), so joiners of that epoch get them. At recovery they are
 * **discarded**, not written back: their seqs are positions of the outage's
 * epoch, which ends there (the op log moves the outage's ops into the shared
 * log under new seqs), so no snapshot of it names a position of the shared
 * log. The shared log keeps the snapshot it had before the outage, and the
 * next one (the host reducer's, or a client's) covers the outage's ops. The
 * count discarded is reported at recovery (plugins/recovery.ts logs it).
 */
export class FailoverSnapshotStore implements SnapshotStore {
  readonly #switch: PortSwitch
  readonly #primary: SnapshotStore
  readonly #fallback: () => SnapshotStore | null
  #stored = 0

  static create (options: FailoverSnapshotStoreOptions): { port: FailoverSnapshotStore, control: SnapshotStoreControl } {
    const store = new FailoverSnapshotStore(options)
    const control: SnapshotStoreControl = {
      get serving () { return store.#switch.serving },
      // Nothing to move: the op log's re-sync (before this one) decides when the outage's epoch ends.
      resync: async () => { store.#switch.backToPrimary() },
      takeDiscarded: () => {
        const n = store.#stored
        store.#stored = 0
        return n
      }
    }
    return { port: store, control }
  }

  private constructor (options: FailoverSnapshotStoreOptions) {
    this.#primary = options.primary
    this.#fallback = options.fallback
    this.#switch = new PortSwitch(options, () => { this.#stored = 0 }, () => {})
  }

  async get (project: string): Promise<Snapshot | null> {
    return await this.#switch.call('snapshot get', async () => await this.#primary.get(project),
      async () => await this.#fallback()?.get(project) ?? null)
  }

  async put (snapshot: Snapshot): Promise<PutResult> {
    return await this.#switch.call('snapshot put', async () => await this.#primary.put(snapshot), async () => {
      // Between the op log's switch back and this port's: the outage's epoch is over.
      const result = await this.#fallback()?.put(snapshot) ?? { stored: false, reason: 'epoch' }
      if (result.stored) this.#stored++
      return result
    })
  }

  async close (): Promise<void> {}
}
