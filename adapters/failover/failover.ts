import { isOutage, Watchdog } from './outage.js'

/** What a failover wrapper needs of the circuit breaker (lib/breaker.ts). */
export interface Breaker {
  readonly state: 'closed' | 'open' | 'half-open'
  trip (reason?: unknown): void
  success (): void
  on (event: 'open' | 'close', listener: () => void): unknown
}

export interface FailoverOptions {
  /** the breaker of the Redis connection this port uses (one per failure domain) */
  readonly breaker: Breaker
  /**
   * how long Redis may stay silent, with a call waiting, before the port
   * falls back (ms)
   */
  readonly timeoutMs: number
  /**
   * the watchdog of the connection (share one among the ports of a
   * connection: a reply to any of them shows Redis is there); default: one
   * of this port's own
   */
  readonly watchdog?: Watchdog
  /** told when the port switches: 'fallback' at once on an outage, 'primary' after its re-sync */
  readonly onSwitch?: (to: 'primary' | 'fallback') => void
}

/**
 * The switch shared by the three failover wrappers: a port serves from its
 * primary (Redis) while the breaker is closed, and from its memory fallback
 * from the moment the breaker opens (tripped by this port's own failures or
 * by another port on the same connection) until `resync` has moved what the
 * fallback took back to the primary.
 */
export abstract class Failover {
  protected readonly breaker: Breaker
  protected readonly timeoutMs: number
  protected readonly watchdog: Watchdog
  readonly #onSwitch: ((to: 'primary' | 'fallback') => void) | undefined
  #mode: 'primary' | 'fallback' = 'primary'

  constructor (options: FailoverOptions) {
    this.breaker = options.breaker
    this.timeoutMs = options.timeoutMs
    this.watchdog = options.watchdog ?? new Watchdog(options.timeoutMs)
    this.#onSwitch = options.onSwitch
    options.breaker.on('open', () => { this.fallBack() })
    // A port that fell back while the breaker was recovering must go through a recovery of its own.
    options.breaker.on('close', () => { if (this.#mode === 'fallback') this.breaker.trip(new Error('fell back during recovery')) })
    // Created on an open circuit: start on the fallback. Subclass fields are not
    // initialised yet here, so the fallback state is made lazily on first use.
    if (options.breaker.state !== 'closed') this.#mode = 'fallback'
  }

  get mode (): 'primary' | 'fallback' {
    return this.#mode
  }

  /** Switches to the fallback (idempotent). */
  protected fallBack (): void {
    if (this.#mode === 'fallback') return
    this.#mode = 'fallback'
    this.enterFallback()
    this.#onSwitch?.('fallback')
  }

  /** Switches back to the primary; the caller has re-synced. */
  protected backToPrimary (): void {
    if (this.#mode === 'primary') return
    this.#mode = 'primary'
    this.leaveFallback()
    this.#onSwitch?.('primary')
  }

  /** Prepares the fallback state (a fresh memory adapter, an outage buffer). */
  protected abstract enterFallback (): void
  /** Frees the fallback state once back on the primary. */
  protected abstract leaveFallback (): void

  /**
   * Moves what the fallback took to the primary, then switches back. Rejects
   * (and stays on the fallback) when the primary fails meanwhile.
   */
  abstract resync (): Promise<void>

  /**
   * Runs `primary` when on the primary, under the watchdog; on an
   * outage error trips the breaker and runs `fallback` instead. Errors that
   * are not outages (a bad call) reject as they are.
   */
  protected async call<T> (what: string, primary: () => Promise<T>, fallback: () => Promise<T>): Promise<T> {
    if (this.#mode === 'fallback') return await fallback()
    try {
      const result = await this.watchdog.watch(primary(), what)
      this.breaker.success()
      return result
    } catch (err) {
      if (!isOutage(err)) throw err
      this.breaker.trip(err)
      this.fallBack()
      return await fallback()
    }
  }
}
