import type { BroadcastMessage } from '../../ports/broadcaster.js'
import type { JoinFrame, LeaveFrame, PresenceFrame } from '../protocol/frames.js'
import { jsonBytes } from '../protocol/frames.js'
import { ForbiddenError, LimitExceededError, NotJoinedError } from '../errors.js'
import { randomId } from '../ids.js'
import type { Connection } from './connection.js'
import type { HubContext } from './context.js'
import type { Replayer } from './replay.js'
import { LocalMember, type LocalProject } from './project.js'
import { presenceFrame } from './outbox.js'
import type { SessionKeeper } from './session-keeper.js'

/**
 * Who is in which project: `join` (with its replay), `leave`, presence, and
 * the member events of other instances. Each join and leave is announced to
 * the other instances, and passed on to the local members once
 * (`LocalProject.tell`), however many times this instance hears it.
 */
export class Membership {
  readonly #ctx: HubContext
  readonly #replayer: Replayer
  readonly #keeper: SessionKeeper

  constructor (ctx: HubContext, replayer: Replayer, keeper: SessionKeeper) {
    this.#ctx = ctx
    this.#replayer = replayer
    this.#keeper = keeper
  }

  async join (conn: Connection, frame: JoinFrame): Promise<void> {
    const { config, ports, projects } = this.#ctx
    const { project } = frame
    if (!conn.identity.allows(project, 'read')) throw new ForbiddenError(`not allowed to join ${project}`)
    const existing = conn.projects.get(project)
    if (existing !== undefined) {
      // Joined already: answer `joined` again, replay when asked, membership unchanged.
      const lp = projects.get(project) as LocalProject
      existing.held ??= []
      await this.#welcome(conn, lp, existing, frame)
      return
    }
    if (conn.projects.size >= config.maxProjectsPerConnection) {
      throw new LimitExceededError(`at most ${config.maxProjectsPerConnection} projects per connection`)
    }
    const presence = frame.presence ?? {}
    if (jsonBytes(presence) > config.maxPresenceBytes) {
      throw new LimitExceededError(`presence is larger than ${config.maxPresenceBytes} bytes`)
    }
    const lp = await projects.acquire(project, conn.identity.userId)
    const member = new LocalMember(conn, randomId(12), conn.identity.userId, presence, Date.now())
    try {
      await ports.sessions.add(project, member.toMember(), member.presenceVersion)
    } catch (err) {
      projects.release(lp)
      throw err
    }
    if (conn.closed) {
      // The socket went away while we joined: undo.
      await ports.sessions.remove(project, member.sessionId).catch(() => null)
      projects.release(lp)
      return
    }
    member.lastSeq = lp.delivered
    lp.members.set(member.sessionId, member)
    conn.projects.set(project, member)
    lp.tell('join', member.toMember())
    projects.publish(project, { kind: 'member', event: 'join', member: member.toMember() })
    await this.#welcome(conn, lp, member, frame)
  }

