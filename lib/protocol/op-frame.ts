import type { Op, OpMessage } from './wire.js'

/**
 * The `op` frame of an op, as JSON text. Every path builds it with the same
 * key order (type, seq, project, id, userId, sessionId, data, ts), so an
 * adapter that already holds the op's JSON can hand the frame over ready
 * made (`withOpFrame`) instead of having the data serialised again.
 */
const known = new WeakMap<Op, string>()

/** Serialises an op frame, or returns the one an adapter made for this op. */
export function opFrame (op: Op): string {
  return known.get(op) ?? JSON.stringify({
    type: 'op',
    seq: op.seq,
    project: op.project,
    id: op.id,
    userId: op.userId,
    sessionId: op.sessionId,
    data: op.data,
    ts: op.ts
  } satisfies OpMessage)
}

/**
 * Records the frame of `op`, made by its adapter from JSON it holds:
 * `json` is the op as a JSON object in the order above, `seq` first
 * (`{"seq":…,"project":…,…,"ts":…}`). Returns `op`.
 */
export function withOpFrame<T extends Op> (op: T, json: string): T {
  known.set(op, `{"type":"op",${json.slice(1)}`)
  return op
}
