import type { BroadcastHandler, BroadcastMessage, Broadcaster } from '../../ports/broadcaster.js'
import { withTimeout } from '../../lib/watchdog.js'
import { PortSwitch, type PortControl, type SwitchOptions } from './switch.js'

export interface FailoverBroadcasterOptions extends SwitchOptions {
  readonly primary: Broadcaster
}

/**
 * Fan-out with an outage mode: while the primary is away, messages to other
 * instances are dropped (local members are served by the hub directly, and
 * the op log fills the gaps afterwards), and subscriptions are remembered;
 * the re-sync subscribes again to every project that still has a handler and
 * drops the ones that left meanwhile.
 */
export class FailoverBroadcaster implements Broadcaster {
  readonly #switch: PortSwitch
  readonly #primary: Broadcaster
  readonly #handlers = new Map<string, BroadcastHandler>()

  /** The decorated broadcaster and its control (what only the failover module uses). */
  static create (options: FailoverBroadcasterOptions): { port: FailoverBroadcaster, control: PortControl } {
    const broadcaster = new FailoverBroadcaster(options)
    const control: PortControl = {
      get serving () { return broadcaster.#switch.serving },
      resync: async () => { await broadcaster.#resync() }
    }
    return { port: broadcaster, control }
  }

  private constructor (options: FailoverBroadcasterOptions) {
    this.#primary = options.primary
    this.#switch = new PortSwitch(options, () => {}, () => {})
  }

  async subscribe (project: string, handler: BroadcastHandler): Promise<void> {
    this.#handlers.set(project, handler)
    // During an outage the subscription waits for the re-sync.
    await this.#switch.call('subscribe', async () => { await this.#primary.subscribe(project, handler) }, async () => {})
  }

  async unsubscribe (project: string): Promise<void> {
    this.#handlers.delete(project)
    await this.#switch.call('unsubscribe', async () => { await this.#primary.unsubscribe(project) }, async () => {})
  }

  async publish (project: string, message: BroadcastMessage): Promise<void> {
    await this.#switch.call('publish', async () => { await this.#primary.publish(project, message) }, async () => {})
  }

  async subscriptions (): Promise<readonly string[]> {
    return [...this.#handlers.keys()]
  }

  async #resync (): Promise<void> {
    if (this.#switch.serving === 'primary') return
    const timeoutMs = this.#switch.options.timeoutMs
    // Until nothing is left to do: projects joined meanwhile are subscribed too.
    const done = new Map<string, BroadcastHandler>()
    for (;;) {
      const todo = [...this.#handlers].filter(([project, handler]) => done.get(project) !== handler)
      const extra = (await this.#primary.subscriptions()).filter((project) => !this.#handlers.has(project))
      if (todo.length === 0 && extra.length === 0) break
      for (const [project, handler] of todo) {
        await withTimeout(this.#primary.subscribe(project, handler), timeoutMs, 're-subscribe')
        done.set(project, handler)
      }
      for (const project of extra) await withTimeout(this.#primary.unsubscribe(project), timeoutMs, 'unsubscribe')
    }
    this.#switch.backToPrimary()
  }

  async close (): Promise<void> {
    const projects = [...this.#handlers.keys()]
    this.#handlers.clear()
    // Best effort: the primary may be away; closing it is its owner's job.
    await Promise.all(projects.map(async (p) => { await this.#primary.unsubscribe(p).catch(() => {}) }))
  }
}
