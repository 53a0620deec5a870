import { EventEmitter } from 'node:events'
import { ProbeTimeoutError } from './errors.js'

/**
 * Where a circuit is: `closed` (calls flow, failures are counted), `open`
 * (the dependency is considered down; a probe is scheduled) or `half-open`
 * (one probe, then the optional recover step, is running and decides).
 */
export type CircuitState = 'closed' | 'open' | 'half-open'

/**
 * The time source and timers a breaker uses; injectable so tests can drive
 * time by hand. `now()` is in milliseconds and must not go backwards.
 * `clearTimeout` receives exactly a handle `setTimeout` returned, possibly one
 * that has already fired, and must then do nothing.
 */
export interface Clock {
  now (): number
  setTimeout (fn: () => void, ms: number): unknown
  clearTimeout (handle: unknown): void
}

/**
 * `Date.now` and the global timers. Every timer is unref'd, so a breaker's
 * pending probe or probe timeout never keeps the process alive.
 */
export const systemClock: Clock = {
  now (): number {
    return Date.now()
  },
  setTimeout (fn: () => void, ms: number): unknown {
    const handle = setTimeout(fn, ms)
    handle.unref()
    return handle
  },
  clearTimeout (handle: unknown): void {
    clearTimeout(handle as ReturnType<typeof setTimeout>)
  }
}

/** How a {@link CircuitBreaker} probes, recovers and backs off. */
export interface CircuitBreakerOptions {
  /**
   * The active probe: resolves when the dependency works end to end, rejects
   * otherwise. A synchronous throw counts as a rejection. Never called twice at
   * once.
   */
  readonly probe: () => Promise<void>
  /**
   * Run after a successful probe, before the circuit closes (e.g. re-sync
   * data); a rejection keeps the circuit open and is reported like a failed
   * probe. Not called when the probe succeeded only after its timeout.
   */
  readonly recover?: () => Promise<void>
  /** Consecutive failures that open a closed circuit (default 1; an integer >= 1). */
  readonly failureThreshold?: number
  /**
   * Delay before the first probe after opening (default 250 ms); doubles after
   * each failed probe up to `maxProbeDelayMs` (default 5,000 ms, not below
   * `probeDelayMs`); back to the base after closing.
   */
  readonly probeDelayMs?: number
  /** Cap of the probe delay's doubling (default 5,000 ms). */
  readonly maxProbeDelayMs?: number
  /**
   * Longest a probe + recover may take before the attempt counts as failed
   * (default 5,000 ms); their late result is then ignored.
   */
  readonly probeTimeoutMs?: number
  /** Time source and timers (default {@link systemClock}). */
  readonly clock?: Clock
}

/**
 * A breaker's events and their arguments. Listeners run synchronously after
 * the state they announce is in place (`breaker.state` already says so) and
 * must not throw.
 *
 * - `open`: closed → open, with the failure or trip reason; once per outage.
 * - `half-open`: a probe is about to run.
 * - `close`: probe and recover succeeded; the circuit is closed again.
 * - `probe-failed`: half-open → open, with the probe's, recover's or the
 *   timeout's reason; no second `open` is emitted.
 */
export interface BreakerEvents {
  open: [reason: unknown]
  'half-open': []
  close: []
  'probe-failed': [reason: unknown]
}

/** One probe + recover run; `done` once it settled, timed out or was disposed. */
interface Attempt {
  done: boolean
  timer: { readonly handle: unknown } | undefined
}

/** Code of the reason a timed-out probe fails with (`error.code`). */

