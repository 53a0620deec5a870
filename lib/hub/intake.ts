import { parseFrame, peekFrame, type ClientFrame } from '../protocol/frames.js'
import type { Connection } from './connection.js'
import type { HubContext } from './context.js'
import type { Delivery } from './delivery.js'
import type { Membership } from './membership.js'
import type { Replayer } from './replay.js'
import type { Snapshots } from './snapshots.js'
import { AbuseTracker } from './rate-limiter.js'
import { CLOSE } from './transport.js'

/** Frames one connection may have waiting behind a join or leave. */
const MAX_QUEUED_FRAMES = 4096
/** Longest stretch of dropped frames, with no quiet second, before 1008. */
const ABUSE_WINDOW_MS = 5000

/**
 * Where a client's frames come in: the payload limit, the rate limit and
 * sustained abuse, parsing and validation, then dispatch. Frames that change
 * membership (join, leave, sync) run one after another per connection; ops
 * and presence do not wait for each other, only for a join or leave before
 * them.
 */
export class Intake {
  readonly #ctx: HubContext
  readonly #membership: Membership
  readonly #delivery: Delivery
  readonly #replayer: Replayer
  readonly #snapshots: Snapshots
  readonly #draining: () => boolean

  constructor (ctx: HubContext,
    parts: { membership: Membership, delivery: Delivery, replayer: Replayer, snapshots: Snapshots },
    draining: () => boolean) {
    this.#ctx = ctx
    this.#membership = parts.membership
    this.#delivery = parts.delivery
    this.#replayer = parts.replayer
    this.#snapshots = parts.snapshots
    this.#draining = draining
  }

  /** One WebSocket message from the client. Never throws. */
  frame (conn: Connection, data: Buffer | string, isBinary: boolean): void {
    const { config, stats, outbox } = this.#ctx
    if (conn.closed) return
    stats.framesIn++
    conn.missedPings = 0
    const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length
    if (size > config.maxPayloadBytes) {
      outbox.close(conn, CLOSE.tooBig, 'frame too large')
      return
    }
    const now = Date.now()
    // Every byte read counts against the identity, whatever becomes of the frame; past the budget the
    // connection is not read until the debt is paid, so the client's writes wait in the network.
    if (conn.budgetKey !== undefined) {
      const wait = this.#ctx.budgets.writes.spend(conn.budgetKey, size, now)
      if (wait > 0) {
        stats.writesPaused++
        conn.pausedUntil = now + wait
        conn.transport.pause(wait)
      }
    }
    if (!conn.bucket.take(now)) {
      stats.rateLimited++
      if ((conn.abuse ??= new AbuseTracker(ABUSE_WINDOW_MS)).drop(now)) {
        outbox.close(conn, CLOSE.policy, 'rate limit exceeded', { discardQueued: true })
        return
      }
      // Read only for the ref and project, so the client knows which frame was dropped.
      const dropped = peekFrame(data, isBinary)
      outbox.error(conn, 'rate_limited', 'too many frames: this one was dropped', dropped.ref, dropped.project)
      return
    }
    const parsed = parseFrame(data, isBinary)
    if (!parsed.ok) {
      stats.framesRejected++
      outbox.error(conn, parsed.code, parsed.message, parsed.ref, parsed.project)
      return
    }
    const frame = parsed.frame
    stats.countFrame(frame.type)
    if (this.#draining() && frame.type !== 'ping') {
      outbox.error(conn, 'unavailable', 'server is shutting down', frame.ref, projectOf(frame))
      return
    }
    switch (frame.type) {
      case 'ping':
        outbox.reply(conn, { type: 'pong', ts: Date.now(), ref: frame.ref })
        return
      case 'op':
        if (conn.queued === 0) this.#delivery.op(conn, frame)
        else this.#enqueue(conn, frame)
        return
      case 'presence':
        if (conn.queued === 0) this.#membership.presence(conn, frame)
        else this.#enqueue(conn, frame)
        return
      default:
        this.#enqueue(conn, frame)
    }
  }

  /** Runs a frame after the frames before it on this connection. */
  #enqueue (conn: Connection, frame: ClientFrame): void {
    if (conn.queued >= MAX_QUEUED_FRAMES) {
      this.#ctx.outbox.error(conn, 'rate_limited', 'too many frames waiting: this one was dropped', frame.ref,
        projectOf(frame))
      return
    }
    conn.queued++
    conn.chain = conn.chain.then(async () => {
      try {
        if (!conn.closed) await this.#dispatch(conn, frame)
      } catch (err) {
        this.#ctx.outbox.fail(conn, err, frame)
      } finally {
        conn.queued--
      }
    })
  }

  async #dispatch (conn: Connection, frame: ClientFrame): Promise<void> {
    switch (frame.type) {
      case 'join': return await this.#membership.join(conn, frame)
      case 'leave': return await this.#membership.leave(conn, frame)
      case 'sync': return await this.#replayer.sync(conn, frame)
      case 'op': return this.#delivery.op(conn, frame)
      case 'presence': return this.#membership.presence(conn, frame)
      case 'ping': return this.#ctx.outbox.reply(conn, { type: 'pong', ts: Date.now(), ref: frame.ref })
      case 'snapshot': return await this.#snapshots.upload(conn, frame)
      case 'list_members': return this.#membership.listMembers(conn, frame)
    }
  }
}

function projectOf (frame: ClientFrame): string | undefined {
  return 'project' in frame ? frame.project : undefined
}
