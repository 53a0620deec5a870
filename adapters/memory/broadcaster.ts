import type { BroadcastHandler, BroadcastMessage, Broadcaster } from '../../ports/broadcaster.js'
import { ClosedError } from '../../lib/errors.js'

/**
 * An in-process bus. Broadcasters created on the same bus behave like
 * instances sharing one Redis; each broadcaster gets its own bus by default.
 */
export class MemoryBus {
  readonly #subscribers = new Map<string, Set<MemoryBroadcaster>>()

  join (project: string, broadcaster: MemoryBroadcaster): void {
    let set = this.#subscribers.get(project)
    if (set === undefined) {
      set = new Set()
      this.#subscribers.set(project, set)
    }
    set.add(broadcaster)
  }

  part (project: string, broadcaster: MemoryBroadcaster): void {
    const set = this.#subscribers.get(project)
    if (set === undefined) return
    set.delete(broadcaster)
    if (set.size === 0) this.#subscribers.delete(project)
  }

  deliver (project: string, from: MemoryBroadcaster, message: BroadcastMessage): void {
    const set = this.#subscribers.get(project)
    if (set === undefined) return
    for (const target of set) {
      if (target !== from) target.receive(project, structuredClone(message))
    }
  }
}

export class MemoryBroadcaster implements Broadcaster {
  readonly #bus: MemoryBus
  readonly #handlers = new Map<string, BroadcastHandler>()
  #closed = false

  constructor (bus: MemoryBus = new MemoryBus()) {
    this.#bus = bus
  }

  async subscribe (project: string, handler: BroadcastHandler): Promise<void> {
    this.#assertOpen()
    this.#handlers.set(project, handler)
    this.#bus.join(project, this)
  }

  async unsubscribe (project: string): Promise<void> {
    this.#handlers.delete(project)
    this.#bus.part(project, this)
  }

  async publish (project: string, message: BroadcastMessage): Promise<void> {
    this.#assertOpen()
    // Copy now, like a network would serialise it: the publisher may reuse
    // its object as soon as publish returns.
    const copy = structuredClone(message)
    // Deliver on a later tick, like a network would: a publisher never runs
    // a subscriber's handler inside its own call stack.
    queueMicrotask(() => { this.#bus.deliver(project, this, copy) })
  }

  async subscriptions (): Promise<readonly string[]> {
    return [...this.#handlers.keys()]
  }

  /** Called by the bus. */
  receive (project: string, message: BroadcastMessage): void {
    const handler = this.#handlers.get(project)
    if (handler !== undefined) handler(message)
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const project of this.#handlers.keys()) this.#bus.part(project, this)
    this.#handlers.clear()
  }

  #assertOpen (): void {
    if (this.#closed) throw new ClosedError('broadcaster')
  }
}

export function createMemoryBroadcaster (bus?: MemoryBus): MemoryBroadcaster {
  return new MemoryBroadcaster(bus)
}
