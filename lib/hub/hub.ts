import type { Broadcaster, BroadcastMessage } from '../../ports/broadcaster.js'
import type { OperationLog } from '../../ports/operation-log.js'
import type { ExpiredSession, SessionStore } from '../../ports/session-store.js'
import type { FlowConfig } from '../config.js'
import type { Member, Op, Presence } from '../types.js'
import { ProtocolError, type ErrorCode } from '../errors.js'
import { randomId, isOpId, isProjectId } from '../ids.js'
import { jsonBytes, MAX_JSON_DEPTH, nestsDeeper, parseFrame, peekFrame, type ClientFrame, type JoinFrame, type LeaveFrame, type OpFrame, type PresenceFrame, type Ref, type SyncFrame } from '../protocol/frames.js'
import { Stats } from '../stats.js'
import { Connection } from './connection.js'
import { LocalMember, LocalProject } from './project.js'
import { opFrame } from '../protocol/op-frame.js'
import { AbuseTracker, TokenBucket } from './rate-limiter.js'
import { CLOSE, SharedFrame, type Identity, type Transport } from './transport.js'

export interface HubPorts {
  readonly sessions: SessionStore
  readonly broadcaster: Broadcaster
  readonly log: OperationLog
}

export interface HubLogger {
  info (obj: object, msg?: string): void
  warn (obj: object, msg?: string): void
  error (obj: object, msg?: string): void
  debug (obj: object, msg?: string): void
}

export type HubConfig = Pick<FlowConfig,
  'sessionTtlSeconds' | 'maxPayloadBytes' | 'maxPresenceBytes' | 'maxProjectsPerConnection' |
  'rateLimit' | 'rateBurst' | 'heartbeatMs' | 'maxBufferedBytes' | 'shutdownTimeoutMs' | 'maxOpsInFlight'>

export interface HubOptions {
  readonly config: HubConfig
  readonly ports: HubPorts
  readonly instanceId: string
  readonly logger: HubLogger
  readonly stats?: Stats
}

/** Result of an op posted over HTTP. */
export interface PostedOp {
  readonly project: string
  readonly id: string
  readonly seq: number
  readonly duplicate: boolean
}

/** Page of history for the HTTP API. */
export interface History {
  readonly project: string
  readonly epoch: string
  readonly seq: number
  readonly ops: readonly Op[]
  readonly reset: boolean
}

/** Longest stretch of dropped frames, with no quiet second, before 1008. */
const ABUSE_WINDOW_MS = 5000
/** Frames one connection may have waiting behind a join or leave. */
const MAX_QUEUED_FRAMES = 4096
/** How long an out-of-order op waits for the ops before it to arrive by broadcast. */
const GAP_FILL_DELAY_MS = 100
/** How often expired sessions (and those of crashed instances) are reaped, at most. */
const REAP_INTERVAL_MS = 1000
/** Page size of replays read from the log. */
const REPLAY_PAGE = 500

/**
 * The collaboration hub: connections, projects, sessions and the order of
 * delivery. It knows the ports, not Fastify, ws or Redis.
 */
export class Hub {
  readonly stats: Stats
  readonly instanceId: string
  readonly #config: HubConfig
  readonly #ports: HubPorts
  readonly #log: HubLogger
  readonly #connections = new Set<Connection>()
  readonly #projects = new Map<string, LocalProject>()
  readonly #timers: NodeJS.Timeout[] = []
  /** ops accepted for append whose result is not in yet */
  #inFlight = 0
  #draining = false
  #reaping = false
  /** sessions whose leave was announced though the store kept them */
  readonly #announced = new Set<string>()
  /** per project, ops appended to an epoch its members are not in yet: their acks wait for the switch */
  readonly #ahead = new Map<LocalProject, AckAhead[]>()
  /** per project and op id, the acks of local ops whose append has not answered yet */
  readonly #unacked = new Map<string, Map<string, (seq: number) => void>>()
  #drained: Promise<void> | undefined
  #closed = false
  readonly #sink = (conn: Connection, frame: string | SharedFrame): void => { this.#send(conn, frame) }

