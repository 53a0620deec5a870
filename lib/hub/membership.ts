import type { BroadcastMessage } from '../../ports/broadcaster.js'
import type { JoinFrame, LeaveFrame, ListMembersFrame, PresenceFrame } from '../protocol/frames.js'
import { jsonBytes } from '../protocol/frames.js'
import { ForbiddenError, LimitExceededError, NotJoinedError } from '../errors.js'
import { randomId } from '../ids.js'
import type { Connection } from './connection.js'
import type { HubContext } from './context.js'
import type { Replayer } from './replay.js'
import { LocalMember, type LocalProject } from './project.js'
import { presenceFrame } from './outbox.js'
import type { SessionKeeper } from './session-keeper.js'
import { pageOf, resumeToken, sessionOfToken } from './member-page.js'

/** (1.3) Largest page `list_members` returns. */
const MAX_PAGE = 10_000

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
    const features = frame.features ?? []
    const resumable = features.includes('resume')
    let member: LocalMember | null = null
    if (resumable && frame.resume !== undefined) {
      try {
        member = await this.#resume(conn, lp, frame.resume)
      } catch (err) {
        projects.release(lp)
        throw err
      }
    }
    const resumed = member !== null
    if (member === null) {
      const token = resumable ? resumeToken() : undefined
      const sessionId = token === undefined ? randomId(12) : sessionOfToken(token)
      member = new LocalMember(conn, sessionId, conn.identity.userId, presence, Date.now())
      member.token = token
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
    }
    // (A resumed session whose socket went away meanwhile goes on: the disconnect, queued after this join, holds it.)
    member.batch = features.includes('member_batch')
    member.page = features.includes('member_page')
    member.lastSeq = lp.delivered
    lp.members.set(member.sessionId, member)
    conn.joined(project, member)
    // A resumed session is known to everyone: its join changes nothing they were told (it is silent); the
    // instance that held it hears it and lets it go.
    lp.tell('join', member.toMember())
    projects.publish(project, { kind: 'member', event: 'join', member: member.toMember() })
    await this.#welcome(conn, lp, member, frame, resumable ? resumed : undefined)
  }

  /**
   * (1.3) The session a resume token names, moved to this connection, or
   * null (a fresh join follows) when it is gone or another user's. It may be
   * held here (its connection dropped), still live here (a socket not yet
   * known dead: it moves, and that connection is told `left`), or on
   * another instance (found in the store; that instance lets it go when it
   * hears the join).
   */
  async #resume (conn: Connection, lp: LocalProject, token: string): Promise<LocalMember | null> {
    const { ports } = this.#ctx
    const sessionId = sessionOfToken(token)
    const userId = conn.identity.userId
    const held = lp.suspended.get(sessionId)
    const live = lp.members.get(sessionId)
    let member: LocalMember
    if (held !== undefined) {
      if (held.member.userId !== userId) return null
      this.#letGo(lp, sessionId)
      member = new LocalMember(conn, sessionId, userId, held.member.presence, held.member.joinedAt)
      member.presenceVersion = held.member.presenceVersion
    } else if (live !== undefined) {
      if (live.userId !== userId || live.conn === conn) return null
      this.#letGo(lp, sessionId)
      member = new LocalMember(conn, sessionId, userId, live.presence, live.joinedAt)
      member.presenceVersion = live.presenceVersion
    } else {
      const stored = (await ports.sessions.list(lp.name)).find((m) => m.sessionId === sessionId)
      if (stored === undefined || stored.userId !== userId) return null
      member = new LocalMember(conn, sessionId, userId, stored.presence, stored.joinedAt)
      // Above any version the instance that had it used (each counts from 0 or from its own resume).
      member.presenceVersion = Date.now() * 1000
    }
    member.token = token
    // A fresh TTL, and the session is this instance's now.
    await ports.sessions.add(lp.name, member.toMember(), member.presenceVersion)
    return member
  }

  /**
   * (1.3) Lets go of a session of this instance that resumed on another
   * connection, without a leave: a held one (its grace ends), or a live one
   * (its connection is told `left`). Its ref on the project goes.
   */
  #letGo (lp: LocalProject, sessionId: string): boolean {
    const held = lp.suspended.get(sessionId)
    if (held !== undefined) {
      clearTimeout(held.timer)
      lp.suspended.delete(sessionId)
      this.#ctx.projects.release(lp)
      return true
    }
    const live = lp.members.get(sessionId)
    if (live === undefined || live.token === undefined) return false
    lp.members.delete(sessionId)
    live.pending = null
    if (live.conn.projects.get(lp.name) === live) live.conn.left(lp.name)
    this.#ctx.outbox.reply(live.conn, { type: 'left', project: lp.name })
    this.#ctx.projects.release(lp)
    return true
  }

  /** (1.3) Answers `list_members`: a page of the list the member's `joined` started. */
  listMembers (conn: Connection, frame: ListMembersFrame): void {
    const member = conn.projects.get(frame.project)
    const lp = this.#ctx.projects.get(frame.project)
    if (member === undefined || lp === undefined) throw new NotJoinedError(`not joined to ${frame.project}`)
    const limit = Math.min(frame.limit ?? this.#ctx.config.joinedMembersMax, MAX_PAGE)
    // Member events of this turn go first: the page is at least as new as what the member heard before it.
    lp.flushMembers()
    const page = pageOf(lp.toldMembers(), frame.after, limit)
    this.#ctx.outbox.reply(conn, { type: 'member_page', project: lp.name, ...page, ref: frame.ref })
  }

  /** Sends `joined`, then the replay or `reset` when `since` is given, then makes the member live. */
  async #welcome (conn: Connection, lp: LocalProject, member: LocalMember, frame: JoinFrame,
    resumed?: boolean): Promise<void> {
    try {
      // (1.3) A joiner that takes batches or pages, in a project whose list this instance has read since it
      // started serving it, gets what the members here were told without a read: a join costs the same in a
      // room of 10,000 as in a room of 2 (a lost event reaches everyone with the session keeper's next refresh).
      if (!lp.listRead || !(member.batch || member.page)) {
        const since = lp.tick
        const list = await this.#ctx.ports.sessions.list(lp.name)
        // The list may know of sessions the other members here have not heard of (a lost event): they hear now.
        const shared = this.#ctx.ports.sessions.scope === 'cluster'
        lp.reconcile(list, since, { leaves: shared, alsoExcept: member.sessionId })
        lp.listRead = true
      }
      // The joiner gets what the others were told (the list, and news fresher than it), so it knows what they
      // know and every later member event applies to its list as to theirs (docs/protocol.md, Members).
      const told = lp.toldMembers()
      const head = lp.delivered
      if (frame.since === undefined) member.lastSeq = Math.max(member.lastSeq, head)
      // (1.3) A member that takes pages gets the count and the first page; one that takes batches, the events
      // after this list (those before are in it).
      const page = member.page ? pageOf(told, undefined, this.#ctx.config.joinedMembersMax) : null
      member.listed = true
      member.pending = null
      this.#ctx.outbox.reply(conn, {
        type: 'joined',
        project: lp.name,
        sessionId: member.sessionId,
        userId: member.userId,
        epoch: lp.epoch,
        seq: head,
        members: page === null ? told : page.members,
        count: page?.count,
        next: page?.next,
        resume: member.token,
        resumed,
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

  /**
   * The connection's session in the project ends (leave or disconnect): its
   * leave is announced once. With `hold` (a connection dropped without a
   * close frame, or closed by the server), a session that joined with
   * `resume` (1.3) is held for the grace first: a resume within it is silent.
   */
  async remove (conn: Connection, project: string, hold = false): Promise<void> {
    const { projects } = this.#ctx
    const member = conn.projects.get(project)
    if (member === undefined) return
    conn.left(project)
    const lp = projects.get(project)
    const grace = Math.min(this.#ctx.config.resumeGraceMs, this.#ctx.config.sessionTtlSeconds * 2000 / 3)
    if (lp !== undefined) {
      if (lp.members.get(member.sessionId) !== member) {
        // (1.3) Its session moved to another connection (a resume): it lives on, nobody leaves.
        projects.release(lp)
        return
      }
      lp.members.delete(member.sessionId)
      member.pending = null
      if (hold && member.token !== undefined && grace > 0) {
        // Keeps its ref on the project until the hold ends.
        const timer = setTimeout(() => { void this.#expire(lp, member) }, grace)
        timer.unref()
        lp.suspended.set(member.sessionId, { member, timer })
        return
      }
      projects.release(lp)
    }
    await this.#end(project, lp, member)
  }

  /** (1.3) A held session's grace ended: it leaves. */
  async #expire (lp: LocalProject, member: LocalMember): Promise<void> {
    if (lp.suspended.get(member.sessionId)?.member !== member) return
    lp.suspended.delete(member.sessionId)
    this.#ctx.projects.release(lp)
    await this.#end(lp.name, lp, member)
  }

  /** Removes a session that ended from the store and announces its leave, once. */
  async #end (project: string, lp: LocalProject | undefined, member: LocalMember): Promise<void> {
    const { ports, projects, logger } = this.#ctx
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
    // (1.3) Another instance resumed a session of this one: it is that one's now, silently.
    const mine = local ?? lp.suspended.get(message.member.sessionId)?.member
    if (message.event === 'join' && mine !== undefined && mine.userId === message.member.userId) {
      this.#letGo(lp, message.member.sessionId)
    }
    if (message.event === 'leave' && local !== undefined && !local.conn.closed) {
      void this.#keeper.reassert(lp, local)
      return
    }
    lp.tell(message.event, message.member)
  }
}
