import type { ExpiredSession, SessionRef, SessionStore } from '../../ports/session-store.js'
import type { Member, Presence } from '../../lib/types.js'
import { MemorySessionStore } from '../memory/session-store.js'
import { Failover, type FailoverOptions } from './failover.js'
import { withTimeout } from './outage.js'

export interface FailoverSessionStoreOptions extends FailoverOptions {
  readonly primary: SessionStore
  readonly ttlMs: number
}

/**
 * Sessions with a memory fallback: during an outage the instance's own
 * sessions live in memory (members here keep seeing each other); the
 * sessions that left meanwhile are remembered, removed from the primary by
 * `resync`, and handed out once by `takeLeft` so their leave is announced to
 * the other instances. Re-adding the sessions still connected is the hub's
 * part (it knows them).
 */
export class FailoverSessionStore extends Failover implements SessionStore {
  readonly #primary: SessionStore
  readonly #ttlMs: number
  #fallback: MemorySessionStore | null = null
  #left: SessionRef[] = []
  #leftToAnnounce: ExpiredSession[] = []

  constructor (options: FailoverSessionStoreOptions) {
    super(options)
    this.#primary = options.primary
    this.#ttlMs = options.ttlMs
  }

  protected enterFallback (): void {
    this.#fallback = new MemorySessionStore({ ttlMs: this.#ttlMs })
    this.#left = []
  }

  protected leaveFallback (): void {
    void this.#fallback?.close()
    this.#fallback = null
  }

  #store (): MemorySessionStore {
    this.#fallback ??= new MemorySessionStore({ ttlMs: this.#ttlMs })
    return this.#fallback
  }

  async add (project: string, member: Member, presenceVersion?: number): Promise<void> {
    await this.call('session add', async () => { await this.#primary.add(project, member, presenceVersion) }, async () => { await this.#store().add(project, member, presenceVersion) })
  }

  async remove (project: string, sessionId: string): Promise<Member | null> {
    return await this.call('session remove', async () => await this.#primary.remove(project, sessionId), async () => {
      this.#left.push({ project, sessionId })
      return await this.#store().remove(project, sessionId)
    })
  }

  async setPresence (project: string, sessionId: string, presence: Presence, version?: number): Promise<boolean> {
    return await this.call('session presence', async () => await this.#primary.setPresence(project, sessionId, presence, version),
      async () => await this.#store().setPresence(project, sessionId, presence, version))
  }

  async list (project: string): Promise<Member[]> {
    return await this.call('session list', async () => await this.#primary.list(project), async () => await this.#store().list(project))
  }

  async refresh (sessions: readonly SessionRef[]): Promise<SessionRef[]> {
    return await this.call('session refresh', async () => await this.#primary.refresh(sessions), async () => await this.#store().refresh(sessions))
  }

  async reap (): Promise<ExpiredSession[]> {
    return await this.call('session reap', async () => await this.#primary.reap(), async () => await this.#store().reap())
  }

  /** Sessions that left during the outage and were still in the primary: announce their leave. Each is handed out once. */
  takeLeft (): ExpiredSession[] {
    const left = this.#leftToAnnounce
    this.#leftToAnnounce = []
    return left
  }

  async resync (): Promise<void> {
    if (this.mode === 'primary') return
    while (this.#left.length > 0) {
      const ref = this.#left[0] as SessionRef
      const member = await withTimeout(this.#primary.remove(ref.project, ref.sessionId), this.timeoutMs, 'session re-sync')
      if (member !== null) this.#leftToAnnounce.push({ project: ref.project, member })
      this.#left.shift()
    }
    this.backToPrimary()
  }

  async close (): Promise<void> {
    await this.#fallback?.close()
    this.#fallback = null
  }
}
