import type { ExpiredSession } from '../../ports/session-store.js'
import type { HubContext } from './context.js'
import { memberFrame } from './outbox.js'

/** How often expired sessions (and those of crashed instances) are reaped, at most. */
const REAP_INTERVAL_MS = 1000
/** Leaves remembered as announced while the store kept their session (a failed remove). */
const MAX_REMEMBERED = 10_000

/**
 * Keeps the session store true to the connections of this instance: renews
 * their TTL, reaps expired sessions (this instance's or a crashed one's) and
 * announces their leave once, and writes sessions back after an outage.
 */
export class SessionKeeper {
  readonly #ctx: HubContext
  readonly #timers: NodeJS.Timeout[] = []
  #reaping = false
  /** sessions whose leave was announced though the store kept them */
  readonly #announced = new Set<string>()

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

  async #refresh (): Promise<void> {
    const refs = []
    for (const lp of this.#ctx.projects.values()) {
      for (const m of lp.members.values()) refs.push({ project: lp.name, sessionId: m.sessionId })
    }
    try {
      if (refs.length > 0) await this.#ctx.ports.sessions.refresh(refs)
    } catch (err) {
      this.#ctx.logger.warn({ err }, 'session refresh failed')
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
          // Ours and still connected (its refresh was late): keep it.
          await ports.sessions.add(project, local.toMember())
          continue
        }
        lp?.sendOthers(memberFrame(project, 'leave', member), member.sessionId)
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
   * and writes the sessions of local connections back to the store,
   * announcing each one the store had lost.
   */
  async writeBack (left: readonly ExpiredSession[]): Promise<void> {
    const { ports, projects, logger } = this.#ctx
    for (const { project, member } of left) projects.publish(project, { kind: 'member', event: 'leave', member })
    for (const lp of [...projects.values()]) {
      try {
        const listed = new Set((await ports.sessions.list(lp.name)).map((m) => m.sessionId))
        for (const member of [...lp.members.values()]) {
          if (listed.has(member.sessionId) || member.conn.closed) continue
          await ports.sessions.add(lp.name, member.toMember())
          projects.publish(lp.name, { kind: 'member', event: 'join', member: member.toMember() })
        }
      } catch (err) {
        logger.warn({ err, project: lp.name }, 'writing sessions back failed')
      }
    }
  }

  close (): void {
    for (const t of this.#timers) clearInterval(t)
  }
}
