/**
 * Plain data that crosses the ports. Nothing here knows about Fastify, ws or
 * Redis: ports/ import only this file. `Presence`, `Member` and `Op` are the
 * protocol's own (lib/protocol/wire.ts, shared with the client).
 */

export type { Presence, Member, Op } from './protocol/wire.js'

/** A point in a project's op log: the epoch names one life of the log. */
export interface LogPosition {
  readonly epoch: string
  /** last assigned seq, 0 when none */
  readonly seq: number
}

/**
 * The epoch of a project that has no op log: `head()` and `read()` answer it
 * (with head 0) for a project nothing has created yet, or whose log was
 * forgotten (idle past its TTL, lost with Redis' data). Real epochs are
 * longer random strings, so it never names one life of a log.
 */
export const NO_EPOCH = 'none'