  constructor (options: HubOptions) {
    this.#config = options.config
    this.#ports = options.ports
    this.#log = options.logger
    this.instanceId = options.instanceId
    this.stats = options.stats ?? new Stats()
    const heartbeat = setInterval(() => { this.#heartbeat() }, this.#config.heartbeatMs)
    const sessions = setInterval(() => { void this.#refreshSessions() }, Math.max(500, this.#config.sessionTtlSeconds * 1000 / 3))
    // Reaping is cheap (one script) and is what announces a crashed
    // instance's sessions: run it often, so they leave within seconds.
    const reaper = setInterval(() => { void this.#reap() }, Math.min(REAP_INTERVAL_MS, this.#config.sessionTtlSeconds * 1000 / 3))
    heartbeat.unref()
    sessions.unref()
    reaper.unref()
    this.#timers.push(heartbeat, sessions, reaper)
  }

  get connectionCount (): number { return this.#connections.size }
  get projectCount (): number { return this.#projects.size }
  get sessionCount (): number {
    let n = 0
    for (const p of this.#projects.values()) n += p.members.size
    return n
  }

  get draining (): boolean { return this.#draining }
  /** ops waiting for the log (appends and relays) */
  get opsInFlight (): number { return this.#inFlight }

  // ---------------------------------------------------------------- connections

  /**
   * Takes a new client connection. The caller wires the transport's events to
   * `frame`, `pong` and `disconnect`.
   */
  connect (transport: Transport, identity: Identity): Connection {
    const now = Date.now()
    const conn = new Connection(randomId(9), transport, identity,
      new TokenBucket(this.#config.rateLimit, this.#config.rateBurst, now), new AbuseTracker(ABUSE_WINDOW_MS), this.#sink)
    this.#connections.add(conn)
    this.stats.connectionsOpened++
    if (this.#draining) transport.close(CLOSE.goingAway, 'server shutting down')
    return conn
  }

  /** A pong (or any sign of life) from the client. */
  pong (conn: Connection): void {
    conn.missedPings = 0
  }

  /** One WebSocket message from the client. Never throws. */
  frame (conn: Connection, data: Buffer | string, isBinary: boolean): void {
    if (conn.closed) return
    this.stats.framesIn++
    conn.missedPings = 0
    const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length
    if (size > this.#config.maxPayloadBytes) {
      this.#closeConn(conn, CLOSE.tooBig, 'frame too large')
      return
    }
    const now = Date.now()
    if (!conn.bucket.take(now)) {
      this.stats.rateLimited++
      if (conn.abuse.drop(now)) {
        this.#closeConn(conn, CLOSE.policy, 'rate limit exceeded')
        return
      }
      // Read only for the ref and project, so the client knows which frame was dropped.
      const dropped = peekFrame(data, isBinary)
      this.#error(conn, 'rate_limited', 'too many frames: this one was dropped', dropped.ref, dropped.project)
      return
    }
    const parsed = parseFrame(data, isBinary)
    if (!parsed.ok) {
      this.stats.framesRejected++
      this.#error(conn, parsed.code, parsed.message, parsed.ref, parsed.project)
      return
    }
    const frame = parsed.frame
    this.stats.countFrame(frame.type)
    if (this.#draining && frame.type !== 'ping') {
      this.#error(conn, 'unavailable', 'server is shutting down', frame.ref, 'project' in frame ? frame.project : undefined)
      return
    }
    switch (frame.type) {
      case 'ping':
        this.#reply(conn, withRef({ type: 'pong', ts: Date.now() }, frame.ref))
        return
      case 'op':
        // Ops do not wait for each other, only for a join or leave before them.
        if (conn.queued === 0) this.#op(conn, frame)
        else this.#enqueue(conn, frame)
        return
      case 'presence':
        if (conn.queued === 0) this.#presence(conn, frame)
        else this.#enqueue(conn, frame)
        return
      default:
        this.#enqueue(conn, frame)
    }
  }

  /** Runs a frame after the frames before it on this connection. */
  #enqueue (conn: Connection, frame: ClientFrame): void {
    if (conn.queued >= MAX_QUEUED_FRAMES) {
      this.#error(conn, 'rate_limited', 'too many frames waiting: this one was dropped', frame.ref, 'project' in frame ? frame.project : undefined)
      return
    }
    conn.queued++
    conn.chain = conn.chain.then(async () => {
      try {
        if (!conn.closed) await this.#dispatch(conn, frame)
      } catch (err) {
        this.#fail(conn, err, frame)
      } finally {
        conn.queued--
      }
    })
  }

  async #dispatch (conn: Connection, frame: ClientFrame): Promise<void> {
    switch (frame.type) {
      case 'join': return await this.#join(conn, frame)
      case 'leave': return await this.#leave(conn, frame)
      case 'sync': return await this.#sync(conn, frame)
      case 'op': return this.#op(conn, frame)
      case 'presence': return this.#presence(conn, frame)
      case 'ping': return this.#reply(conn, withRef({ type: 'pong', ts: Date.now() }, frame.ref))
    }
  }

  /** The connection closed: its sessions leave at once. */
  disconnect (conn: Connection): void {
    if (!this.#connections.delete(conn)) return
    conn.closed = true
    this.stats.connectionsClosed++
    // After whatever the connection had queued, so a join in flight is undone too.
    conn.chain = conn.chain.then(async () => {
      await Promise.all([...conn.projects.keys()].map(async (project) => {
        await this.#removeMember(conn, project).catch((err: unknown) => {
          this.#log.warn({ err, project }, 'leave on disconnect failed')
        })
      }))
    })
  }

  // ---------------------------------------------------------------- frames

  async #join (conn: Connection, frame: JoinFrame): Promise<void> {
    const { project } = frame
    if (!conn.identity.allows(project)) throw new ProtocolError('forbidden', `not allowed to join ${project}`)
    const existing = conn.projects.get(project)
    if (existing !== undefined) {
      // Joined already: answer `joined` again, replay when asked, membership unchanged.
      const lp = this.#projects.get(project) as LocalProject
      existing.held ??= []
      await this.#welcome(conn, lp, existing, frame)
      return
    }
    if (conn.projects.size >= this.#config.maxProjectsPerConnection) {
      throw new ProtocolError('limit_exceeded', `at most ${this.#config.maxProjectsPerConnection} projects per connection`)
    }
    const presence = frame.presence ?? {}
    if (jsonBytes(presence) > this.#config.maxPresenceBytes) {
      throw new ProtocolError('limit_exceeded', `presence is larger than ${this.#config.maxPresenceBytes} bytes`)
    }
    const lp = await this.#acquire(project)
    const member = new LocalMember(conn, randomId(12), conn.identity.userId, presence, Date.now())
    try {
      await this.#ports.sessions.add(project, toMember(member))
    } catch (err) {
      this.#releaseProject(lp)
      throw err
    }
    if (conn.closed) {
      // The socket went away while we joined: undo.
      await this.#ports.sessions.remove(project, member.sessionId).catch(() => null)
      this.#releaseProject(lp)
      return
    }
    member.lastSeq = lp.delivered
    lp.members.set(member.sessionId, member)
    conn.projects.set(project, member)
    this.#announce(lp, { kind: 'member', event: 'join', member: toMember(member) }, member.sessionId)
    await this.#welcome(conn, lp, member, frame)
  }

  /** Sends `joined`, then the replay or `reset` when `since` is given, then makes the member live. */
  async #welcome (conn: Connection, lp: LocalProject, member: LocalMember, frame: JoinFrame): Promise<void> {
    try {
      const members = await this.#ports.sessions.list(lp.name)
      const head = lp.delivered
      if (frame.since === undefined) member.lastSeq = Math.max(member.lastSeq, head)
      this.#reply(conn, withRef({
        type: 'joined',
        project: lp.name,
        sessionId: member.sessionId,
        userId: member.userId,
        epoch: lp.epoch,
        seq: head,
        members
      }, frame.ref))
      if (frame.since !== undefined) await this.#replay(lp, member, frame.since, frame.epoch, head)
    } finally {
      lp.release(member)
    }
  }

  /**
   * Sends the ops since `since` up to `target` (what the project has
   * delivered live), or `reset`. The member's held ops follow it.
   */
  async #replay (lp: LocalProject, member: LocalMember, since: number, epoch: string | undefined, target: number): Promise<void> {
    let from = since
    for (;;) {
      const page = await this.#ports.log.read(lp.name, from, REPLAY_PAGE, epoch)
      if (page.reset || page.epoch !== lp.epoch) {
        member.lastSeq = Math.max(member.lastSeq, target)
        this.#reply(member.conn, { type: 'reset', project: lp.name, epoch: lp.epoch, seq: target })
        return
      }
      for (const op of page.ops) {
        if (op.seq > target) break
        member.conn.send(opFrame(op))
        from = op.seq
      }
      if (from >= target || page.ops.length === 0 || (page.ops.at(-1) as Op).seq >= target) break
    }
    member.lastSeq = Math.max(since, target)
  }

  async #leave (conn: Connection, frame: LeaveFrame): Promise<void> {
    if (!conn.projects.has(frame.project)) throw new ProtocolError('not_joined', `not joined to ${frame.project}`)
    await this.#removeMember(conn, frame.project)
    this.#reply(conn, withRef({ type: 'left', project: frame.project }, frame.ref))
  }

  async #removeMember (conn: Connection, project: string): Promise<void> {
    const member = conn.projects.get(project)
    if (member === undefined) return
    conn.projects.delete(project)
    const lp = this.#projects.get(project)
    if (lp !== undefined) {
      lp.members.delete(member.sessionId)
      this.#releaseProject(lp)
    }
    let failed = false
    const removed = await this.#ports.sessions.remove(project, member.sessionId).catch((err: unknown) => {
      this.#log.warn({ err, project }, 'removing a session failed; it expires within its TTL')
      failed = true
      return null
    })
    // null without a failure: a reaper took it and announced it already.
    if (removed === null && !failed) return
    // On a failure the store expires it later; announce now, once.
    if (failed) this.#remember(member.sessionId)
    const announced = removed ?? toMember(member)
    if (lp !== undefined) lp.sendOthers(memberFrame(project, 'leave', announced), member.sessionId)
    this.#publish(project, { kind: 'member', event: 'leave', member: announced })
  }

  async #sync (conn: Connection, frame: SyncFrame): Promise<void> {
    const member = conn.projects.get(frame.project)
    if (member === undefined) throw new ProtocolError('not_joined', `not joined to ${frame.project}`)
    const lp = this.#projects.get(frame.project) as LocalProject
    member.held ??= []
    try {
      await this.#replay(lp, member, frame.since, frame.epoch, lp.delivered)
    } finally {
      lp.release(member)
    }
    this.#reply(conn, withRef({ type: 'synced', project: lp.name, epoch: lp.epoch, seq: member.lastSeq }, frame.ref))
  }

