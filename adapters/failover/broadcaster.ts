import type { BroadcastHandler, BroadcastMessage, Broadcaster } from '../../ports/broadcaster.js'
import { Failover, type FailoverOptions } from './failover.js'
import { withTimeout } from './outage.js'

export interface FailoverBroadcasterOptions extends FailoverOptions {
  readonly primary: Broadcaster
}

/**
 * Fan-out with an outage mode: while Redis is away, messages to other
 * instances are dropped (local members are served by the hub directly, and
 * the op log fills the gaps afterwards), and subscriptions are remembered;
 * `resync` subscribes again to every project that still has a handler and
 * drops the ones that left meanwhile.
 */
export class FailoverBroadcaster extends Failover implements Broadcaster {
  readonly #primary: Broadcaster
  readonly #handlers = new Map<string, BroadcastHandler>()

  constructor (options: FailoverBroadcasterOptions) {
    super(options)
    this.#primary = options.primary
  }

  protected enterFallback (): void {}
  protected leaveFallback (): void {}

  async subscribe (project: string, handler: BroadcastHandler): Promise<void> {
    this.#handlers.set(project, handler)
    // During an outage the subscription waits for resync.
    await this.call('subscribe', async () => { await this.#primary.subscribe(project, handler) }, async () => {})
  }

  async unsubscribe (project: string): Promise<void> {
    this.#handlers.delete(project)
    await this.call('unsubscribe', async () => { await this.#primary.unsubscribe(project) }, async () => {})
  }

  async publish (project: string, message: BroadcastMessage): Promise<void> {
    await this.call('publish', async () => { await this.#primary.publish(project, message) }, async () => {})
  }

  async subscriptions (): Promise<readonly string[]> {
    return [...this.#handlers.keys()]
  }

  async resync (): Promise<void> {
    if (this.mode === 'primary') return
    // Until nothing is left to do: projects joined meanwhile are subscribed too.
    const done = new Map<string, BroadcastHandler>()
    for (;;) {
      const todo = [...this.#handlers].filter(([project, handler]) => done.get(project) !== handler)
      const extra = (await this.#primary.subscriptions()).filter((project) => !this.#handlers.has(project))
      if (todo.length === 0 && extra.length === 0) break
      for (const [project, handler] of todo) {
        await withTimeout(this.#primary.subscribe(project, handler), this.timeoutMs, 're-subscribe')
        done.set(project, handler)
      }
      for (const project of extra) await withTimeout(this.#primary.unsubscribe(project), this.timeoutMs, 'unsubscribe')
    }
    this.backToPrimary()
  }

  async close (): Promise<void> {
    const projects = [...this.#handlers.keys()]
    this.#handlers.clear()
    // Best effort: the primary may be away; closing it is its owner's job.
    await Promise.all(projects.map(async (p) => { await this.#primary.unsubscribe(p).catch(() => {}) }))
  }
}
