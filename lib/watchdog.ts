/**
 * Telling a dependency that stopped answering from one that is only slow to
 * be heard: the watchdog the failover decorators watch their calls with, and
 * a plain timeout for the one-off calls of a re-sync. Nothing here knows
 * Redis; adapters/redis/connection-health.ts gives each Redis connection one.
 */
import { TimeoutError } from './errors.js'

export { TimeoutError }

/** Resolves like `promise`, or rejects with a TimeoutError after `ms`. */
export async function withTimeout<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => { reject(new TimeoutError(what, ms)) }, ms)
        timer.unref()
      })
    ])
  } finally {
    clearTimeout(timer)
  }
}

/** A call the watchdog waits on. */
interface Watched {
  readonly start: number
  readonly what: string
  readonly reject: (err: Error) => void
}

/**
 * Tells a Redis that stopped answering from one that is only slow to be
 * heard. A call fails with a TimeoutError after `timeoutMs` only when no call
 * on the connection has settled for that long: replies that keep arriving
 * mean Redis is there and the wait is this process's own backlog (an event
 * loop saturated by load, a GC pause), which falling back would only make
 * worse. An instance whose event loop was blocked (its timer fired late by
 * more than a check interval: SIGSTOP, a stalled VM, a long synchronous
 * task) gives Redis a full timeout from the moment it resumes: the commands
 * it queued may only have been written then. And the verdict is taken after
 * the event loop has read what is waiting on its sockets.
 *
 * A call still fails after `hardMs` even while others settle (a reply that
 * never comes on a connection that otherwise works): by default ten times
 * `timeoutMs` but at least 30 s, so that a deep backlog of an overloaded
 * instance (bounded by FLOW_MAX_OPS_IN_FLIGHT) is not taken for it.
 *
 * One watchdog serves every port on a connection; it keeps one timer, not
 * one per call.
 */
export class Watchdog {
  readonly timeoutMs: number
  readonly #checkMs: number
  readonly #hardMs: number
  readonly #watched = new Set<Watched>()
  #lastSettled = performance.now()
  /** when a blocked event loop was last seen resuming */
  #resumed = 0
  /** when the armed timer is due */
  #due = 0
  #timer: NodeJS.Timeout | undefined
  #judging = false

  constructor (timeoutMs: number, options: { readonly hardMs?: number } = {}) {
    this.timeoutMs = timeoutMs
    this.#checkMs = Math.max(5, Math.floor(timeoutMs / 4))
    this.#hardMs = options.hardMs ?? Math.max(timeoutMs * 10, 30_000)
  }

  /** Calls waited on now. */
  get pending (): number {
    return this.#watched.size
  }

  /** Settles like `promise`, or rejects with a TimeoutError once the connection is judged unresponsive. */
  async watch<T> (promise: Promise<T>, what: string): Promise<T> {
    return await new Promise<T>((resolve, reject) => {
      const entry: Watched = { start: performance.now(), what, reject }
      this.#watched.add(entry)
      this.#arm()
      promise.then((value) => {
        this.#settle(entry)
        resolve(value)
      }, (err: unknown) => {
        this.#settle(entry)
        reject(err instanceof Error ? err : new Error(String(err), { cause: err }))
      })
    })
  }

  /** Something came from Redis on this connection (a Pub/Sub message): it is there. */
  alive (): void {
    this.#lastSettled = performance.now()
  }

  #settle (entry: Watched): void {
    this.#lastSettled = performance.now()
    this.#watched.delete(entry)
  }

  #arm (): void {
    if (this.#timer !== undefined || this.#judging) return
    this.#due = performance.now() + this.#checkMs
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.#check()
    }, this.#checkMs)
    this.#timer.unref()
  }

  /** Whether nothing has settled for `timeoutMs` while the oldest call waits. */
  #silent (now: number): boolean {
    const oldest = this.#watched.values().next().value
    if (oldest === undefined) return false
    return now - Math.max(oldest.start, this.#lastSettled, this.#resumed) >= this.timeoutMs
  }

  /** Whether a call is due: the connection is silent, or the oldest call is past the hard limit. */
  #overdue (now: number): boolean {
    const oldest = this.#watched.values().next().value
    if (oldest === undefined) return false
    return this.#silent(now) || now - oldest.start >= this.#hardMs
  }

  #check (): void {
    if (this.#watched.size === 0) return
    const now = performance.now()
    if (now - this.#due > this.#checkMs) this.#resumed = now
    if (!this.#overdue(now)) {
      this.#arm()
      return
    }
    // Timers run before the poll phase: let it read the replies waiting on
    // the socket first, then judge.
    this.#judging = true
    setImmediate(() => {
      this.#judging = false
      const now = performance.now()
      const silent = this.#silent(now)
      for (const entry of [...this.#watched]) {
        const waited = now - entry.start
        if (waited < (silent ? this.timeoutMs : this.#hardMs)) continue
        this.#watched.delete(entry)
        entry.reject(new TimeoutError(entry.what, silent ? this.timeoutMs : this.#hardMs))
      }
      if (this.#watched.size > 0) this.#arm()
    })
  }
}
