/** Ops for the op log adapters' tests. */
import { randomBytes } from 'node:crypto'
import type { AppendResult, LogMissing, NewOp } from '../../ports/operation-log.js'
import type { Op } from '../../lib/types.js'

export { range } from './protocol.js'

let counter = 0

/** An op of `userId` (session-1) for `project`: a fresh id unless given, a ts that grows op by op. */
export function newOp (project: string, data: unknown = null, id?: string, userId = 'user-1'): NewOp {
  counter++
  return { project, id: id ?? `op-${counter}-${randomBytes(3).toString('hex')}`, userId, sessionId: 'session-1', data, ts: 1_700_000_000_000 + counter }
}

/** The op of a result that must be an append: throws on a duplicate or a missing log. */
export function accepted (result: AppendResult | LogMissing): Op {
  if (result.missing === true) throw new Error('expected an append, got missing')
  if (result.duplicate) throw new Error(`expected an append, got a duplicate of seq ${result.seq} (id ${result.id})`)
  return result.op
}
