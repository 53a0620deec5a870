import type { Member, Op, Presence } from '../types.js'
import type { PresenceMessage } from '../protocol/wire.js'
import type { Connection } from './connection.js'
import { SharedFrame } from './transport.js'
import { opFrame } from '../protocol/op-frame.js'
import { idempotencyKey } from '../ids.js'
import { memberFrame } from './outbox.js'
import { byJoin } from './member-page.js'

/** Sessions told gone that are remembered, so an older list does not bring them back. */
const MAX_TOLD_GONE = 1000

/** One session on this instance: a connection's membership of a project. */
export class LocalMember {
  readonly sessionId: string
  readonly userId: string
  readonly joinedAt: number
  readonly conn: Connection
  presence: Presence
  /** orders this session's presence updates in the store (last writer wins); 0 is the presence given at join */
  presenceVersion = 0
  /** last seq this member has been sent (or has, by `joined`/replay) */
  lastSeq = 0
  /** while joining or replaying: live ops held back until the replay is sent */
  held: Op[] | null = []
  /** (1.3) takes the member events of a turn in one `members` frame */
  batch = false
  /** (1.3) takes a paged members list */
  page = false
  /** (1.3) its resume token, when it joined with `resume`: an unclean drop is held for a grace */
  token: string | undefined
  /** (1.3, batch) sent `joined`: member events after it are queued for it */
  listed = false
  /** (1.3, batch) the indexes of this turn's member events it is to be sent */
  pending: number[] | null = null

  constructor (conn: Connection, sessionId: string, userId: string, presence: Presence, joinedAt: number) {
    this.conn = conn
    this.sessionId = sessionId
    this.userId = userId
    this.presence = presence
    this.joinedAt = joinedAt
  }

  /** The member as the ports and the wire see it. */
  toMember (): Member {
    return { sessionId: this.sessionId, userId: this.userId, presence: this.presence, joinedAt: this.joinedAt }
  }
}

/** (1.3) A session of this instance held after its connection dropped, until it resumes or its grace ends. */
export interface Suspended {
  readonly member: LocalMember
  readonly timer: NodeJS.Timeout
}

/** An op appended to an epoch the project's members are not in yet, and its ack. */
export interface AckAhead {
  readonly epoch: string
  readonly op: Op
  readonly ack: () => void
}

/**
 * A project with members on this instance, and everything this instance
 * keeps about it. It delivers ops to its members in seq order with no gap and
 * no duplicate, whatever order they arrive in (append results and broadcasts
 * race): out-of-order ops wait in `pending` until the gap is filled, and the
 * senders' acks wait for their op's turn.
 */
export class LocalProject {
  readonly name: string
  readonly members = new Map<string, LocalMember>()
  epoch = ''
  /** last seq delivered to local members */
  delivered = 0
  /** ops that arrived ahead of a gap, by seq */
  readonly pending = new Map<number, Op>()
  /** acks waiting for their op to be delivered in order, by seq */
  readonly acks = new Map<number, () => void>()
  /** joins in progress plus members: the project is released at zero */
  refs = 0
  ready: Promise<void> = Promise.resolve()
  gapTimer: NodeJS.Timeout | undefined
  /** told once per op delivered in order (metrics) */
  onDeliver: ((op: Op) => void) | undefined
  /** ops appended to an epoch the members are not in yet: their acks wait for the switch */
  #ahead: AckAhead[] = []
  /** by op id, the acks of local ops whose append has not answered yet */
  readonly #unacked = new Map<string, (seq: number) => void>()
  /**
   * the sessions this instance's members were told of (by `joined` lists and
   * `member` events), with when, and when their presence was last told
   */
  readonly #told = new Map<string, { member: Member, tick: number, presenceTick: number }>()
  /** sessions told gone, with when */
  readonly #toldGone = new Map<string, number>()
  /** counts the changes of what members were told */
  #tick = 0
  /** (1.3) a join read the store's member list since this project is served here: what members were told is whole */
  listRead = false
  /** (1.3) sessions held after an unclean drop (they keep their ref on the project), by id */
  readonly suspended = new Map<string, Suspended>()
  /** (1.3) this turn's member events as JSON, for the members that take them in one frame */
  #events: string[] = []
  /** (1.3) the members with events of this turn to be sent */
  #waiting: LocalMember[] = []
  #flushScheduled = false

  /** (1.3) ms member events are coalesced over for members that take batches; 0: one event-loop turn */
  readonly #batchMs: number

  constructor (name: string, memberBatchMs = 0) {
    this.name = name
    this.#batchMs = memberBatchMs
  }

  /**
   * Takes an op from the log or a broadcast. Delivers it and every op it
   * unblocks, in order. Returns true when ops are still waiting on a gap.
   */
  accept (op: Op): boolean {
    if (op.seq <= this.delivered) {
      this.#ack(op.seq)
      return this.pending.size > 0
    }
    this.pending.set(op.seq, op)
    return this.flush()
  }

