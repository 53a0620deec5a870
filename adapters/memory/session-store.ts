import type { ExpiredSession, SessionRef, SessionStore } from '../../ports/session-store.js'
import type { Member, Presence } from '../../lib/types.js'
import { ClosedError } from '../../lib/errors.js'

export interface MemorySessionStoreOptions {
  /** session TTL in ms (default 30,000) */
  readonly ttlMs?: number
  /** clock, injectable for tests (default Date.now) */
  readonly now?: () => number
}

interface Entry {
  member: Member
  expiresAt: number
  /** the presence version: a setPresence with a greater one wins */
  version: number
}

/** Sessions in a Map per project, each with an expiry time. */
export class MemorySessionStore implements SessionStore {
  readonly scope = 'instance'
  readonly #projects = new Map<string, Map<string, Entry>>()
  readonly #ttlMs: number
  readonly #now: () => number
  #closed = false

  constructor (options: MemorySessionStoreOptions = {}) {
    this.#ttlMs = options.ttlMs ?? 30_000
    this.#now = options.now ?? Date.now
  }

  async add (project: string, member: Member, presenceVersion = 0): Promise<void> {
    this.#assertOpen()
    assertVersion(presenceVersion)
    let sessions = this.#projects.get(project)
    if (sessions === undefined) {
      sessions = new Map()
      this.#projects.set(project, sessions)
    }
    sessions.set(member.sessionId, { member: structuredClone(member), expiresAt: this.#now() + this.#ttlMs, version: presenceVersion })
  }

  async remove (project: string, sessionId: string): Promise<Member | null> {
    this.#assertOpen()
    const sessions = this.#projects.get(project)
    const entry = sessions?.get(sessionId)
    if (sessions === undefined || entry === undefined) return null
    // Expired but not reaped: removed here, so reap does not announce it again.
    sessions.delete(sessionId)
    if (sessions.size === 0) this.#projects.delete(project)
    return entry.member
  }

  async setPresence (project: string, sessionId: string, presence: Presence, version?: number): Promise<boolean> {
    this.#assertOpen()
    if (version !== undefined) assertVersion(version)
    const entry = this.#projects.get(project)?.get(sessionId)
    if (entry === undefined || entry.expiresAt <= this.#now()) return false
    if (version !== undefined) {
      if (version <= entry.version) return true
      entry.version = version
    }
    entry.member = { ...entry.member, presence: structuredClone(presence) }
    return true
  }

  async list (project: string): Promise<Member[]> {
    this.#assertOpen()
    const sessions = this.#projects.get(project)
    if (sessions === undefined) return []
    const now = this.#now()
    const live: Member[] = []
    for (const entry of sessions.values()) {
      if (entry.expiresAt > now) live.push(structuredClone(entry.member))
    }
    return live.sort((a, b) => a.joinedAt - b.joinedAt)
  }

  async refresh (sessions: readonly SessionRef[]): Promise<SessionRef[]> {
    this.#assertOpen()
    const now = this.#now()
    const missing: SessionRef[] = []
    for (const { project, sessionId } of sessions) {
      const entry = this.#projects.get(project)?.get(sessionId)
      if (entry !== undefined && entry.expiresAt > now) entry.expiresAt = now + this.#ttlMs
      else missing.push({ project, sessionId })
    }
    return missing
  }

  async reap (): Promise<ExpiredSession[]> {
    this.#assertOpen()
    const now = this.#now()
    const expired: ExpiredSession[] = []
    for (const [project, sessions] of this.#projects) {
      for (const [sessionId, entry] of sessions) {
        if (entry.expiresAt <= now) {
          sessions.delete(sessionId)
          expired.push({ project, member: entry.member })
        }
      }
      if (sessions.size === 0) this.#projects.delete(project)
    }
    return expired
  }

  async close (): Promise<void> {
    this.#closed = true
    this.#projects.clear()
  }

  #assertOpen (): void {
    if (this.#closed) throw new ClosedError('session store')
  }
}

function assertVersion (version: number): void {
  if (!Number.isSafeInteger(version)) throw new TypeError(`presence version must be a safe integer, got ${String(version)}`)
}

export function createMemorySessionStore (options?: MemorySessionStoreOptions): MemorySessionStore {
  return new MemorySessionStore(options)
}
