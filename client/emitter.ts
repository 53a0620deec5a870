/**
 * A tiny typed event emitter (no `node:events`, so it runs in browsers).
 * `Events` maps each event name to its listener's signature.
 */

type Listener = (...args: never[]) => void
export type EventMap<Events> = { [K in keyof Events]: Listener }

export class Emitter<Events extends EventMap<Events>> {
  readonly #listeners = new Map<keyof Events, Set<Events[keyof Events]>>()

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events> (event: K, listener: Events[K]): () => void {
    let set = this.#listeners.get(event)
    if (set === undefined) {
      set = new Set()
      this.#listeners.set(event, set)
    }
    set.add(listener)
    return () => { this.off(event, listener) }
  }

  /** Adds a listener called at most once; returns a function that removes it. */
  once<K extends keyof Events> (event: K, listener: Events[K]): () => void {
    const wrapper = ((...args: Parameters<Events[K]>) => {
      this.off(event, wrapper)
      listener(...args)
    }) as Events[K]
    return this.on(event, wrapper)
  }

  off<K extends keyof Events> (event: K, listener: Events[K]): void {
    this.#listeners.get(event)?.delete(listener)
  }

  /** How many listeners `event` has. */
  listenerCount (event: keyof Events): number {
    return this.#listeners.get(event)?.size ?? 0
  }

  /**
   * Calls the listeners of `event` in the order they were added. A listener
   * that throws does not stop the others, nor the client's own processing:
   * its error is rethrown from a microtask, where the platform reports it
   * (an uncaught exception, like a throwing DOM event listener).
   */
  protected emit<K extends keyof Events> (event: K, ...args: Parameters<Events[K]>): void {
    const set = this.#listeners.get(event)
    if (set === undefined) return
    for (const listener of [...set]) {
      try {
        (listener as (...a: Parameters<Events[K]>) => void)(...args)
      } catch (err) {
        queueMicrotask(() => { throw err })
      }
    }
  }
}
