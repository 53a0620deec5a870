import type { Op } from '../types.js'
import type { SyncFrame } from '../protocol/frames.js'
import { opFrame } from '../protocol/op-frame.js'
import { NotJoinedError } from '../errors.js'
import type { Connection } from './connection.js'
import type { HubContext } from './context.js'
import type { LocalMember, LocalProject } from './project.js'
import { ReplayBudget } from './rate-limiter.js'
import type { Snapshots } from './snapshots.js'

/** Ops per page of replays read from the log (pages are bounded by FLOW_REPLAY_PAGE_BYTES too). */
const REPLAY_PAGE = 500

/**
 * A replay's page is read and sent in slices of at most this many bytes
 * (one op at least), with a turn of the event loop between two slices: a
 * page of 1 MiB of big ops is otherwise one synchronous stretch of reading,
 * decoding and sending of several ms, during which no other member's frame
 * moves (and pages follow each other without a turn while the budgets allow).
 */
export const REPLAY_SLICE_BYTES = 128 * 1024

const nextTurn = async (): Promise<void> => { await new Promise<void>((resolve) => { setImmediate(resolve) }) }

/**
 * Catch-up of one member: the ops it asked for (join with `since`, `sync`),
 * or the project's state (a snapshot and the ops after it), up to what the
 * project has delivered live, while its live ops are held back; then the
 * held ops newer than what it has. Together with Delivery this keeps the
 * one invariant: each member gets each op once, in seq order.
 */
export class Replayer {
  readonly #ctx: HubContext
  readonly #snapshots: Snapshots

  constructor (ctx: HubContext, snapshots: Snapshots) {
    this.#ctx = ctx
    this.#snapshots = snapshots
  }

  /** `sync`: the replay since the client's position (or its state: a snapshot and the ops after it), then `synced`. */
  async sync (conn: Connection, frame: SyncFrame): Promise<void> {
    const member = conn.projects.get(frame.project)
    if (member === undefined) throw new NotJoinedError(`not joined to ${frame.project}`)
    const lp = this.#ctx.projects.get(frame.project) as LocalProject
    member.held ??= []
    try {
      await this.replay(lp, member, frame.since, frame.epoch, lp.delivered, frame.snapshot === true)
    } finally {
      lp.release(member)
    }
    const synced = { type: 'synced', project: lp.name, epoch: lp.epoch, seq: member.lastSeq, ref: frame.ref } as const
    this.#ctx.outbox.reply(conn, synced)
  }

  /**
   * Sends the ops since `since` up to `target` (what the project has
   * delivered live); when the history cannot serve `since`, `reset`, or,
   * for a client that takes state (`wantsState`, protocol 1.2), a
   * `snapshot` and the ops after it. Without `since`, a client that takes
   * state gets the snapshot and the ops after it. The member's held ops
   * follow.
   */
  async replay (lp: LocalProject, member: LocalMember, since: number | undefined, epoch: string | undefined,
    target: number, wantsState = false): Promise<void> {
    const reset = (): void => {
      member.lastSeq = Math.max(member.lastSeq, target)
      this.#ctx.outbox.reply(member.conn, { type: 'reset', project: lp.name, epoch: lp.epoch, seq: target })
    }
    if (since !== undefined) {
      const served = await this.#replayFrom(lp, member, since, epoch, target)
      if (served !== 'reset') return
      if (!wantsState) {
        reset()
        return
      }
    }
    // The state at a snapshot of this epoch (or the initial state at 0), then the ops after it.
    const stored = await this.#snapshots.get(lp.name)
    const base = stored !== null && stored.epoch === lp.epoch ? stored : { seq: 0, state: this.#snapshots.initial }
    if (member.conn.closed) return
    const { seq, state } = base
    const send = (): void => {
      this.#ctx.outbox.reply(member.conn, { type: 'snapshot', project: lp.name, epoch: lp.epoch, seq, state })
    }
    // A snapshot past what this instance delivered (another one folded further): the live ops it covers are skipped.
    if (seq >= target) {
      send()
      member.lastSeq = Math.max(member.lastSeq, seq)
      return
    }
    // Sent once the history is known to reach back to it (so `reset` follows a snapshot only when more than
    // twice the history bounds are appended while its ops are sent). It replaces what a replay sent before it.
    if (await this.#replayFrom(lp, member, seq, lp.epoch, target, send) === 'reset') reset()
  }

  /**
   * Sends the ops `since < seq <= target`, paced, or nothing when the
   * history cannot serve them (`reset`: the caller answers). `first` runs
   * before the first op is sent, once the history is known to serve `since`.
   *
   * Paced, so no replay is closed as a slow consumer for reading at network
   * speed and no connection's replays crowd out the others: the history is
   * read and sent in slices of REPLAY_SLICE_BYTES with a turn of the event
   * loop between two, the next slice waits while the connection holds more
   * than a page (FLOW_REPLAY_PAGE_BYTES) unsent, and a connection is sent at most
   * FLOW_REPLAY_BYTES_PER_SECOND of history (its budget, shared by its
   * replays: beyond it the replay waits), and its identity at most
   * FLOW_IDENTITY_READ_BYTES_PER_SECOND across all its connections and
   * HTTP reads.
   */
  async #replayFrom (lp: LocalProject, member: LocalMember, since: number, epoch: string | undefined,
    target: number, first?: () => void): Promise<'done' | 'reset'> {
    // A position without its epoch cannot be placed: after data loss, seq 40 of a new life is not seq 40 of the old.
    if (since > 0 && epoch === undefined) return 'reset'
    const { config, budgets, stats } = this.#ctx
    const conn = member.conn
    const key = conn.budgetKey
    conn.replayBudget ??= new ReplayBudget(config.replayBytesPerSecond, Date.now())
    const sliceBytes = Math.min(REPLAY_SLICE_BYTES, config.replayPageBytes)
    let from = since
    for (let slice = 0; ; slice++) {
      // Other connections' frames and requests get the loop between two slices.
      if (slice > 0) {
        await nextTurn()
        if (conn.closed) return 'done'
      }
      // Before every page, the first too: earlier pages or replays of this connection, or of other connections
      // of its identity, may have spent the budgets.
      const now = Date.now()
      const shared = key === undefined ? 0 : budgets.reads.wait(key, now)
      if (shared > 0) stats.readsDeferred++
      const wait = Math.max(conn.replayBudget.spend(0, now), shared)
      if (wait > 0 || conn.transport.bufferedAmount > config.replayPageBytes) {
        await conn.transport.whenDrained(config.replayPageBytes)
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
        // Gone meanwhile: nothing more to send; its sessions are being removed.
        if (conn.closed) return 'done'
        // Its identity's other replays may have spent what this one waited for.
        if (shared > 0) continue
      }
      const page = await this.#ctx.ports.log.read(lp.name, from, REPLAY_PAGE, epoch, sliceBytes)
      if (page.reset || page.epoch !== lp.epoch) return 'reset'
      if (from === since) first?.()
      let bytes = 0
      for (const op of page.ops) {
        if (op.seq > target) break
        const frame = opFrame(op)
        bytes += frame.length
        conn.send(frame)
        from = op.seq
      }
      conn.replayBudget.spend(bytes, Date.now())
      if (key !== undefined) budgets.reads.spend(key, bytes, Date.now())
      if (from >= target || page.ops.length === 0 || (page.ops.at(-1) as Op).seq >= target) break
    }
    member.lastSeq = Math.max(since, target)
    return 'done'
  }
}
