/** Errors of the Flow client. */

/**
 * Error codes: the protocol's, plus the client's own: `left` (the project was left
 * before the op was acknowledged), `invalid_frame` (a frame the client will not
 * send, or could not read) and `connect_failed` (the token function or the
 * WebSocket constructor threw; the client retries).
 */
export type ErrorCode =
  | 'bad_request' | 'unknown_type' | 'forbidden' | 'not_joined' | 'rate_limited'
  | 'limit_exceeded' | 'unavailable' | 'internal'
  | 'left' | 'invalid_frame' | 'connect_failed'

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

const PROTOCOL_CODES: ReadonlySet<string> = new Set(['bad_request', 'unknown_type', 'forbidden', 'not_joined', 'rate_limited', 'limit_exceeded', 'unavailable', 'internal'])

/** The error a server `error` frame describes; a code this client does not know counts as `internal`. */
export function serverError (code: string, message: string, project?: string): FlowError {
  return new FlowError(PROTOCOL_CODES.has(code) ? code as ErrorCode : 'internal', message, project)
}
