/**
 * Generic helpers to wait in tests without fixed sleeps: await the event
 * itself ({@link withDeadline}, {@link nextEvent}, {@link Recorder}), or poll
 * a condition until a deadline ({@link waitFor}). Every wait has a deadline
 * and fails with a {@link DeadlineError} that says what it was waiting for.
 * This is the one home of generic waiting; protocol.ts keeps only the waits
 * that watch a test client's frames.
 */
import { once, type EventEmitter } from 'node:events'
import { setTimeout as delay } from 'node:timers/promises'
import { inspect } from 'node:util'

/** Default deadline of the helpers below, in ms. */
export const DEFAULT_TIMEOUT_MS = 2000

/** A promise with its resolve and reject functions exposed. */
export interface Deferred<T> {
  readonly promise: Promise<T>
  readonly resolve: (value: T) => void
  readonly reject: (reason: unknown) => void
}

export function deferred<T = void> (): Deferred<T> {
  let resolve!: (value: T) => void
  let reject!: (reason: unknown) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

/** Rejection of {@link withDeadline}, {@link waitFor} and {@link Recorder.until}. */
export class DeadlineError extends Error {
  constructor (what: string, timeoutMs: number, detail?: string, options?: ErrorOptions) {
    super(`timed out after ${timeoutMs} ms waiting for ${what}` + (detail === undefined ? '' : ` (${detail})`), options)
    this.name = 'DeadlineError'
  }
}

/**
 * Settles like `promise`, or rejects with a {@link DeadlineError} naming
 * `what` when it has not settled within `timeoutMs`. The timer is cleared as
 * soon as `promise` settles.
 */
export async function withDeadline<T> (promise: Promise<T>, what: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    // Not unref'd: when nothing else is pending, the deadline must still fire
    // (an unref'd timer would let the process exit with an unfinished test).
    timer = setTimeout(() => { reject(new DeadlineError(what, timeoutMs)) }, timeoutMs)
  })
  try {
    return await Promise.race([promise, deadline])
  } finally {
    clearTimeout(timer)
  }
}

export interface WaitForOptions {
  /** what the test waits for, for the failure message */
  readonly what?: string
  /** deadline in ms (default {@link DEFAULT_TIMEOUT_MS}) */
  readonly timeoutMs?: number
  /** pause between two probes in ms (default 10) */
  readonly intervalMs?: number
}

/** `T` without its falsy members: what {@link waitFor} resolves. */
export type Truthy<T> = Exclude<T, false | 0 | 0n | '' | null | undefined>

/**
 * Calls `probe` (sync or async) until it returns a truthy value, and resolves
 * that value. The first probe runs at once; the next ones `intervalMs` after
 * the previous one settled. Rejects with a {@link DeadlineError} when the
 * deadline passes first, and with the probe's error when the probe throws.
 *
 * A probe may return a boolean, or the value it found and `undefined` while
 * there is none:
 *
 * ```ts
 * await waitFor(() => reader.all('op').length >= 5, { what: 'five ops' })
 * const after = await waitFor(async () => {
 *   const s = await stats(app)
 *   return s.connections === 0 ? s : undefined
 * }, { what: 'the connection to be counted closed', timeoutMs: 5000 })
 * ```
 */
export async function waitFor<T> (probe: () => T | Promise<T>, options: WaitForOptions = {}): Promise<Truthy<T>> {
  const { what = 'a condition', timeoutMs = DEFAULT_TIMEOUT_MS, intervalMs = 10 } = options
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value) return value as Truthy<T>
    if (Date.now() >= deadline) throw new DeadlineError(what, timeoutMs, `last value: ${inspect(value)}`)
    await delay(Math.min(intervalMs, Math.max(0, deadline - Date.now())))
  }
}

/**
 * The arguments of the next `event` emitted by `emitter`, or a
 * {@link DeadlineError} after `timeoutMs`. An `'error'` event rejects.
 */
export async function nextEvent (emitter: EventEmitter, event: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<unknown[]> {
  const controller = new AbortController()
  try {
    return await withDeadline<unknown[]>(once(emitter, event, { signal: controller.signal }), `event '${event}'`, timeoutMs)
  } finally {
    controller.abort()
  }
}

interface Waiter<T> {
  readonly predicate: (items: readonly T[]) => boolean
  readonly done: Deferred<readonly T[]>
}

/**
 * Records values handed to {@link Recorder.push} (typically by a handler
 * under test) and lets a test await a condition on everything recorded so
 * far, with a deadline.
 *
 * ```ts
 * const inbox = new Recorder<Message>()
 * await broadcaster.subscribe(project, inbox.push)
 * await inbox.until(items => items.length === 2, 'two messages')
 * ```
 */
export class Recorder<T> {
  readonly #items: T[] = []
  readonly #waiters = new Set<Waiter<T>>()

  /** Everything recorded, oldest first. */
  get items (): readonly T[] {
    return this.#items
  }

  /** Records a value. Bound, so it can be passed as a callback. */
  readonly push = (item: T): void => {
    this.#items.push(item)
    for (const waiter of this.#waiters) {
      if (waiter.predicate(this.#items)) {
        this.#waiters.delete(waiter)
        waiter.done.resolve(this.#items)
      }
    }
  }

  /**
   * Resolves the recorded values once `predicate` holds for them (at once
   * when it already does); rejects with a {@link DeadlineError} otherwise.
   */
  async until (predicate: (items: readonly T[]) => boolean, what: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<readonly T[]> {
    if (predicate(this.#items)) return this.#items
    const waiter: Waiter<T> = { predicate, done: deferred() }
    this.#waiters.add(waiter)
    try {
      return await withDeadline(waiter.done.promise, what, timeoutMs)
    } catch (err) {
      const last = inspect(this.#items.slice(-3), { depth: 6, breakLength: Infinity })
      throw new DeadlineError(what, timeoutMs, `recorded ${this.#items.length}, the last ones: ${last}`, { cause: err })
    } finally {
      this.#waiters.delete(waiter)
    }
  }
}
