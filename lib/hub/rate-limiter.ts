import { rateLimited, type FlowError } from '../errors.js'

/**
 * A token bucket per connection: `rate` tokens per second, at most `burst`.
 * Small on purpose (three numbers): it lives on every connection.
 */
export class TokenBucket {
  #tokens: number
  #last: number
  readonly #rate: number
  readonly #burst: number

  constructor (rate: number, burst: number, now: number) {
    this.#rate = rate / 1000
    this.#burst = burst
    this.#tokens = burst
    this.#last = now
  }

  /** Takes one token; false when the bucket is empty (the frame is dropped). */
  take (now: number): boolean {
    const elapsed = now - this.#last
    if (elapsed > 0) {
      this.#tokens = Math.min(this.#burst, this.#tokens + elapsed * this.#rate)
      this.#last = now
    }
    if (this.#tokens < 1) return false
    this.#tokens -= 1
    return true
  }
}

/**
 * Tells sustained abuse from a burst: a connection whose frames keep being
 * dropped, with no quiet second between drops, for `windowMs`.
 */
export class AbuseTracker {
  #streakStart = 0
  #lastDrop = -Infinity
  readonly #windowMs: number

  constructor (windowMs: number) {
    this.#windowMs = windowMs
  }

  /** Records a dropped frame; true when the connection should be closed. */
  drop (now: number): boolean {
    if (now - this.#lastDrop > 1000) this.#streakStart = now
    this.#lastDrop = now
    return now - this.#streakStart >= this.#windowMs
  }
}

/**
 * The bytes of history a connection may be sent per second by its replays
 * (join with `since`, `sync`): a bucket of one second's worth that refills
 * continuously. A replay takes what a page cost and, when the bucket is
 * empty, waits the time it takes to refill; one connection's replays never
 * take more than the budget, however many it asks for.
 */
export class ReplayBudget {
  readonly #rate: number
  #available: number
  #last: number

  constructor (bytesPerSecond: number, now: number) {
    this.#rate = bytesPerSecond / 1000
    this.#available = bytesPerSecond
    this.#last = now
  }

  /** Takes `bytes` sent; resolves how long (ms) to wait before sending more (0: at once). */
  spend (bytes: number, now: number): number {
    const elapsed = now - this.#last
    if (elapsed > 0) {
      this.#available = Math.min(this.#rate * 1000, this.#available + elapsed * this.#rate)
      this.#last = now
    }
    this.#available -= bytes
    return this.#available >= 0 ? 0 : Math.ceil(-this.#available / this.#rate)
  }

  /** Whether the bucket is full at `now` (nothing spent in the last second): it need not be remembered. */
  full (now: number): boolean {
    this.spend(0, now)
    return this.#available >= this.#rate * 1000
  }
}

/** Identities whose creation budget is remembered at most (the longest idle are forgotten first). */
const MAX_IDENTITIES = 100_000

/**
 * How many new projects each identity may create: `perMinute`, refilled
 * continuously, in bursts of at most `perMinute`. A project is created by
 * its first op or join; creating one past the budget is refused. An
 * identity with a full budget is forgotten (it costs nothing to remember).
 */
export class CreationLimiter {
  readonly #perMinute: number
  readonly #budgets = new Map<string, { tokens: number, last: number }>()

  constructor (perMinute: number) {
    this.#perMinute = perMinute
  }

  #budget (identity: string, now: number): { tokens: number, last: number } {
    const b = this.#budgets.get(identity)
    if (b === undefined) return { tokens: this.#perMinute, last: now }
    b.tokens = Math.min(this.#perMinute, b.tokens + (now - b.last) * this.#perMinute / 60_000)
    b.last = now
    return b
  }

  /** Whether `identity` may create a project now. */
  allows (identity: string, now: number): boolean {
    return this.#budget(identity, now).tokens >= 1
  }

  /** `identity` created a project. */
  created (identity: string, now: number): void {
    const b = this.#budget(identity, now)
    b.tokens -= 1
    this.#budgets.delete(identity)
    if (b.tokens < this.#perMinute) this.#budgets.set(identity, b)
    if (this.#budgets.size > MAX_IDENTITIES) this.#budgets.delete(this.#budgets.keys().next().value as string)
  }
}

/** The refusal of an op or join that would create a project past the identity's budget. */
export function creationRefused (project: string): FlowError {
  return rateLimited(`too many new projects: ${project} does not exist yet; try again later`)
}
