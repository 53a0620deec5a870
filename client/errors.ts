/** Errors of the Flow client. */
import type { ErrorFrameCode } from '../lib/protocol/wire.js'

/**
 * Error codes: the protocol's, plus the client's own: `left` (the project was left
 * before the op was acknowledged), `invalid_frame` (a frame the client will not
 * send, or could not read) and `connect_failed` (the token function or the
 * WebSocket constructor threw; the client retries).
 */
export type ErrorCode = ErrorFrameCode | 'left' | 'invalid_frame' | 'connect_failed'

/** An error the server answered, or one the client raises (a send after leave, a frame too large). */
export class FlowError extends Error {
  readonly code: ErrorCode
  readonly project: string | undefined

  constructor (code: ErrorCode, message: string, project?: string) {
    super(message)
    this.name = 'FlowError'
    this.code = code
    this.project = project
  }
}

/** The codes of an `error` frame: a runtime copy, complete because it is keyed by the protocol's type. */
const PROTOCOL_CODES: Readonly<Record<ErrorFrameCode, true>> = {
  bad_request: true, unknown_type: true, forbidden: true, not_joined: true, rate_limited: true, limit_exceeded: true, unavailable: true, internal: true
}

/** The error a server `error` frame describes; a code this client does not know counts as `internal`. */
export function serverError (code: string, message: string, project?: string): FlowError {
  return new FlowError(Object.hasOwn(PROTOCOL_CODES, code) ? code as ErrorFrameCode : 'internal', message, project)
}
