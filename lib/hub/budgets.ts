import { ReplayBudget } from './rate-limiter.js'

/** Keys whose budget is remembered at most (the ones remembered longest are forgotten first). */
const MAX_KEYS = 100_000

/**
 * Bytes per second for each identity (a user, or an address when clients
 * carry no credential), shared by all of its connections and requests: a
 * bucket of one second's worth per key that refills continuously (the
 * bucket a connection's replays use, {@link ReplayBudget}). Whatever
 * is spent is taken, even past empty (a page or a frame is not split): the
 * debt is the wait before the key may spend again. A key whose bucket is
 * full is forgotten (it costs nothing to remember), so the map holds only
 * the identities that spent in the last second or so.
 *
 * One identity opening many connections gets what one connection of it
 * would get: the per-connection bounds (frames per second, replay bytes per
 * second) cannot be multiplied by opening more.
 */
export class ByteBudgets {
  readonly #bytesPerSecond: number
  readonly #spent = new Map<string, ReplayBudget>()

  constructor (bytesPerSecond: number) {
    this.#bytesPerSecond = bytesPerSecond
  }

  /** How long (ms) `key` must wait before it may spend again: 0 when it may now. */
  wait (key: string, now: number): number {
    const bucket = this.#spent.get(key)
    if (bucket === undefined) return 0
    if (bucket.full(now)) {
      this.#spent.delete(key)
      return 0
    }
    return bucket.spend(0, now)
  }

  /** `key` spent `bytes`; returns how long (ms) it must wait before it may spend again (0: at once). */
  spend (key: string, bytes: number, now: number): number {
    if (bytes <= 0) return this.wait(key, now)
    const bucket = this.#spent.get(key) ?? new ReplayBudget(this.#bytesPerSecond, now)
    // Last in the map's order: the keys remembered longest are forgotten first.
    this.#spent.delete(key)
    this.#spent.set(key, bucket)
    if (this.#spent.size > MAX_KEYS) this.#spent.delete(this.#spent.keys().next().value as string)
    return bucket.spend(bytes, now)
  }

  /** Keys remembered now (those that spent within about a second). */
  get size (): number { return this.#spent.size }
}

/**
 * The budgets one identity shares across its connections and HTTP
 * requests: the history it is sent (replays and pages) and the bytes it
 * sends (frames, posted ops, snapshots).
 */
export interface IdentityBudgets {
  readonly reads: ByteBudgets
  readonly writes: ByteBudgets
}
