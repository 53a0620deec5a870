/**
 * Reconnection delays: exponential backoff with full jitter (the delay is
 * drawn uniformly below a ceiling that doubles with each attempt), reset to
 * the minimum once a connection has stayed up long enough.
 */

export interface BackoffOptions {
  /** ceiling of the first delay, in ms */
  readonly minDelayMs: number
  /** largest ceiling, in ms */
  readonly maxDelayMs: number
  /** a connection open this long counts as stable and resets the attempts, in ms */
  readonly stableAfterMs: number
}

export const DEFAULT_BACKOFF: BackoffOptions = { minDelayMs: 250, maxDelayMs: 10_000, stableAfterMs: 5000 }

/** The ceiling of attempt `attempt` (0-based): min(max, min · 2^attempt). */
export function backoffCeiling (attempt: number, options: Pick<BackoffOptions, 'minDelayMs' | 'maxDelayMs'>): number {
  // 2^31 is far past any useful ceiling; cap the exponent so the math stays finite.
  return Math.min(options.maxDelayMs, options.minDelayMs * 2 ** Math.min(Math.max(0, attempt), 31))
}

/** The delay of attempt `attempt`: uniform in [0, ceiling), "full jitter". */
export function backoffDelay (attempt: number, options: Pick<BackoffOptions, 'minDelayMs' | 'maxDelayMs'>, random: () => number = Math.random): number {
  return Math.floor(random() * backoffCeiling(attempt, options))
}

/** Validates and completes reconnect options. Throws a RangeError naming the bad one. */
export function backoffOptions (options: Partial<BackoffOptions> = {}): BackoffOptions {
  const merged = { ...DEFAULT_BACKOFF, ...stripUndefined(options) }
  for (const [name, value] of Object.entries(merged)) {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new RangeError(`reconnect.${name} must be a finite number >= 0, got ${String(value)}`)
  }
  if (merged.maxDelayMs < merged.minDelayMs) throw new RangeError('reconnect.maxDelayMs must be >= reconnect.minDelayMs')
  return merged
}

function stripUndefined<T extends object> (value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>
}

/** The attempt counter of one client. */
export class Backoff {
  readonly options: BackoffOptions
  readonly #random: () => number
  readonly #now: () => number
  #attempt = 0
  #openedAt: number | undefined

  constructor (options: BackoffOptions, random: () => number = Math.random, now: () => number = Date.now) {
    this.options = options
    this.#random = random
    this.#now = now
  }

  /** Attempts since the last stable connection. */
  get attempt (): number { return this.#attempt }

  /** A connection opened. */
  opened (): void {
    this.#openedAt = this.#now()
  }

  /** The current connection has been open for `stableAfterMs`. */
  get stable (): boolean {
    return this.#openedAt !== undefined && this.#now() - this.#openedAt >= this.options.stableAfterMs
  }

  /**
   * A connection ended or an attempt failed: the delay before the next
   * attempt. A connection that had been open for `stableAfterMs` starts the
   * count again from the first attempt.
   */
  next (): { attempt: number, delayMs: number } {
    if (this.stable) this.#attempt = 0
    this.#openedAt = undefined
    const attempt = this.#attempt
    this.#attempt = Math.min(this.#attempt + 1, 64)
    return { attempt, delayMs: backoffDelay(attempt, this.options, this.#random) }
  }

  /** Starts again from the first attempt (after close(), or a deliberate reconnect). */
  reset (): void {
    this.#attempt = 0
    this.#openedAt = undefined
  }
}