  /** Delivers the pending ops that follow `delivered`; true when a gap remains. */
  flush (): boolean {
    let next = this.pending.get(this.delivered + 1)
    while (next !== undefined) {
      this.pending.delete(next.seq)
      this.delivered = next.seq
      this.#deliver(next)
      next = this.pending.get(this.delivered + 1)
    }
    return this.pending.size > 0
  }

  #deliver (op: Op): void {
    this.onDeliver?.(op)
    let frame: SharedFrame | undefined
    for (const member of this.members.values()) {
      if (member.held !== null) {
        member.held.push(op)
        continue
      }
      if (op.seq <= member.lastSeq) continue
      member.lastSeq = op.seq
      if (member.sessionId === op.sessionId) continue
      frame ??= new SharedFrame(opFrame(op))
      member.conn.send(frame)
    }
    this.#ack(op.seq)
  }

  #ack (seq: number): void {
    const ack = this.acks.get(seq)
    if (ack !== undefined) {
      this.acks.delete(seq)
      ack()
    }
  }

  /**
   * Ends a member's catch-up: sends the ops held back while it joined or
   * replayed that are newer than what it has, and makes it live.
   */
  release (member: LocalMember): void {
    const held = member.held
    member.held = null
    if (held === null) return
    for (const op of held) {
      if (op.seq <= member.lastSeq) continue
      member.lastSeq = op.seq
      if (member.sessionId !== op.sessionId) member.conn.send(opFrame(op))
    }
  }

  /**
   * Sends a frame to every member but one or two sessions. The member events
   * of this turn go first, so a member hears of a session before its presence.
   */
  sendOthers (text: string, exceptSessionId: string | null, alsoExcept: string | null = null): void {
    if (this.#waiting.length > 0) this.flushMembers()
    const frame = new SharedFrame(text)
    for (const member of this.members.values()) {
      if (member.sessionId !== exceptSessionId && member.sessionId !== alsoExcept) member.conn.send(frame)
    }
  }

  /** The tick of the last change of what members were told: a list read after it is fresher. */
  get tick (): number {
    return this.#tick
  }

  /** Whether members were told of this session (and not of its leave). */
  told (sessionId: string): boolean {
    return this.#told.has(sessionId)
  }

  /**
   * Tells the local members (but the session itself and `alsoExcept`) that a
   * session joined or left, unless it changes nothing they were told: a join
   * of a session they know (its presence is sent instead when it differs) or
   * a leave of one they do not. So every instance passes each session's join
   * and leave on once, however many times it hears them. Returns whether a
   * `member` frame was sent.
   */
  tell (event: 'join' | 'leave', member: Member, alsoExcept: string | null = null): boolean {
    const id = member.sessionId
    const known = this.#told.get(id)
    if (event === 'join' && known !== undefined) {
      if (JSON.stringify(known.member.presence) !== JSON.stringify(member.presence)) {
        this.#told.set(id, { member, tick: known.tick, presenceTick: ++this.#tick })
        const { userId, presence: state } = member
        const frame: PresenceMessage = { type: 'presence', project: this.name, sessionId: id, userId, state }
        this.sendOthers(JSON.stringify(frame), id, alsoExcept)
      }
      return false
    }
    if (event === 'leave' && known === undefined) return false
    this.#tick++
    if (event === 'join') {
      this.#told.set(id, { member, tick: this.#tick, presenceTick: this.#tick })
      this.#toldGone.delete(id)
    } else {
      this.#told.delete(id)
      this.#toldGone.set(id, this.#tick)
      if (this.#toldGone.size > MAX_TOLD_GONE) this.#toldGone.delete(this.#toldGone.keys().next().value as string)
    }
    this.#announce(event, member, alsoExcept)
    return true
  }

  /**
   * Sends a member event to every member but the session itself and
   * `alsoExcept`: at once as a `member` frame, or, to a member that takes
   * them in one frame (1.3 `member_batch`), at the end of this turn with the
   * turn's other events. Such a member is sent only events after its `joined`
   * (its list has the ones before).
   */
  #announce (event: 'join' | 'leave', member: Member, alsoExcept: string | null): void {
    const id = member.sessionId
    let single: SharedFrame | undefined
    let index = -1
    for (const m of this.members.values()) {
      if (m.sessionId === id || m.sessionId === alsoExcept) continue
      if (!m.batch) {
        single ??= new SharedFrame(memberFrame(this.name, event, member))
        m.conn.send(single)
        continue
      }
      if (!m.listed) continue
      if (index === -1) index = this.#events.push(JSON.stringify({ event, member })) - 1
      if (m.pending === null) {
        m.pending = []
        this.#waiting.push(m)
      }
      m.pending.push(index)
    }
    if (index !== -1 && !this.#flushScheduled) {
      this.#flushScheduled = true
      const flush = (): void => {
        this.#flushScheduled = false
        this.flushMembers()
      }
      if (this.#batchMs > 0) setTimeout(flush, this.#batchMs).unref()
      else setImmediate(flush)
    }
  }

  /**
   * Sends this turn's member events (1.3): one `members` frame per member
   * that has some, the same frame to every member that has them all.
   */
  flushMembers (): void {
    const events = this.#events
    const waiting = this.#waiting
    this.#events = []
    this.#waiting = []
    if (waiting.length === 0) return
    const head = `{"type":"members","project":${JSON.stringify(this.name)},"events":[`
    let all: SharedFrame | undefined
    for (const m of waiting) {
      const pending = m.pending
      m.pending = null
      if (pending === null || m.conn.closed || this.members.get(m.sessionId) !== m) continue
      if (pending.length === events.length) {
        all ??= new SharedFrame(head + events.join(',') + ']}')
        m.conn.send(all)
      } else {
        m.conn.send(head + pending.map((i) => events[i]).join(',') + ']}')
      }
    }
  }

  /** A session's presence changed: what members were told of it follows (a list read before this is older news). */
  toldPresence (sessionId: string, presence: Presence): void {
    const known = this.#told.get(sessionId)
    if (known !== undefined) {
      this.#told.set(sessionId, { member: { ...known.member, presence }, tick: known.tick, presenceTick: ++this.#tick })
    }
  }

  /**
   * The members as this instance's members were told of them, oldest join
   * first: what a joiner gets in `joined`, so it knows what the others know
   * and the events after it apply to the same list.
   */
  toldMembers (): Member[] {
    return [...this.#told.values()].map((known) => known.member).sort(byJoin)
  }

  /**
   * Brings what the local members were told in line with the store's `list`,
   * read after tick `since`: sessions listed and not told of are announced
   * as joins (and a listed presence that differs, as `presence`), sessions
   * told of and not listed (when `leaves`) as leaves. A session whose join,
   * leave or presence was told after `since` is left alone: that news is
   * fresher than the list. A session connected here is what this instance
   * says it is, whatever the list says: its presence is the local one, and
   * it is not told gone (the session keeper writes it back). `alsoExcept`
   * (a joiner that is sent the told list itself) is told nothing.
   */
  reconcile (list: readonly Member[], since: number, options: { leaves: boolean, alsoExcept?: string | null }): void {
    const listed = new Set<string>()
    const except = options.alsoExcept ?? null
    for (const entry of list) {
      listed.add(entry.sessionId)
      const local = this.members.get(entry.sessionId)
      const member = local !== undefined && !local.conn.closed ? local.toMember() : entry
      const goneAt = this.#toldGone.get(member.sessionId)
      if (goneAt !== undefined && goneAt > since) continue
      const known = this.#told.get(member.sessionId)
      if (known !== undefined && (known.tick > since || known.presenceTick > since)) continue
      this.tell('join', member, except)
    }
    if (!options.leaves) return
    for (const [id, known] of [...this.#told]) {
      if (listed.has(id) || known.tick > since) continue
      const local = this.members.get(id)
      if (local !== undefined && !local.conn.closed) continue
      this.tell('leave', known.member, except)
    }
  }

  /**
   * Remembers the ack of a local op until its append answers (the returned
   * function forgets it): a catch-up read may show the op first.
   */
  expectAck (userId: string, id: string, ack: (seq: number) => void): () => void {
    const key = idempotencyKey(userId, id)
    // A second op of the sender with the same id in flight is a duplicate: the first one's ack stands.
    if (this.#unacked.has(key)) return () => {}
    this.#unacked.set(key, ack)
    return () => {
      if (this.#unacked.get(key) === ack) this.#unacked.delete(key)
    }
  }

  /** The ack of a local op of this sender and id whose append has not answered, if any. */
  unackedAck (userId: string, id: string): ((seq: number) => void) | undefined {
    return this.#unacked.get(idempotencyKey(userId, id))
  }

  addAhead (entry: AckAhead): void {
    this.#ahead.push(entry)
  }

  /** Removes and returns the acks ahead that match. */
  takeAhead (match: (a: AckAhead) => boolean): AckAhead[] {
    const taken = this.#ahead.filter(match)
    if (taken.length > 0) this.#ahead = this.#ahead.filter((a) => !match(a))
    return taken
  }

  /** The project is no longer served here: stops its timer and sends every ack still waiting. */
  dispose (): void {
    for (const held of this.suspended.values()) clearTimeout(held.timer)
    this.suspended.clear()
    if (this.gapTimer !== undefined) clearTimeout(this.gapTimer)
    this.gapTimer = undefined
    for (const ack of this.acks.values()) ack()
    this.acks.clear()
    for (const a of this.takeAhead(() => true)) a.ack()
  }
}
