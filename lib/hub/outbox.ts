import type { Member, Presence } from '../types.js'
import type { ErrorFrame, ErrorFrameCode, MemberFrame, PresenceMessage, ServerFrame } from '../protocol/wire.js'
import type { Stats } from '../stats.js'
import type { ClientFrame, Ref } from '../protocol/frames.js'
import { wireCode } from '../errors.js'
import type { Connection } from './connection.js'
import { CLOSE, type CloseOptions, type SharedFrame } from './transport.js'
import type { HubConfig, HubLogger } from './context.js'

/**
 * Everything the hub sends to clients goes through here: frames within the
 * slow-consumer bound, replies, errors (the one place where an error becomes
 * a wire error code) and closes.
 */
export class Outbox {
  readonly #config: Pick<HubConfig, 'maxBufferedBytes'>
  readonly #stats: Stats
  readonly #log: HubLogger
  readonly #closed: (conn: Connection) => void
  /** What connections send through (one function for every connection, not a closure each). */
  readonly sink = (conn: Connection, frame: string | SharedFrame): void => { this.send(conn, frame) }

  /** `closed` is told of every connection this outbox closes. */
  constructor (config: Pick<HubConfig, 'maxBufferedBytes'>, stats: Stats, log: HubLogger,
    closed: (conn: Connection) => void) {
    this.#config = config
    this.#stats = stats
    this.#log = log
    this.#closed = closed
  }

  /**
   * Sends one frame; a connection with too much unsent data is closed instead
   * (slow consumer), its close frame ahead of that data: a client that reads
   * again learns why at once (docs/protocol.md, Close codes).
   */
  send (conn: Connection, frame: string | SharedFrame): void {
    if (conn.closed) return
    if (conn.transport.bufferedAmount > this.#config.maxBufferedBytes) {
      this.#stats.slowConsumersClosed++
      this.close(conn, CLOSE.policy, 'slow consumer: too much unsent data', { discardQueued: true })
      return
    }
    this.#stats.framesOut++
    conn.transport.send(frame)
  }

  /** Sends one frame to one connection. Optional fields left undefined are not sent. */
  reply (conn: Connection, frame: ServerFrame): void {
    conn.send(JSON.stringify(frame))
  }

  error (conn: Connection, code: ErrorFrameCode, message: string, ref?: Ref, project?: string): void {
    this.#stats.countError(code)
    const frame: ErrorFrame = { type: 'error', code, message, project, ref }
    this.reply(conn, frame)
  }

  /** Answers a frame that failed: a protocol error as itself, anything else as `internal` (logged). */
  fail (conn: Connection, err: unknown, frame: ClientFrame): void {
    const project = 'project' in frame ? frame.project : undefined
    const code = wireCode(err)
    // A connection is authenticated already: no frame is answered `unauthorized`.
    if (code !== null && code !== 'unauthorized' && code !== 'not_found') {
      this.error(conn, code, (err as Error).message, frame.ref, project)
      return
    }
    this.#log.error({ err, type: frame.type, project }, 'frame failed')
    this.error(conn, 'internal', 'internal error', frame.ref, project)
  }

  /**
   * Starts a clean close (the close frame after what was sent before, or
   * ahead of it with `discardQueued`); the transport drops a peer that does
   * not answer the handshake.
   */
  close (conn: Connection, code: number, reason: string, options?: CloseOptions): void {
    if (conn.closed) return
    conn.closed = true
    conn.dropped = true
    conn.transport.close(code, reason, options)
    this.#closed(conn)
  }
}

export function memberFrame (project: string, event: 'join' | 'leave', member: Member): string {
  const frame: MemberFrame = { type: 'member', project, event, member }
  return JSON.stringify(frame)
}

export function presenceFrame (project: string, sessionId: string, userId: string, state: Presence): string {
  const frame: PresenceMessage = { type: 'presence', project, sessionId, userId, state }
  return JSON.stringify(frame)
}
