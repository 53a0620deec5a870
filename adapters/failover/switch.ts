import { RecoveryError } from '../../lib/errors.js'
import type { Watchdog } from '../../lib/watchdog.js'

/** What a failover decorator needs of the circuit breaker (lib/breaker.ts). */
export interface Breaker {
  readonly state: 'closed' | 'open' | 'half-open'
  trip (reason?: unknown): void
  success (): void
  on (event: 'open', listener: (reason: unknown) => void): unknown
  on (event: 'close', listener: () => void): unknown
}

/** Where a decorated port is served from. */
export type Serving = 'primary' | 'fallback'

/** What the decorators of one failure domain (one Redis connection) share. */
export interface SwitchOptions {
  /** the breaker of the connection (one per failure domain) */
  readonly breaker: Breaker
  /** the connection's watchdog: a reply to any port shows the dependency is there */
  readonly watchdog: Watchdog
  /** how long one call of a re-sync may take (ms) */
  readonly timeoutMs: number
  /** whether an error means the dependency is away (fall back) rather than a bad call (rethrow) */
  readonly isOutage: (err: unknown) => boolean
}

/**
 * The switch of one decorated port: it serves from its primary while the
 * breaker is closed, and from its fallback from the moment the breaker opens
 * (tripped by this port's own failures or by another port on the same
 * connection) until the decorator's re-sync has moved what the fallback took
 * back to the primary.
 */
export class PortSwitch {
  readonly options: SwitchOptions
  readonly #enter: () => void
  readonly #leave: () => void
  #serving: Serving = 'primary'

  /** `enter` prepares the fallback state (a fresh memory adapter, a buffer); `leave` frees it once back. */
  constructor (options: SwitchOptions, enter: () => void, leave: () => void) {
    this.options = options
    this.#enter = enter
    this.#leave = leave
    options.breaker.on('open', () => { this.fallBack() })
    // A port that fell back while the breaker was recovering must go through a recovery of its own.
    options.breaker.on('close', () => { if (this.#serving === 'fallback') options.breaker.trip(new RecoveryError('fell back during recovery')) })
    // Created on an open circuit: start on the fallback (made on first use).
    if (options.breaker.state !== 'closed') this.#serving = 'fallback'
  }

  get serving (): Serving {
    return this.#serving
  }

  /** Switches to the fallback (idempotent). */
  fallBack (): void {
    if (this.#serving === 'fallback') return
    this.#serving = 'fallback'
    this.#enter()
  }

  /** Switches back to the primary; the caller has re-synced. */
  backToPrimary (): void {
    if (this.#serving === 'primary') return
    this.#serving = 'primary'
    this.#leave()
  }

  /**
   * Runs `primary` when on the primary, under the watchdog; on an outage
   * error trips the breaker and runs `fallback` instead. Errors that are not
   * outages (a bad call) reject as they are.
   */
  async call<T> (what: string, primary: () => Promise<T>, fallback: () => Promise<T>): Promise<T> {
    if (this.#serving === 'fallback') return await fallback()
    const { breaker, watchdog, isOutage } = this.options
    try {
      const result = await watchdog.watch(primary(), what)
      breaker.success()
      return result
    } catch (err) {
      if (!isOutage(err)) throw err
      breaker.trip(err)
      this.fallBack()
      return await fallback()
    }
  }
}

/** What the failover module keeps of each decorator, beyond its port: where it serves from, and its re-sync. */
export interface PortControl {
  readonly serving: Serving
  /** Moves what the fallback took to the primary, then switches back; rejects (and stays on the fallback) when the primary fails. */
  resync (): Promise<void>
}
