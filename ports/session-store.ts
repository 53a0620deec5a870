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
 * A session expires `ttl` after it was added or last refreshed; a session
 * past its TTL is not there for `list`, `setPresence` and `refresh`, and
 * stays for `remove` or `reap` to take once.
 *
 * Each session has a presence version, a number that orders its presence
 * updates: the last writer by version wins, whatever order the updates reach
 * the store in.
 *
 * `add` and `setPresence` reject with a TypeError, before the store is
 * touched, when a version is not a safe integer. A failing backing store
 * rejects with its own error.
 *
 * Adapters: MemorySessionStore (Map with TTL) and RedisSessionStore.
 */
export interface SessionStore {
  /**
   * `cluster` when every instance shares this store (a `list` shows every
   * instance's sessions); `instance` when it holds this process's sessions
   * only. Optional for stores written before it: absent means `instance`.
   */
  readonly scope?: 'cluster' | 'instance'

  /**
   * Adds the session, or replaces the one with the same id in the project
   * (an idempotent upsert: one entry, the new member, a fresh TTL), and
   * stores `presenceVersion` (default 0) as its presence version. Once it
   * resolves, `list` on every instance sharing the store includes it.
   */
  add (project: string, member: Member, presenceVersion?: number): Promise<void>

  /**
   * Removes the session, expired or not, unless `reap` already took it.
   * Resolves the removed member for exactly one caller among `remove` and
   * `reap`, `null` when it was not there, so its `leave` is announced once.
   */
  remove (project: string, sessionId: string): Promise<Member | null>

  /**
   * Replaces the session's presence (the whole object, not merged), last
   * writer wins: applied only when `version` is greater than the stored
   * presence version, which becomes `version`; an older or equal version
   * changes nothing. Without `version` the presence is applied always and the
   * stored version is kept: that form exists for callers written before
   * versions; callers should pass one (e.g. a per-session counter), or
   * concurrent updates may land out of order.
   *
   * Atomic, one round trip. Resolves true when the session is there (its
   * stored presence is now the newest known, this one or a newer one),
   * false when it is not (never added, removed, reaped, past its TTL); a
   * session that is not there is never created.
   */
  setPresence (project: string, sessionId: string, presence: Presence, version?: number): Promise<boolean>

  /** The project's live sessions, oldest join first. */
  list (project: string): Promise<Member[]>

  /**
   * Extends the TTL of each given session that is there, and resolves the
   * given sessions that are not (reaped while this instance stalled, removed
   * elsewhere, lost with Redis' data or evicted, past their TTL), in the
   * order given: the caller re-adds and re-announces those it still holds. A
   * session that is not there is neither created nor revived. The sessions
   * named are those the calling instance holds (its own, from `add`); an
   * empty list resolves an empty list.
   *
   * Redis: the instance first renews its lease, so an instance whose lease
   * lapsed is alive again before anything else happens.
   */
  refresh (sessions: readonly SessionRef[]): Promise<SessionRef[]>

  /**
   * Removes sessions whose TTL has passed (and, in a shared store, every
   * session of an instance whose lease lapsed) and resolves them; each
   * expired session is returned to exactly one caller among `reap` and
   * `remove` across instances, so its `leave` is announced once.
   */
  reap (): Promise<ExpiredSession[]>

  /** Frees what the adapter created. Idempotent. */
  close (): Promise<void>
}