  /** Sends `joined`, then the replay or `reset` when `since` is given, then makes the member live. */
  async #welcome (conn: Connection, lp: LocalProject, member: LocalMember, frame: JoinFrame): Promise<void> {
    try {
      const since = lp.tick
      const list = await this.#ctx.ports.sessions.list(lp.name)
      // The list may know of sessions the other members here have not heard of (a lost event): they hear now.
      const shared = this.#ctx.ports.sessions.scope === 'cluster'
      lp.reconcile(list, since, { leaves: shared, alsoExcept: member.sessionId })
      // The joiner gets what the others were told (the list, and news fresher than it), so it knows what they
      // know and every later member event applies to its list as to theirs (docs/protocol.md, Members).
      const members = lp.toldMembers()
      const head = lp.delivered
      if (frame.since === undefined) member.lastSeq = Math.max(member.lastSeq, head)
      this.#ctx.outbox.reply(conn, {
        type: 'joined',
        project: lp.name,
        sessionId: member.sessionId,
        userId: member.userId,
        epoch: lp.epoch,
        seq: head,
        members,
        ref: frame.ref
      })
      if (frame.since !== undefined || frame.snapshot === true) {
        await this.#replayer.replay(lp, member, frame.since, frame.epoch, head, frame.snapshot === true)
      }
    } finally {
      lp.release(member)
    }
  }

  async leave (conn: Connection, frame: LeaveFrame): Promise<void> {
    if (!conn.projects.has(frame.project)) throw new NotJoinedError(`not joined to ${frame.project}`)
    await this.remove(conn, frame.project)
    this.#ctx.outbox.reply(conn, { type: 'left', project: frame.project, ref: frame.ref })
  }

  /** The connection's session in the project ends (leave or disconnect): its leave is announced once. */
  async remove (conn: Connection, project: string): Promise<void> {
    const { ports, projects, logger } = this.#ctx
    const member = conn.projects.get(project)
    if (member === undefined) return
    conn.projects.delete(project)
    const lp = projects.get(project)
    if (lp !== undefined) {
      lp.members.delete(member.sessionId)
      projects.release(lp)
    }
    let failed = false
    const removed = await ports.sessions.remove(project, member.sessionId).catch((err: unknown) => {
      logger.warn({ err, project }, 'removing a session failed; it expires within its TTL')
      failed = true
      return null
    })
    // null without a failure: a reaper took it and announced it already.
    if (removed === null && !failed) return
    // On a failure the store expires it later; announce now, once.
    if (failed) this.#keeper.remember(member.sessionId)
    const announced = removed ?? member.toMember()
    lp?.tell('leave', announced)
    projects.publish(project, { kind: 'member', event: 'leave', member: announced })
  }

  presence (conn: Connection, frame: PresenceFrame): void {
    const { config, outbox, ports, projects, logger } = this.#ctx
    const member = conn.projects.get(frame.project)
    if (member === undefined) {
      outbox.error(conn, 'not_joined', `not joined to ${frame.project}`, frame.ref, frame.project)
      return
    }
    if (jsonBytes(frame.state) > config.maxPresenceBytes) {
      const message = `presence is larger than ${config.maxPresenceBytes} bytes`
      outbox.error(conn, 'limit_exceeded', message, frame.ref, frame.project)
      return
    }
    member.presence = frame.state
    member.presenceVersion++
    const lp = projects.get(frame.project)
    lp?.toldPresence(member.sessionId, frame.state)
    lp?.sendOthers(presenceFrame(frame.project, member.sessionId, member.userId, frame.state), member.sessionId)
    const { sessionId, userId } = member
    // Last writer wins by version: a store that takes updates out of order keeps the newest. Stored before it
    // is published (one connection, in order), so an instance that hears it reads a list that has it.
    const stored = ports.sessions.setPresence(frame.project, member.sessionId, frame.state, member.presenceVersion)
    stored.catch((err: unknown) => {
      logger.warn({ err, project: frame.project }, 'storing presence failed')
    })
    projects.publish(frame.project, { kind: 'presence', sessionId, userId, state: frame.state })
  }

  /**
   * A member or presence event of another instance, passed on to the local
   * members. The leave of a session that is connected here (another
   * instance reaped it while this one stalled) is not: this instance
   * re-asserts it instead, and everyone hears it join again.
   */
  received (lp: LocalProject, message: BroadcastMessage & { kind: 'member' | 'presence' }): void {
    if (message.kind === 'presence') {
      lp.toldPresence(message.sessionId, message.state)
      lp.sendOthers(presenceFrame(lp.name, message.sessionId, message.userId, message.state), null)
      return
    }
    const local = lp.members.get(message.member.sessionId)
    if (message.event === 'leave' && local !== undefined && !local.conn.closed) {
      void this.#keeper.reassert(lp, local)
      return
    }
    lp.tell(message.event, message.member)
  }
}
