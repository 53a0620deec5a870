import type { ExpiredSession, SessionRef } from '../../ports/session-store.js'
import type { HubContext } from './context.js'
import type { LocalMember, LocalProject } from './project.js'

/** How often expired sessions (and those of crashed instances) are reaped, at most. */
const REAP_INTERVAL_MS = 1000
/** Leaves remembered as announced while the store kept their session (a failed remove). */
const MAX_REMEMBERED = 10_000

/**
 * Keeps the session store true to the connections of this instance, and
 * this instance's members true to the store:
 *
 * - every refresh interval (a third of the session TTL) it renews the TTL
 *   of its sessions; a session the store lost (reaped while this instance
 *   stalled past its lease, flushed, evicted) is written back and announced
 *   as a join again; then each local project's member list is read and what
 *   the local members were told is brought in line with it (joins and
 *   leaves they missed: a lost Pub/Sub message, another instance's
 *   recovery). After any fault, each instance's lists and its members'
 *   views equal the connected sessions within two refresh intervals.
 * - every second it reaps expired sessions (its own or a crashed
 *   instance's) and announces each leave once;
 * - after an outage it announces the leaves the others could not hear and
 *   writes its sessions back.
 *
 * A store that holds this instance's sessions only (`scope: 'instance'`:
 * memory, or Redis' fallback during an outage) is reconciled for joins but
 * not leaves: members of other instances are not in it.
 */
