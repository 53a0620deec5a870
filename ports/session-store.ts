import type { Member, Presence } from '../lib/types.js'

export interface SessionRef {
  readonly project: string
  readonly sessionId: string
}

export interface ExpiredSession {
  readonly project: string
  readonly member: Member
}

/**
 * Who is in which project, across every instance sharing the store.
 * A session expires `ttl` after it was added or last refreshed.
 *
 * Adapters: MemorySessionStore (Map with TTL) and RedisSessionStore.
 */
export interface SessionStore {
  /**
   * Adds the session (or replaces one with the same id). Once it resolves,
   * `list` on every instance sharing the store includes it.
   */
  add (project: string, member: Member): Promise<void>

  /**
   * Removes the session, expired or not, unless `reap` already took it.
   * Resolves the removed member for exactly one caller among `remove` and
   * `reap`, `null` when it was not there, so its `leave` is announced once.
   */
  remove (project: string, sessionId: string): Promise<Member | null>

  /** Replaces the session's presence. Resolves false when it is not there. */
  setPresence (project: string, sessionId: string, presence: Presence): Promise<boolean>

  /** The project's live sessions, oldest join first. */
  list (project: string): Promise<Member[]>

  /** Extends the TTL of the given sessions; ones that are gone are ignored. */
  refresh (sessions: readonly SessionRef[]): Promise<void>

  /**
   * Removes sessions whose TTL has passed and resolves them; each expired
   * session is returned to exactly one caller, so its `leave` is announced
   * once across the cluster.
   */
  reap (): Promise<ExpiredSession[]>

  /** Frees what the adapter created. Idempotent. */
  close (): Promise<void>
}