function positive (name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${name} must be a positive number, got ${value}`)
  return value
}

/**
 * A circuit breaker with an active probe, for a dependency such as a Redis
 * connection.
 *
 * closed → (`failureThreshold` consecutive `failure()`s, or `trip()`) → open:
 * emits `open` with the reason and schedules a probe after the current delay.
 * When that timer fires (or `probeNow()` is called) → half-open: emits
 * `half-open`, runs `probe` then `recover`, bounded together by
 * `probeTimeoutMs`. Success → closed: emits `close`, resets the delay and the
 * failure count. Failure → open again: emits `probe-failed` with the reason
 * (not a second `open`), doubles the delay up to `maxProbeDelayMs` and
 * schedules the next probe.
 *
 * Only one probe runs at a time; while half-open, `failure()` and `trip()` do
 * not change the state (the probe decides). Rejections of `probe` and
 * `recover`, late ones included, are always handled: none escapes as an
 * unhandled rejection. After `dispose()` nothing changes and nothing is
 * emitted.
 */
export class CircuitBreaker extends EventEmitter<BreakerEvents> {
  readonly #probe: () => Promise<void>
  readonly #recover: (() => Promise<void>) | undefined
  readonly #threshold: number
  readonly #baseDelayMs: number
  readonly #maxDelayMs: number
  readonly #timeoutMs: number
  readonly #clock: Clock

  #state: CircuitState = 'closed'
  #since: number
  /** start of the current not-closed stretch (valid while not closed) */
  #degradedSince = 0
  /** ms of the finished not-closed stretches */
  #degradedTotal = 0
  #opens = 0
  #closes = 0
  #failures = 0
  #delayMs: number
  /** the pending probe timer while open */
  #wait: { readonly handle: unknown } | undefined
  /** the running probe while half-open */
  #attempt: Attempt | undefined
  #disposedAt: number | undefined

  /**
   * Starts closed, with `since` at the clock's current time. Throws a
   * `TypeError` when `probe` (or a given `recover`) is not a function and a
   * `RangeError` for a threshold that is not an integer >= 1, a non-positive
   * delay or timeout, or `maxProbeDelayMs` below `probeDelayMs`.
   */
  constructor (options: CircuitBreakerOptions) {
    super()
    if (typeof options.probe !== 'function') throw new TypeError('probe must be a function')
    if (options.recover !== undefined && typeof options.recover !== 'function') {
      throw new TypeError('recover must be a function')
    }
    const threshold = options.failureThreshold ?? 1
    if (!Number.isInteger(threshold) || threshold < 1) {
      throw new RangeError(`failureThreshold must be an integer >= 1, got ${threshold}`)
    }
    const base = positive('probeDelayMs', options.probeDelayMs ?? 250)
    const max = positive('maxProbeDelayMs', options.maxProbeDelayMs ?? Math.max(5_000, base))
    if (max < base) throw new RangeError(`maxProbeDelayMs (${max}) must not be below probeDelayMs (${base})`)
    this.#probe = options.probe
    this.#recover = options.recover
    this.#threshold = threshold
    this.#baseDelayMs = base
    this.#maxDelayMs = max
    this.#delayMs = base
    this.#timeoutMs = positive('probeTimeoutMs', options.probeTimeoutMs ?? 5_000)
    this.#clock = options.clock ?? systemClock
    this.#since = this.#clock.now()
  }

  /** The current state. */
  get state (): CircuitState {
    return this.#state
  }

  /** Clock time of the last state change (construction time until the first). */
  get since (): number {
    return this.#since
  }

  /**
   * Total ms spent not closed (open or half-open), including the current
   * stretch up to now. Frozen at the time of `dispose()`.
   */
  get degradedMs (): number {
    if (this.#state === 'closed') return this.#degradedTotal
    const end = this.#disposedAt ?? this.#clock.now()
    return this.#degradedTotal + end - this.#degradedSince
  }

  /** Number of closed → open transitions (`open` events); a failed probe does not add one. */
  get opens (): number {
    return this.#opens
  }

  /** Number of half-open → closed transitions (`close` events). */
  get closes (): number {
    return this.#closes
  }

  /**
   * A failed call: counts towards `failureThreshold` while closed and opens
   * the circuit with `reason` when the count reaches it; ignored while open or
   * half-open, and after `dispose()`.
   */
  failure (reason?: unknown): void {
    if (this.#disposedAt !== undefined || this.#state !== 'closed') return
    this.#failures++
    if (this.#failures >= this.#threshold) this.#open(reason)
  }

  /**
   * A successful call: resets the consecutive-failure count. It never closes
   * an open circuit: only a probe does.
   */
  success (): void {
    this.#failures = 0
  }

  /**
   * Opens at once whatever the failure count (e.g. the connection dropped);
   * no-op when already open or half-open, and after `dispose()`.
   */
  trip (reason?: unknown): void {
    if (this.#disposedAt !== undefined || this.#state !== 'closed') return
    this.#open(reason)
  }

  /**
   * Runs the probe now when open, cancelling the scheduled one (e.g. when the
   * connection says it is back); no-op when closed, while a probe runs
   * (half-open), and after `dispose()`. A failure still doubles the delay.
   */
  probeNow (): void {
    this.#startProbe()
  }

  /**
   * Stops the probe timer and the probe timeout; a running probe's result is
   * ignored (and `recover` is not started). No events afterwards; the state
   * stays as it was. Idempotent.
   */
  dispose (): void {
    if (this.#disposedAt !== undefined) return
    this.#disposedAt = this.#clock.now()
    this.#clearWait()
    const attempt = this.#attempt
    if (attempt !== undefined) {
      attempt.done = true
      this.#clearAttemptTimer(attempt)
      this.#attempt = undefined
    }
  }

  #open (reason: unknown): void {
    const now = this.#clock.now()
    this.#state = 'open'
    this.#since = now
    this.#degradedSince = now
    this.#opens++
    this.#schedule()
    this.emit('open', reason)
  }

  #schedule (): void {
    this.#clearWait()
    const wait = {
      handle: this.#clock.setTimeout(() => {
        if (this.#wait !== wait) return
        this.#wait = undefined
        this.#startProbe()
      }, this.#delayMs)
    }
    this.#wait = wait
  }

  #clearWait (): void {
    if (this.#wait === undefined) return
    this.#clock.clearTimeout(this.#wait.handle)
    this.#wait = undefined
  }

  #clearAttemptTimer (attempt: Attempt): void {
    if (attempt.timer === undefined) return
    this.#clock.clearTimeout(attempt.timer.handle)
    attempt.timer = undefined
  }

  #startProbe (): void {
    if (this.#disposedAt !== undefined || this.#state !== 'open') return
    this.#clearWait()
    const attempt: Attempt = { done: false, timer: undefined }
    this.#attempt = attempt
    this.#state = 'half-open'
    this.#since = this.#clock.now()
    this.emit('half-open')
    // A 'half-open' listener may have disposed the breaker.
    if (attempt.done) return
    attempt.timer = {
      handle: this.#clock.setTimeout(() => {
        attempt.timer = undefined
        const error = new ProbeTimeoutError(this.#timeoutMs)
        this.#settle(attempt, false, error)
      }, this.#timeoutMs)
    }
    this.#run(attempt).then(
      () => { this.#settle(attempt, true, undefined) },
      (reason: unknown) => { this.#settle(attempt, false, reason) }
    )
  }

  async #run (attempt: Attempt): Promise<void> {
    await this.#probe()
    // Timed out or disposed meanwhile: the attempt already failed, do not recover.
    if (attempt.done || this.#recover === undefined) return
    await this.#recover()
  }

  #settle (attempt: Attempt, ok: boolean, reason: unknown): void {
    if (attempt.done) return
    attempt.done = true
    this.#clearAttemptTimer(attempt)
    this.#attempt = undefined
    const now = this.#clock.now()
    this.#since = now
    if (ok) {
      this.#degradedTotal += now - this.#degradedSince
      this.#state = 'closed'
      this.#closes++
      this.#failures = 0
      this.#delayMs = this.#baseDelayMs
      this.emit('close')
    } else {
      this.#state = 'open'
      this.#delayMs = Math.min(this.#delayMs * 2, this.#maxDelayMs)
      this.#schedule()
      this.emit('probe-failed', reason)
    }
  }
}