export class SessionKeeper {
  readonly #ctx: HubContext
  readonly #timers: NodeJS.Timeout[] = []
  #reaping = false
  #refreshing = false
  /** sessions whose leave was announced though the store kept them */
  readonly #announced = new Set<string>()
  /** sessions being written back */
  readonly #reasserting = new Set<LocalMember>()
  constructor (ctx: HubContext) {
    this.#ctx = ctx
    const ttlMs = ctx.config.sessionTtlSeconds * 1000
    const refresh = setInterval(() => { void this.#refresh() }, Math.max(500, ttlMs / 3))
    // Reaping is cheap (one script) and is what announces a crashed
    // instance's sessions: run it often, so they leave within seconds.
    const reap = setInterval(() => { void this.#reap() }, Math.min(REAP_INTERVAL_MS, ttlMs / 3))
    refresh.unref()
    reap.unref()
    this.#timers.push(refresh, reap)
  }

  /** Remembers a leave announced while the store could not remove the session: its reaping is not announced again. */
  remember (sessionId: string): void {
    if (this.#announced.size >= MAX_REMEMBERED) this.#announced.clear()
    this.#announced.add(sessionId)
  }

  /**
   * Writes a session that is connected here back to the store and announces
   * its join (to the other instances; locally, to members who were told it
   * left). Once per session at a time.
   */
  async reassert (lp: LocalProject, member: LocalMember): Promise<void> {
    if (this.#reasserting.has(member)) return
    this.#reasserting.add(member)
    try {
      await this.#ctx.ports.sessions.add(lp.name, member.toMember(), member.presenceVersion)
      if (member.conn.closed || !this.#ctx.projects.isCurrent(lp)) return
      lp.tell('join', member.toMember())
      this.#ctx.projects.publish(lp.name, { kind: 'member', event: 'join', member: member.toMember() })
    } catch (err) {
      this.#ctx.logger.warn({ err, project: lp.name }, 'writing a session back failed; the next refresh tries again')
    } finally {
      this.#reasserting.delete(member)
    }
  }

  async #refresh (): Promise<void> {
    if (this.#refreshing) return
    this.#refreshing = true
    try {
      const refs: SessionRef[] = []
      for (const lp of this.#ctx.projects.values()) {
        for (const m of lp.members.values()) refs.push({ project: lp.name, sessionId: m.sessionId })
        // (1.3) Held sessions stay until they resume or their grace ends.
        for (const id of lp.suspended.keys()) refs.push({ project: lp.name, sessionId: id })
      }
      const missing = refs.length > 0 ? await this.#ctx.ports.sessions.refresh(refs) : []
      for (const { project, sessionId } of missing) {
        const lp = this.#ctx.projects.get(project)
        const member = lp?.members.get(sessionId)
        if (lp !== undefined && member !== undefined && !member.conn.closed) await this.reassert(lp, member)
      }
      await this.reconcileAll()
    } catch (err) {
      this.#ctx.logger.warn({ err }, 'session refresh failed')
    } finally {
      this.#refreshing = false
    }
  }

  /** Whether the store lists every instance's sessions (then a session it lacks is gone). */
  get #shared (): boolean {
    return this.#ctx.ports.sessions.scope === 'cluster'
  }

  /** Brings what each local project's members were told in line with the store's member list. */
  async reconcileAll (): Promise<void> {
    for (const lp of [...this.#ctx.projects.values()]) {
      if (!this.#ctx.projects.isCurrent(lp)) continue
      const since = lp.tick
      try {
        const list = await this.#ctx.ports.sessions.list(lp.name)
        lp.reconcile(list, since, { leaves: this.#shared })
      } catch (err) {
        this.#ctx.logger.warn({ err, project: lp.name }, 'reading members failed')
        return
      }
    }
  }

  /** Announces the leave of every expired session (each reaped by one instance only). */
  async #reap (): Promise<void> {
    if (this.#reaping) return
    this.#reaping = true
    const { ports, projects, logger } = this.#ctx
    try {
      const expired = await ports.sessions.reap()
      for (const { project, member } of expired) {
        if (this.#announced.delete(member.sessionId)) continue
        const lp = projects.get(project)
        const local = lp?.members.get(member.sessionId)
        if (local !== undefined && !local.conn.closed) {
          // Ours and still connected (its refresh was late): keep it. No one heard it leave.
          await ports.sessions.add(project, local.toMember(), local.presenceVersion)
          continue
        }
        lp?.tell('leave', member)
        projects.publish(project, { kind: 'member', event: 'leave', member })
      }
    } catch (err) {
      logger.warn({ err }, 'reaping expired sessions failed')
    } finally {
      this.#reaping = false
    }
  }

  /**
   * After an outage: announces the leaves other instances could not hear,
   * writes the sessions of local connections back to the store (announcing
   * each one the store had lost, and the presence of each one whose presence
   * changed meanwhile), and tells the local members the joins and leaves
   * that happened elsewhere meanwhile.
   */
  async writeBack (left: readonly ExpiredSession[]): Promise<void> {
    const { ports, projects, logger } = this.#ctx
    for (const { project, member } of left) projects.publish(project, { kind: 'member', event: 'leave', member })
    for (const lp of [...projects.values()]) {
      try {
        const since = lp.tick
        const list = await ports.sessions.list(lp.name)
        const listed = new Map(list.map((m) => [m.sessionId, m]))
        for (const member of [...lp.members.values()]) {
          if (member.conn.closed) continue
          const stored = listed.get(member.sessionId)
          if (stored === undefined) {
            await ports.sessions.add(lp.name, member.toMember(), member.presenceVersion)
            projects.publish(lp.name, { kind: 'member', event: 'join', member: member.toMember() })
            list.push(member.toMember())
          } else if (JSON.stringify(stored.presence) !== JSON.stringify(member.presence)) {
            // Its presence changed during the outage (the fallback took it): the store and the others hear it now.
            const { sessionId, userId, presence: state } = member
            await ports.sessions.setPresence(lp.name, sessionId, state, member.presenceVersion)
            projects.publish(lp.name, { kind: 'presence', sessionId, userId, state })
          }
        }
        lp.reconcile(list, since, { leaves: this.#shared })
      } catch (err) {
        logger.warn({ err, project: lp.name }, 'writing sessions back failed')
      }
    }
  }

  close (): void {
    for (const t of this.#timers) clearInterval(t)
  }
}
