import type { Op } from '../types.js'
import type { OpFrame } from '../protocol/frames.js'
import type { ResetFrame } from '../protocol/wire.js'
import { rateLimited, type FlowError } from '../errors.js'
import { creationRefused } from './rate-limiter.js'
import type { Snapshots } from './snapshots.js'
import { randomId } from '../ids.js'
import type { Connection } from './connection.js'
import type { HubContext } from './context.js'
import type { AckAhead, LocalMember, LocalProject } from './project.js'
import { checkOp } from './op-hook.js'
import { SharedFrame } from './transport.js'

/** How long an out-of-order op waits for the ops before it to arrive by broadcast. */
const GAP_FILL_DELAY_MS = 100
/** Ops of one connection waiting for the host's check at once; more are refused (rate_limited). */
const MAX_CHECKING = 64
/** Ops per page of a catch-up read from the log (pages are bounded by FLOW_REPLAY_PAGE_BYTES too). */
const CATCH_UP_PAGE = 500

/** What an append through the log came to. */
export type Appended =
  | { duplicate: true, seq: number, created?: undefined }
  | { duplicate: false, seq: number, op: Op, epoch: string, created: boolean }

/**
 * The op pipeline, from intake to every member: appends through the op log,
 * acks in seq order, in-order delivery with gap fill, resync when the epoch
 * changes. One invariant runs through all of it (each member gets each op
 * once, in seq order, and the sender its ack after every earlier op), which
 * is why it is one file; a member's catch-up (replay.ts) holds its live ops
 * back meanwhile and keeps the same invariant.
 */
export class Delivery {
  readonly #ctx: HubContext
  readonly #snapshots: Snapshots
  /** ops accepted for append whose result is not in yet */
  #inFlight = 0

  constructor (ctx: HubContext, snapshots: Snapshots) {
    this.#ctx = ctx
    this.#snapshots = snapshots
  }

