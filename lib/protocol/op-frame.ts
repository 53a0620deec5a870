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

/**
 * The op's fields other than `project` and `seq`, as JSON: what an op log
 * stores (its length in UTF-8 bytes is the op's size, ports/operation-log.ts),
 * and the rest of what the Redis log publishes.
 */
export function storedOpJson (op: Pick<Op, 'id' | 'userId' | 'sessionId' | 'data' | 'ts'>): string {
  return JSON.stringify({ id: op.id, userId: op.userId, sessionId: op.sessionId, data: op.data, ts: op.ts })
}

/** The op as a JSON object, `seq` first, in a frame's order, from its stored JSON. */
export function opJsonFromStored (seq: number, project: string, stored: string): string {
  return `{"seq":${seq},"project":${JSON.stringify(project)},${stored.slice(1)}`
}

/** Records the frame of an op a log appended or read, made from the JSON it stored (no second serialisation). */
export function withStoredFrame<T extends Op> (op: T, stored: string): T {
  return withOpFrame(op, opJsonFromStored(op.seq, op.project, stored))
}
