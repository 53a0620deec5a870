import type { ExpiredSession, SessionRef, SessionStore } from '../../ports/session-store.js'
import type { Member, Presence } from '../../lib/types.js'
import { withTimeout } from '../../lib/watchdog.js'
import { PortSwitch, type PortControl, type SwitchOptions } from './switch.js'

export interface FailoverSessionStoreOptions extends SwitchOptions {
  readonly primary: SessionStore
  /** a fresh, empty store to serve from during an outage */
  readonly fallback: () => SessionStore
}

/** The session store decorator's control. */
export interface SessionStoreControl extends PortControl {
  /** Sessions that left during the outage and were still in the primary: announce their leave. Each is handed out once. */
  takeLeft (): ExpiredSession[]
}

/**
 * Sessions with a fallback: during an outage the instance's own sessions
 * live in memory, and the fallback starts from them (this decorator keeps
 * the sessions its instance added and has not removed, with their presence
 * and version), so members here keep seeing each other join, leave and
 * change presence, and `list` shows them. The sessions that left meanwhile
 * are remembered, removed from the primary by the re-sync, and handed out
 * once (`takeLeft`) so their leave is announced to the other instances.
 * Writing the sessions still connected back to the primary is the hub's
 * part (it knows which are).
 */
export class FailoverSessionStore implements SessionStore {
  readonly #switch: PortSwitch
  readonly #primary: SessionStore
  readonly #makeFallback: () => SessionStore
  #fallback: SessionStore | null = null
  /** the fallback once it holds this instance's sessions */
  #seeded: Promise<SessionStore> | null = null
  /** the sessions this instance added and has not removed, as last written, by project and session id */
  readonly #held = new Map<string, { readonly project: string, member: Member, version: number }>()
  #left: SessionRef[] = []
  #leftToAnnounce: ExpiredSession[] = []

  /** The decorated store and its control (what only the failover module uses). */
  static create (options: FailoverSessionStoreOptions): { port: FailoverSessionStore, control: SessionStoreControl } {
    const store = new FailoverSessionStore(options)
    const control: SessionStoreControl = {
      get serving () { return store.#switch.serving },
      resync: async () => { await store.#resync() },
      takeLeft: () => {
        const left = store.#leftToAnnounce
        store.#leftToAnnounce = []
        return left
      }
    }
    return { port: store, control }
  }

  private constructor (options: FailoverSessionStoreOptions) {
    this.#primary = options.primary
    this.#makeFallback = options.fallback
    this.#switch = new PortSwitch(options, () => {
      this.#left = []
      void this.#seed()
    }, () => {
      void this.#fallback?.close()
      this.#fallback = null
      this.#seeded = null
    })
  }

  /** The primary's while on it; `instance` on the fallback, which holds this instance's sessions only. */
  get scope (): 'cluster' | 'instance' {
    return this.#switch.serving === 'primary' ? this.#primary.scope ?? 'instance' : 'instance'
  }

  /** A fresh fallback holding the sessions this instance holds. */
  #seed (): Promise<SessionStore> {
    const fallback = this.#makeFallback()
    this.#fallback = fallback
    const held = [...this.#held.values()]
    this.#seeded = Promise.all(held.map(async (s) => { await fallback.add(s.project, s.member, s.version) })).then(() => fallback)
    return this.#seeded
  }

  async #store (): Promise<SessionStore> {
    return await (this.#seeded ?? this.#seed())
  }

  async add (project: string, member: Member, presenceVersion?: number): Promise<void> {
    const by = await this.#switch.call('session add', async () => {
      await this.#primary.add(project, member, presenceVersion)
      return 'primary'
    }, async () => {
      await (await this.#store()).add(project, member, presenceVersion)
      return 'fallback'
    })
    this.#held.set(`${project}\n${member.sessionId}`, { project, member, version: presenceVersion ?? 0 })
    // The primary took it, but the store fell back meanwhile (the fallback was seeded without it): the fallback takes it too.
    if (by === 'primary' && this.#switch.serving === 'fallback') await (await this.#store()).add(project, member, presenceVersion)
  }

  async remove (project: string, sessionId: string): Promise<Member | null> {
    this.#held.delete(`${project}\n${sessionId}`)
    return await this.#switch.call('session remove', async () => await this.#primary.remove(project, sessionId), async () => {
      this.#left.push({ project, sessionId })
      return await (await this.#store()).remove(project, sessionId)
    })
  }

  async setPresence (project: string, sessionId: string, presence: Presence, version?: number): Promise<boolean> {
    const held = this.#held.get(`${project}\n${sessionId}`)
    if (held !== undefined && (version === undefined || version > held.version)) {
      held.member = { ...held.member, presence }
      held.version = version ?? held.version
    }
    return await this.#switch.call('session presence', async () => await this.#primary.setPresence(project, sessionId, presence, version),
      async () => await (await this.#store()).setPresence(project, sessionId, presence, version))
  }

  async list (project: string): Promise<Member[]> {
    return await this.#switch.call('session list', async () => await this.#primary.list(project), async () => await (await this.#store()).list(project))
  }

  async refresh (sessions: readonly SessionRef[]): Promise<SessionRef[]> {
    return await this.#switch.call('session refresh', async () => await this.#primary.refresh(sessions), async () => await (await this.#store()).refresh(sessions))
  }

  async reap (): Promise<ExpiredSession[]> {
    return await this.#switch.call('session reap', async () => await this.#primary.reap(), async () => await (await this.#store()).reap())
  }

  async #resync (): Promise<void> {
    if (this.#switch.serving === 'primary') return
    while (this.#left.length > 0) {
      const ref = this.#left[0] as SessionRef
      const member = await withTimeout(this.#primary.remove(ref.project, ref.sessionId), this.#switch.options.timeoutMs, 'session re-sync')
      if (member !== null) this.#leftToAnnounce.push({ project: ref.project, member })
      this.#left.shift()
    }
    this.#switch.backToPrimary()
  }

  async close (): Promise<void> {
    await this.#fallback?.close()
    this.#fallback = null
  }
}
