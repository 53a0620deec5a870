/**
 * Plain data that crosses the ports. Nothing here knows about Fastify, ws or
 * Redis: ports/ import only this file.
 */

/** A member's presence: any JSON object, at most FLOW_MAX_PRESENCE_BYTES as JSON. */
export type Presence = Readonly<Record<string, unknown>>

/** One connection's membership of one project, as PROTOCOL.md's `member`. */
export interface Member {
  readonly sessionId: string
  readonly userId: string
  readonly presence: Presence
  /** ms since the Unix epoch */
  readonly joinedAt: number
}

/** A sequenced operation, as PROTOCOL.md's `op` frame (without `type`). */
export interface Op {
  readonly project: string
  readonly seq: number
  readonly id: string
  readonly userId: string
  /** null for ops posted over HTTP */
  readonly sessionId: string | null
  readonly data: unknown
  /** server ms since the Unix epoch, set when the op was accepted */
  readonly ts: number
}

/** A point in a project's op log: the epoch names one life of the log. */
export interface LogPosition {
  readonly epoch: string
  /** last assigned seq, 0 when none */
  readonly seq: number
}