  #op (conn: Connection, frame: OpFrame): void {
    const member = conn.projects.get(frame.project)
    if (member === undefined) {
      this.#error(conn, 'not_joined', `not joined to ${frame.project}`, frame.ref, frame.project)
      return
    }
    const shed = this.#shed()
    if (shed !== null) {
      // Not the client's abuse: no strike against its rate limit.
      this.#error(conn, shed.code, shed.message, frame.ref, frame.project)
      return
    }
    const id = frame.id ?? randomId(12)
    let acked = false
    const ack = (seq: number): void => {
      if (acked) return
      acked = true
      this.#reply(conn, withRef({ type: 'ack', project: frame.project, id, seq }, frame.ref))
    }
    // The log may show the op (a catch-up read) before the append answers: it is acked when delivered.
    const forget = this.#expectAck(frame.project, id, ack)
    this.#append(frame.project, id, member.userId, member.sessionId, frame.data).finally(forget).then((result) => {
      if (result.duplicate) {
        ack(result.seq)
        return
      }
      const lp = this.#projects.get(frame.project)
      if (lp === undefined || !lp.members.has(member.sessionId)) {
        ack(result.seq)
        if (lp !== undefined) this.#deliver(lp, result.op, result.epoch)
        return
      }
      if (result.epoch !== lp.epoch) {
        // Appended in another epoch than the members see (a switch in flight):
        // the op and its ack wait for the members' `reset` to that epoch, so
        // the ack's seq reaches the sender in the epoch it belongs to.
        const entry: AckAhead = { epoch: result.epoch, op: result.op, ack: () => { ack(result.seq) } }
        this.#ahead.set(lp, [...(this.#ahead.get(lp) ?? []), entry])
        this.#resync(lp).catch((err: unknown) => {
          this.#log.warn({ err, project: lp.name }, 'resync after an epoch change failed')
        }).finally(() => {
          // The project did not reach that epoch (the log moved on): ack all the same.
          if (this.#takeAhead(lp, (a) => a === entry).length > 0) entry.ack()
        })
        return
      }
      // The ack goes out when the op is delivered in order, so the sender
      // sees its ack after every op before it.
      lp.acks.set(result.seq, () => { ack(result.seq) })
      this.#deliver(lp, result.op, result.epoch)
    }, (err: unknown) => {
      this.#fail(conn, err, frame)
    })
  }

  #presence (conn: Connection, frame: PresenceFrame): void {
    const member = conn.projects.get(frame.project)
    if (member === undefined) {
      this.#error(conn, 'not_joined', `not joined to ${frame.project}`, frame.ref, frame.project)
      return
    }
    if (jsonBytes(frame.state) > this.#config.maxPresenceBytes) {
      this.#error(conn, 'limit_exceeded', `presence is larger than ${this.#config.maxPresenceBytes} bytes`, frame.ref, frame.project)
      return
    }
    member.presence = frame.state
    const lp = this.#projects.get(frame.project)
    lp?.sendOthers(presenceFrame(frame.project, member.sessionId, member.userId, frame.state), member.sessionId)
    this.#publish(frame.project, { kind: 'presence', sessionId: member.sessionId, userId: member.userId, state: frame.state })
    this.#ports.sessions.setPresence(frame.project, member.sessionId, frame.state).catch((err: unknown) => {
      this.#log.warn({ err, project: frame.project }, 'storing presence failed')
    })
  }

  // ---------------------------------------------------------------- ops

  /**
   * Back-pressure: with too many ops waiting for the log, a new one is
   * refused (and counted) rather than queued; the client retries it with its
   * id. Null while there is room.
   */
  #shed (): ProtocolError | null {
    if (this.#inFlight < this.#config.maxOpsInFlight) return null
    this.stats.opsShed++
    return new ProtocolError('rate_limited', 'server busy: too many ops waiting for the log; this one was dropped, try again')
  }

  /** Appends through the log, counting what is in flight for the drain. */
  async #append (project: string, id: string, userId: string, sessionId: string | null, data: unknown): Promise<
    { duplicate: true, seq: number } | { duplicate: false, seq: number, op: Op, epoch: string }> {
    this.#inFlight++
    try {
      const result = await this.#ports.log.append({ project, id, userId, sessionId, data, ts: Date.now() })
      if (result.duplicate) {
        this.stats.opsDuplicate++
        return { duplicate: true, seq: result.seq }
      }
      this.stats.opsAppended++
      // A log that publishes in its append (Redis, one script) keeps publish order = seq order.
      if (!this.#ports.log.publishesOps) {
        this.#publish(project, this.#ports.log.scope === 'instance'
          ? { kind: 'op', epoch: result.epoch, op: result.op, relay: true }
          : { kind: 'op', epoch: result.epoch, op: result.op })
      }
      return { duplicate: false, seq: result.op.seq, op: result.op, epoch: result.epoch }
    } finally {
      this.#inFlight--
    }
  }

  /** Feeds an op into the project's in-order delivery. */
  #deliver (lp: LocalProject, op: Op, epoch: string): void {
    if (epoch !== lp.epoch) {
      this.#resync(lp).catch((err: unknown) => {
        this.#log.warn({ err, project: lp.name }, 'resync after an epoch change failed')
      })
      return
    }
    if (lp.accept(op)) this.#scheduleGapFill(lp)
  }

  #scheduleGapFill (lp: LocalProject): void {
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
      this.#log.warn({ err, project: lp.name }, 'gap fill failed; retrying')
      this.#scheduleGapFill(lp)
    }
  }

  /** Delivers every op the log has beyond what the project delivered; resets when it cannot. */
  async #catchUp (lp: LocalProject): Promise<void> {
    while (this.#projects.get(lp.name) === lp) {
      const page = await this.#ports.log.read(lp.name, lp.delivered, REPLAY_PAGE, lp.epoch)
      if (page.reset) {
        await this.#resync(lp, true)
        return
      }
      if (page.ops.length === 0) return
      for (const op of page.ops) {
        const ack = this.#unacked.get(lp.name)?.get(op.id)
        if (ack !== undefined && op.seq > lp.delivered && !lp.acks.has(op.seq)) lp.acks.set(op.seq, () => { ack(op.seq) })
        lp.accept(op)
      }
      if ((page.ops.at(-1) as Op).seq >= page.head) return
    }
  }

  /**
   * Brings a project to the log's position: ops it missed in the same epoch
   * are delivered; when the epoch changed (a fallback, a recovery, Redis
   * data lost) or history no longer reaches back, every member gets `reset`.
   */
  async #resync (lp: LocalProject, force = false): Promise<void> {
    const position = await this.#ports.log.head(lp.name)
    if (!force && position.epoch === lp.epoch) {
      if (position.seq > lp.delivered) await this.#catchUp(lp)
      return
    }
    // Ops appended to the old epoch and waiting on a gap: their senders get
    // their acks now, in seq order, before the `reset` (the seqs are the old epoch's).
    const acks = [...lp.acks].sort(([a], [b]) => a - b)
    lp.acks.clear()
    for (const [, ack] of acks) ack()
    lp.epoch = position.epoch
    lp.delivered = position.seq
    lp.pending.clear()
    const frame = new SharedFrame(JSON.stringify({ type: 'reset', project: lp.name, epoch: position.epoch, seq: position.seq }))
    for (const member of lp.members.values()) {
      member.lastSeq = position.seq
      if (member.held !== null) member.held = []
      member.conn.send(frame)
    }
    // Ops appended to this epoch before the switch: acked now when the reset's
    // head covers them, else delivered (and acked) in seq order.
    const ahead = this.#takeAhead(lp, (a) => a.epoch === position.epoch).sort((a, b) => a.op.seq - b.op.seq)
    for (const a of ahead) {
      if (a.op.seq <= position.seq) {
        a.ack()
      } else {
        lp.acks.set(a.op.seq, a.ack)
        this.#deliver(lp, a.op, a.epoch)
      }
    }
  }

  /** Remembers the ack of a local op until its append answers (the returned function forgets it). */
  #expectAck (project: string, id: string, ack: (seq: number) => void): () => void {
    let byId = this.#unacked.get(project)
    if (byId === undefined) {
      byId = new Map()
      this.#unacked.set(project, byId)
    }
    // A second op with the same id in flight is a duplicate: the first one's ack stands.
    if (byId.has(id)) return () => {}
    byId.set(id, ack)
    return () => {
      const current = this.#unacked.get(project)
      if (current?.get(id) !== ack) return
      current.delete(id)
      if (current.size === 0) this.#unacked.delete(project)
    }
  }

  /** Removes and returns the project's acks ahead that match. */
  #takeAhead (lp: LocalProject, match: (a: AckAhead) => boolean): AckAhead[] {
    const all = this.#ahead.get(lp) ?? []
    const taken = all.filter(match)
    const rest = all.filter((a) => !match(a))
    if (rest.length > 0) this.#ahead.set(lp, rest)
    else this.#ahead.delete(lp)
    return taken
  }

  /**
   * Re-reads every local project's position (after a port switched to or
   * from its fallback, or the subscriber reconnected): missed ops are
   * delivered, an epoch change resets the members.
   */
  async resyncAll (): Promise<void> {
    await Promise.all([...this.#projects.values()].map(async (lp) => {
      await this.#resync(lp).catch((err: unknown) => {
        this.#log.warn({ err, project: lp.name }, 'resync failed')
      })
    }))
  }

  /**
   * After an outage: announces the leaves other instances could not hear,
   * writes the sessions of local connections back to the store (announcing
   * each one the store had lost), and resyncs every project.
   */
  async recover (left: readonly ExpiredSession[]): Promise<void> {
    for (const { project, member } of left) this.#publish(project, { kind: 'member', event: 'leave', member })
    for (const lp of [...this.#projects.values()]) {
      try {
        const listed = new Set((await this.#ports.sessions.list(lp.name)).map((m) => m.sessionId))
        for (const member of [...lp.members.values()]) {
          if (listed.has(member.sessionId) || member.conn.closed) continue
          await this.#ports.sessions.add(lp.name, toMember(member))
          this.#publish(lp.name, { kind: 'member', event: 'join', member: toMember(member) })
        }
      } catch (err) {
        this.#log.warn({ err, project: lp.name }, 'writing sessions back failed')
      }
    }
    await this.resyncAll()
  }

  // ---------------------------------------------------------------- projects

  /** The local project, created (subscribed, head read) on first use. */
  async #acquire (project: string): Promise<LocalProject> {
    let lp = this.#projects.get(project)
    if (lp === undefined) {
      const created = new LocalProject(project)
      created.onDeliver = (op) => { this.stats.deliveryLatency.observe(Date.now() - op.ts) }
      this.#projects.set(project, created)
      created.ready = (async () => {
        await this.#ports.broadcaster.subscribe(project, (message) => { this.#onBroadcast(created, message) })
        const head = await this.#ports.log.head(project)
        created.epoch = head.epoch
        // Ops broadcast while we read the head may be pending already.
        created.delivered = head.seq
        for (const seq of [...created.pending.keys()]) if (seq <= head.seq) created.pending.delete(seq)
        if (created.flush()) this.#scheduleGapFill(created)
      })()
      lp = created
    }
    lp.refs++
    try {
      await lp.ready
    } catch (err) {
      this.#releaseProject(lp)
      throw err
    }
    return lp
  }

  /** Drops one reference; at zero the project stops listening. */
  #releaseProject (lp: LocalProject): void {
    lp.refs--
    if (lp.refs > 0 || this.#projects.get(lp.name) !== lp) return
    this.#projects.delete(lp.name)
    if (lp.gapTimer !== undefined) clearTimeout(lp.gapTimer)
    for (const ack of lp.acks.values()) ack()
    lp.acks.clear()
    for (const a of this.#takeAhead(lp, () => true)) a.ack()
    this.#ports.broadcaster.unsubscribe(lp.name).catch((err: unknown) => {
      this.#log.warn({ err, project: lp.name }, 'unsubscribe failed')
    })
  }

  #onBroadcast (lp: LocalProject, message: BroadcastMessage): void {
    this.stats.broadcastsReceived++
    switch (message.kind) {
      case 'op':
        // Seqs from another log (ours is local, or theirs was): re-sequence here.
        if (this.#ports.log.scope === 'instance' || message.relay === true) this.#relay(lp, message.op)
        else if (lp.epoch === '') lp.pending.set(message.op.seq, message.op)
        else this.#deliver(lp, message.op, message.epoch)
        return
      case 'member':
        lp.sendOthers(memberFrame(lp.name, message.event, message.member), null)
        return
      case 'presence':
        lp.sendOthers(presenceFrame(lp.name, message.sessionId, message.userId, message.state), null)
    }
  }

  /**
   * An op sequenced by another log is appended to ours (its id keeps it
   * idempotent: each log takes it once) and delivered with our seq. Without a
   * shared log this makes seqs per instance; in a mixed fleet (some instances
   * on the Redis log, some not yet) it carries ops across both.
   */
  #relay (lp: LocalProject, op: Op): void {
    this.#inFlight++
    this.#ports.log.append({ project: op.project, id: op.id, userId: op.userId, sessionId: op.sessionId, data: op.data, ts: op.ts }).then((result) => {
      if (!result.duplicate && this.#projects.get(lp.name) === lp) this.#deliver(lp, result.op, result.epoch)
    }, (err: unknown) => {
      this.#log.warn({ err, project: lp.name }, 'relaying an op from another instance failed')
    }).finally(() => { this.#inFlight-- })
  }

  /** Tells local members (but one) and other instances. */
  #announce (lp: LocalProject, message: BroadcastMessage & { kind: 'member' }, exceptSessionId: string): void {
    lp.sendOthers(memberFrame(lp.name, message.event, message.member), exceptSessionId)
    this.#publish(lp.name, message)
  }

  #publish (project: string, message: BroadcastMessage): void {
    this.stats.broadcastsPublished++
    this.#ports.broadcaster.publish(project, message).catch((err: unknown) => {
      this.stats.broadcastErrors++
      this.#log.warn({ err, project }, 'broadcast failed')
    })
  }

  // ---------------------------------------------------------------- HTTP API

  /** Members of a project across every instance. */
  async members (project: string): Promise<Member[]> {
    assertProject(project)
    return await this.#ports.sessions.list(project)
  }

  /** A page of history: ops with since < seq, at most `limit`. */
  async history (project: string, since: number, limit: number): Promise<History> {
    assertProject(project)
    const page = await this.#ports.log.read(project, since, limit)
    return { project, epoch: page.epoch, seq: page.head, ops: page.reset ? [] : page.ops, reset: page.reset }
  }

  /** An op posted over HTTP: appended and broadcast like a client op. */
  async post (project: string, userId: string, id: string | undefined, data: unknown): Promise<PostedOp> {
    assertProject(project)
    if (id !== undefined && !isOpId(id)) throw new ProtocolError('bad_request', 'id must be 1 to 64 characters of A-Z a-z 0-9 _ -')
    // The same bound as a WebSocket frame, where data sits one level down.
    if (nestsDeeper(data, MAX_JSON_DEPTH - 1)) throw new ProtocolError('bad_request', `data nests arrays and objects deeper than ${MAX_JSON_DEPTH - 1} levels`)
    if (this.#draining) throw new ProtocolError('unavailable', 'server is shutting down')
    const shed = this.#shed()
    if (shed !== null) throw shed
    const opId = id ?? randomId(12)
    const result = await this.#append(project, opId, userId, null, data)
    if (!result.duplicate) {
      const lp = this.#projects.get(project)
      if (lp !== undefined && lp.epoch !== '') this.#deliver(lp, result.op, result.epoch)
    }
    return { project, id: opId, seq: result.seq, duplicate: result.duplicate }
  }

  // ---------------------------------------------------------------- sending

  #send (conn: Connection, frame: string | SharedFrame): void {
    if (conn.closed) return
    if (conn.transport.bufferedAmount > this.#config.maxBufferedBytes) {
      this.stats.slowConsumersClosed++
      this.#closeConn(conn, CLOSE.policy, 'slow consumer: too much unsent data')
      return
    }
    this.stats.framesOut++
    conn.transport.send(frame)
  }

  #reply (conn: Connection, message: object): void {
    conn.send(JSON.stringify(message))
  }

  #error (conn: Connection, code: ErrorCode, message: string, ref?: Ref, project?: string): void {
    this.stats.countError(code)
    const frame: Record<string, unknown> = { type: 'error', code, message }
    if (project !== undefined) frame.project = project
    if (ref !== undefined) frame.ref = ref
    this.#reply(conn, frame)
  }

  #fail (conn: Connection, err: unknown, frame: ClientFrame): void {
    const project = 'project' in frame ? frame.project : undefined
    if (err instanceof ProtocolError) {
      this.#error(conn, err.code, err.message, frame.ref, project)
      return
    }
    this.#log.error({ err, type: frame.type, project }, 'frame failed')
    this.#error(conn, isUnavailable(err) ? 'unavailable' : 'internal',
      isUnavailable(err) ? 'a dependency failed; try again' : 'internal error', frame.ref, project)
  }

  #closeConn (conn: Connection, code: number, reason: string): void {
    if (conn.closed) return
    conn.closed = true
    conn.transport.close(code, reason)
    // A peer that does not answer the close handshake is dropped.
    setTimeout(() => { conn.transport.terminate() }, 2000).unref()
    this.disconnect(conn)
  }

  // ---------------------------------------------------------------- timers

  #heartbeat (): void {
    for (const conn of this.#connections) {
      if (conn.missedPings >= 2) {
        conn.transport.terminate()
        this.disconnect(conn)
        continue
      }
      conn.missedPings++
      try { conn.transport.ping() } catch { /* closing */ }
    }
  }

  async #refreshSessions (): Promise<void> {
    const refs = []
    for (const lp of this.#projects.values()) {
      for (const m of lp.members.values()) refs.push({ project: lp.name, sessionId: m.sessionId })
    }
    try {
      if (refs.length > 0) await this.#ports.sessions.refresh(refs)
    } catch (err) {
      this.#log.warn({ err }, 'session refresh failed')
    }
  }

  /** Announces the leave of every expired session (each reaped by one instance only). */
  async #reap (): Promise<void> {
    if (this.#reaping) return
    this.#reaping = true
    try {
      const expired = await this.#ports.sessions.reap()
      for (const { project, member } of expired) {
        if (this.#announced.delete(member.sessionId)) continue
        const lp = this.#projects.get(project)
        const local = lp?.members.get(member.sessionId)
        if (local !== undefined && !local.conn.closed) {
          // Ours and still connected (its refresh was late): keep it.
          await this.#ports.sessions.add(project, toMember(local))
          continue
        }
        lp?.sendOthers(memberFrame(project, 'leave', member), member.sessionId)
        this.#publish(project, { kind: 'member', event: 'leave', member })
      }
    } catch (err) {
      this.#log.warn({ err }, 'reaping expired sessions failed')
    } finally {
      this.#reaping = false
    }
  }

  /** Remembers a leave announced while the store could not remove the session. */
  #remember (sessionId: string): void {
    if (this.#announced.size >= 10_000) this.#announced.clear()
    this.#announced.add(sessionId)
  }

  // ---------------------------------------------------------------- shutdown

  /**
   * Graceful shutdown: stops taking frames, waits (up to the shutdown
   * timeout) for ops in flight and unsent data, then closes every connection
   * with 1001 and removes its sessions.
   */
  drain (timeoutMs = this.#config.shutdownTimeoutMs): Promise<void> {
    this.#drained ??= this.#drain(timeoutMs)
    return this.#drained
  }

  async #drain (timeoutMs: number): Promise<void> {
    this.#draining = true
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline && (this.#inFlight > 0 || [...this.#connections].some((c) => c.transport.bufferedAmount > 0 || c.queued > 0))) {
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    const conns = [...this.#connections]
    for (const conn of conns) this.#closeConn(conn, CLOSE.goingAway, 'server shutting down')
    await Promise.race([
      Promise.all(conns.map(async (c) => { await c.chain })),
      new Promise((resolve) => setTimeout(resolve, Math.max(100, deadline - Date.now())).unref())
    ])
  }

  /** Stops the timers. The ports are closed by whoever created them. */
  close (): void {
    if (this.#closed) return
    this.#closed = true
    for (const t of this.#timers) clearInterval(t)
    for (const lp of this.#projects.values()) if (lp.gapTimer !== undefined) clearTimeout(lp.gapTimer)
  }
}

/** An op appended to an epoch the project's members are not in yet, and its ack. */
interface AckAhead {
  readonly epoch: string
  readonly op: Op
  readonly ack: () => void
}

function toMember (m: LocalMember): Member {
  return { sessionId: m.sessionId, userId: m.userId, presence: m.presence, joinedAt: m.joinedAt }
}

function memberFrame (project: string, event: 'join' | 'leave', member: Member): string {
  return JSON.stringify({ type: 'member', project, event, member })
}

function presenceFrame (project: string, sessionId: string, userId: string, state: Presence): string {
  return JSON.stringify({ type: 'presence', project, sessionId, userId, state })
}

function withRef<T extends object> (message: T, ref: Ref | undefined): T {
  if (ref !== undefined) (message as Record<string, unknown>).ref = ref
  return message
}

function assertProject (project: string): void {
  if (!isProjectId(project)) throw new ProtocolError('bad_request', 'project must be 1 to 128 characters of A-Z a-z 0-9 _ . -')
}

/** Errors of a dependency (Redis) rather than of the server. */
function isUnavailable (err: unknown): boolean {
  return err instanceof Error && (err as Error & { unavailable?: boolean }).unavailable === true
}