  /** ops waiting for the log (appends and relays) */
  get inFlight (): number { return this.#inFlight }

  /** An op frame of a joined member: appended, acked in order, delivered to the others. */
  op (conn: Connection, frame: OpFrame): void {
    const { outbox } = this.#ctx
    const member = conn.projects.get(frame.project)
    if (member === undefined) {
      outbox.error(conn, 'not_joined', `not joined to ${frame.project}`, frame.ref, frame.project)
      return
    }
    const shed = this.shed()
    if (shed !== null) {
      // Not the client's abuse: no strike against its rate limit.
      outbox.error(conn, 'rate_limited', shed.message, frame.ref, frame.project)
      return
    }
    if (!conn.identity.allows(frame.project, 'write')) {
      outbox.error(conn, 'forbidden', `read-only in ${frame.project}: ops are refused`, frame.ref, frame.project)
      return
    }
    const id = frame.id ?? randomId(12)
    const hook = this.#ctx.onOp
    if (hook === undefined) {
      this.#accept(conn, frame, member, id)
      return
    }
    // The host's check, in the order the ops came: each waits for the one before.
    if (conn.checking >= MAX_CHECKING) {
      const message = 'too many ops waiting for the server\'s check; try again'
      outbox.error(conn, 'rate_limited', message, frame.ref, frame.project)
      return
    }
    conn.checking++
    const check = { project: frame.project, id, userId: member.userId, data: frame.data }
    conn.checks = conn.checks.then(async () => {
      try {
        await checkOp(hook, check, conn.identity)
      } catch (err) {
        outbox.fail(conn, err, frame)
        return
      }
      if (!conn.closed) this.#accept(conn, frame, member, id)
    }).finally(() => { conn.checking-- })
  }

  #accept (conn: Connection, frame: OpFrame, member: LocalMember, id: string): void {
    const { outbox, projects } = this.#ctx
    let acked = false
    const ack = (seq: number): void => {
      if (acked) return
      acked = true
      outbox.reply(conn, { type: 'ack', project: frame.project, id, seq, ref: frame.ref })
    }
    // The log may show the op (a catch-up read) before the append answers: it is acked when delivered.
    const forget = projects.get(frame.project)?.expectAck(member.userId, id, ack) ?? (() => {})
    this.append(frame.project, id, member.userId, member.sessionId, frame.data).finally(forget).then((result) => {
      if (result.duplicate) {
        ack(result.seq)
        return
      }
      const lp = projects.get(frame.project)
      if (lp === undefined || !lp.members.has(member.sessionId)) {
        ack(result.seq)
        if (lp !== undefined) this.deliver(lp, result.op, result.epoch)
        return
      }
      if (result.epoch !== lp.epoch) {
        // Appended in another epoch than the members see (a switch in flight):
        // the op and its ack wait for the members' `reset` to that epoch, so
        // the ack's seq reaches the sender in the epoch it belongs to.
        const entry: AckAhead = { epoch: result.epoch, op: result.op, ack: () => { ack(result.seq) } }
        lp.addAhead(entry)
        this.#resync(lp).catch((err: unknown) => {
          this.#ctx.logger.warn({ err, project: lp.name }, 'resync after an epoch change failed')
        }).finally(() => {
          // The project did not reach that epoch (the log moved on): ack all the same.
          if (lp.takeAhead((a) => a === entry).length > 0) entry.ack()
        })
        return
      }
      // The ack goes out when the op is delivered in order, so the sender
      // sees its ack after every op before it.
      lp.acks.set(result.seq, () => { ack(result.seq) })
      this.deliver(lp, result.op, result.epoch)
    }, (err: unknown) => {
      outbox.fail(conn, err, frame)
    })
  }

  /**
   * An op posted over HTTP: appended and broadcast like a client op. The
   * first op of a project creates it, within the poster's budget of new
   * projects per minute; past it, an op to a project that does not exist is
   * refused with `rate_limited` and creates nothing.
   */
  async post (project: string, userId: string, id: string, data: unknown): Promise<Appended> {
    const shed = this.shed()
    if (shed !== null) throw shed
    const { creations } = this.#ctx
    const result = await this.append(project, id, userId, null, data, creations.allows(userId, Date.now()))
    if (result === null) throw creationRefused(project)
    if (result.created === true) creations.created(userId, Date.now())
    if (!result.duplicate) {
      const lp = this.#ctx.projects.get(project)
      if (lp !== undefined && lp.epoch !== '') this.deliver(lp, result.op, result.epoch)
    }
    return result
  }

  /**
   * Back-pressure: with too many ops waiting for the log, a new one is
   * refused (and counted) rather than queued; the client retries it with its
   * id. Null while there is room.
   */
  shed (): FlowError | null {
    if (this.#inFlight < this.#ctx.config.maxOpsInFlight) return null
    this.#ctx.stats.opsShed++
    return rateLimited('server busy: too many ops waiting for the log; this one was dropped, try again')
  }

  /**
   * Appends through the log, counting what is in flight for the drain.
   * `create: false` appends only to a log that exists: null when it does not.
   */
  async append (project: string, id: string, userId: string, sessionId: string | null, data: unknown): Promise<Appended>
  async append (project: string, id: string, userId: string, sessionId: string | null, data: unknown,
    create: boolean): Promise<Appended | null>
  async append (project: string, id: string, userId: string, sessionId: string | null, data: unknown,
    create = true): Promise<Appended | null> {
    const { ports, stats, projects } = this.#ctx
    this.#inFlight++
    try {
      const op = { project, id, userId, sessionId, data, ts: Date.now() }
      const result = create ? await ports.log.append(op) : await ports.log.append({ ...op, create: false })
      if (result.missing === true) return null
      if (result.duplicate) {
        stats.opsDuplicate++
        return { duplicate: true, seq: result.seq }
      }
      stats.opsAppended++
      this.#snapshots.appended(project, result.epoch, result.op.seq)
      // A log that publishes in its append (Redis, one script) keeps publish order = seq order.
      if (!ports.log.publishesOps) {
        projects.publish(project, ports.log.scope === 'instance'
          ? { kind: 'op', epoch: result.epoch, op: result.op, relay: true }
          : { kind: 'op', epoch: result.epoch, op: result.op })
      }
      return { duplicate: false, seq: result.op.seq, op: result.op, epoch: result.epoch, created: result.created }
    } finally {
      this.#inFlight--
    }
  }

  /** An op another instance published. */
  received (lp: LocalProject, op: Op, epoch: string, relay: boolean): void {
    // Seqs from another log (ours is local, or theirs was): re-sequence here.
    if (this.#ctx.ports.log.scope === 'instance' || relay) this.#relay(lp, op)
    else if (lp.epoch === '') lp.pending.set(op.seq, op)
    else this.deliver(lp, op, epoch)
  }

  /**
   * An op sequenced by another log is appended to ours (its id keeps it
   * idempotent: each log takes it once) and delivered with our seq. Without a
   * shared log this makes seqs per instance; in a mixed fleet (some instances
   * on the Redis log, some not yet) it carries ops across both.
   */
  #relay (lp: LocalProject, op: Op): void {
    this.#inFlight++
    const { ports, projects, logger } = this.#ctx
    const { project, id, userId, sessionId, data, ts } = op
    ports.log.append({ project, id, userId, sessionId, data, ts }).then((result) => {
      if (!result.duplicate && projects.isCurrent(lp)) this.deliver(lp, result.op, result.epoch)
    }, (err: unknown) => {
      logger.warn({ err, project: lp.name }, 'relaying an op from another instance failed')
    }).finally(() => { this.#inFlight-- })
  }

  /** Feeds an op into the project's in-order delivery. */
  deliver (lp: LocalProject, op: Op, epoch: string): void {
    if (epoch !== lp.epoch) {
      this.#resync(lp).catch((err: unknown) => {
        this.#ctx.logger.warn({ err, project: lp.name }, 'resync after an epoch change failed')
      })
      return
    }
    if (lp.accept(op)) this.scheduleGapFill(lp)
  }

  /** Fills the project's gap from the log unless the missing ops arrive by broadcast first. */
  scheduleGapFill (lp: LocalProject): void {
    if (lp.gapTimer !== undefined) return
    lp.gapTimer = setTimeout(() => {
      lp.gapTimer = undefined
      void this.#fillGap(lp)
    }, GAP_FILL_DELAY_MS)
    lp.gapTimer.unref()
  }

  /** Reads the ops a broadcast lost from the log and delivers them in order. */
  async #fillGap (lp: LocalProject): Promise<void> {
    try {
      if (lp.pending.size > 0) await this.#catchUp(lp)
    } catch (err) {
      this.#ctx.logger.warn({ err, project: lp.name }, 'gap fill failed; retrying')
      this.scheduleGapFill(lp)
    }
  }

  /** Delivers every op the log has beyond what the project delivered; resets when it cannot. */
  async #catchUp (lp: LocalProject): Promise<void> {
    while (this.#ctx.projects.isCurrent(lp)) {
      const page = await this.#ctx.ports.log.read(lp.name, lp.delivered, CATCH_UP_PAGE, lp.epoch)
      if (page.reset) {
        await this.#resync(lp, true)
        return
      }
      if (page.ops.length === 0) return
      for (const op of page.ops) {
        const ack = lp.unackedAck(op.userId, op.id)
        if (ack !== undefined && op.seq > lp.delivered && !lp.acks.has(op.seq)) {
          lp.acks.set(op.seq, () => { ack(op.seq) })
        }
        lp.accept(op)
      }
      if ((page.ops.at(-1) as Op).seq >= page.head) return
    }
  }

  /**
   * Re-reads every local project's position (after a port switched to or
   * from its fallback, or the subscriber reconnected): missed ops are
   * delivered, an epoch change resets the members.
   */
  async resyncAll (): Promise<void> {
    await Promise.all([...this.#ctx.projects.values()].map(async (lp) => {
      await this.#resync(lp).catch((err: unknown) => {
        this.#ctx.logger.warn({ err, project: lp.name }, 'resync failed')
      })
    }))
  }

  /**
   * Brings a project to the log's position: ops it missed in the same epoch
   * are delivered; when the epoch changed (a fallback, a recovery, Redis
   * data lost) or history no longer reaches back, every member gets `reset`.
   */
  async #resync (lp: LocalProject, force = false): Promise<void> {
    // What was delivered before asking: the log held those ops before it answered (whatever connection told of them).
    const delivered = lp.delivered
    const epoch = lp.epoch
    // open, not head: members are here, so the project has a log (a lost one comes back with a new epoch).
    const position = await this.#ctx.ports.log.open(lp.name)
    if (!force && position.epoch === lp.epoch) {
      if (position.seq > lp.delivered) await this.#catchUp(lp)
      if (position.epoch !== epoch || position.seq >= delivered) return
      // The log is below ops this project delivered, in the same epoch: the
      // store lost them and the log did not move to a new epoch (the Redis
      // log does when it knows: adapters/redis/watermarks.ts). The members
      // reload from the log's head rather than take its next ops for ones
      // they already have.
      this.#ctx.logger.warn({ project: lp.name, epoch, delivered, head: position.seq },
        'the op log is below ops this instance delivered in the same epoch: its members get reset')
    }
    // Ops appended to the old epoch and waiting on a gap: their senders get
    // their acks now, in seq order, before the `reset` (the seqs are the old epoch's).
    const acks = [...lp.acks].sort(([a], [b]) => a - b)
    lp.acks.clear()
    for (const [, ack] of acks) ack()
    lp.epoch = position.epoch
    lp.delivered = position.seq
    lp.pending.clear()
    const reset: ResetFrame = { type: 'reset', project: lp.name, epoch: position.epoch, seq: position.seq }
    const frame = new SharedFrame(JSON.stringify(reset))
    for (const member of lp.members.values()) {
      member.lastSeq = position.seq
      if (member.held !== null) member.held = []
      member.conn.send(frame)
    }
    // Ops appended to this epoch before the switch: acked now when the reset's
    // head covers them, else delivered (and acked) in seq order.
    const ahead = lp.takeAhead((a) => a.epoch === position.epoch).sort((a, b) => a.op.seq - b.op.seq)
    for (const a of ahead) {
      if (a.op.seq <= position.seq) {
        a.ack()
      } else {
        lp.acks.set(a.op.seq, a.ack)
        this.deliver(lp, a.op, a.epoch)
      }
    }
  }
}
