import { ForbiddenError } from '../errors.js'
import type { Identity } from './transport.js'

/** An op as the host's `onOp` hook sees it, before it is appended. */
export interface OpCheck {
  readonly project: string
  /** the op id (the client's, or the one the server made) */
  readonly id: string
  readonly userId: string
  readonly data: unknown
}

/**
 * The host's check of each op a client sends (a WebSocket `op`, `POST
 * /projects/:project/ops`), before it is appended: return nothing (or true)
 * to accept it, `false` to refuse it with `forbidden`, or throw one of Flow's
 * errors (`ForbiddenError`, `BadRequestError`, ... exported by the package)
 * to refuse it with that code and message. Any other error is a bug of the
 * hook: the op is refused with `internal` and the error logged. May be
 * async; a connection's ops still reach the log in the order sent. Ops the
 * host publishes itself (`app.flow.hub.post()`) are not checked.
 */
export type OnOp = (op: OpCheck, identity: Identity) => void | boolean | Promise<void | boolean>

/** Runs the hook; resolves when the op is accepted, rejects with the refusal. */
export async function checkOp (hook: OnOp, op: OpCheck, identity: Identity): Promise<void> {
  const verdict = await hook(op, identity)
  if (verdict === false) throw new ForbiddenError(`op ${op.id} refused by the server's check`)
}
