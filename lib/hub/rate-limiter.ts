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
