import type { Member, Op, Presence } from '../types.js'
import type { Connection } from './connection.js'
import { SharedFrame } from './transport.js'
import { opFrame } from '../protocol/op-frame.js'

/** One session on this instance: a connection's membership of a project. */
export class LocalMember {
  readonly sessionId: string
  readonly userId: string
  readonly joinedAt: number
  readonly conn: Connection
  presence: Presence
  /** last seq this member has been sent (or has, by `joined`/replay) */
  lastSeq = 0
  /** while joining or replaying: live ops held back until the replay is sent */
  held: Op[] | null = []

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

  constructor (name: string) {
    this.name = name
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

  /** Sends a frame to every member but one session. */
  sendOthers (text: string, exceptSessionId: string | null): void {
    const frame = new SharedFrame(text)
    for (const member of this.members.values()) {
      if (member.sessionId !== exceptSessionId) member.conn.send(frame)
    }
  }

  /**
   * Remembers the ack of a local op until its append answers (the returned
   * function forgets it): a catch-up read may show the op first.
   */
  expectAck (id: string, ack: (seq: number) => void): () => void {
    // A second op with the same id in flight is a duplicate: the first one's ack stands.
    if (this.#unacked.has(id)) return () => {}
    this.#unacked.set(id, ack)
    return () => {
      if (this.#unacked.get(id) === ack) this.#unacked.delete(id)
    }
  }

  /** The ack of a local op with this id whose append has not answered, if any. */
  unackedAck (id: string): ((seq: number) => void) | undefined {
    return this.#unacked.get(id)
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
    if (this.gapTimer !== undefined) clearTimeout(this.gapTimer)
    this.gapTimer = undefined
    for (const ack of this.acks.values()) ack()
    this.acks.clear()
    for (const a of this.takeAhead(() => true)) a.ack()
  }
}
