/**
 * Every error Flow raises: a @fastify/error constructor with a stable
 * `FLOW_ERR_*` code (and `{ cause }` when it wraps another), and the one
 * mapping from errors to the protocol's wire codes (docs/protocol.md,
 * Errors) and HTTP statuses.
 */
import createError, { type FastifyError } from '@fastify/error'
import type { ErrorCode } from './protocol/wire.js'

/** The protocol's error codes (docs/protocol.md), and `unauthorized` (HTTP 401). */
export type { ErrorCode }
export type { FastifyError as FlowError }

/** A message, and optionally the error this one wraps. */
type Message = [message: string, options?: { cause: unknown }]

// Errors a client is answered with: the request or frame was refused.

/** A malformed request or frame: a missing or wrongly typed field, a value out of range, a bad id. */
export const BadRequestError = createError<Message>('FLOW_ERR_BAD_REQUEST', '%s', 400)
/** No credential, or one that does not verify. */
export const UnauthorizedError = createError<Message>('FLOW_ERR_UNAUTHORIZED', '%s', 401)
/** The credential (or origin) does not allow this. */
export const ForbiddenError = createError<Message>('FLOW_ERR_FORBIDDEN', '%s', 403)
/** A frame about a project the connection has not joined. */
export const NotJoinedError = createError<Message>('FLOW_ERR_NOT_JOINED', '%s', 409)
/** A bound of one connection was reached: projects per connection, presence size. */
export const LimitExceededError = createError<Message>('FLOW_ERR_LIMIT_EXCEEDED', '%s', 413)
/** Too many frames, connections or waiting ops: this one was dropped; try again later. */
export const RateLimitedError = createError<Message>('FLOW_ERR_RATE_LIMITED', '%s', 429)
/**
 * A RateLimitedError built without a stack trace. Refusals are the answer a
 * flood gets, hundreds a second; they are expected, never logged as faults,
 * and a stack trace (V8 walks and formats the stack at construction) would
 * make each refusal cost more than the request it refuses.
 */
export function rateLimited (message: string): FastifyError {
  const depth = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return new RateLimitedError(message)
  } finally {
    Error.stackTraceLimit = depth
  }
}
/** A dependency failed and no fallback could serve, or the server is shutting down. */
export const UnavailableError = createError<Message>('FLOW_ERR_UNAVAILABLE', '%s', 503)
/** What was asked for does not exist (HTTP only: a project's snapshot when it has none). */
export const NotFoundError = createError<Message>('FLOW_ERR_NOT_FOUND', '%s', 404)

// Errors of the server and its dependencies (a client that meets one gets `internal` or `unavailable`).

/** A bad configuration value: start-up stops with this message. */
export const ConfigError = createError<[string]>('FLOW_ERR_CONFIG_INVALID', 'invalid configuration: %s')
/** A dependency was silent for longer than allowed while a call waited. */
export const TimeoutError = createError<[string, number]>('FLOW_ERR_TIMEOUT', '%s took longer than %d ms')
/** A call on an adapter that was closed. */
export const ClosedError = createError<Message>('FLOW_ERR_CLOSED', '%s is closed')
/** A connection to a dependency is not there (not connected yet, or closed). */
export const DisconnectedError = createError<Message>('FLOW_ERR_DISCONNECTED', '%s')
/** The circuit breaker's probe (and recover step) did not settle in time. */
export const ProbeTimeoutError = createError<[number]>('FLOW_ERR_BREAKER_PROBE_TIMEOUT', 'probe timed out after %d ms')
/** A port switched to its fallback while the breaker was recovering: it needs a recovery of its own. */
export const RecoveryError = createError<Message>('FLOW_ERR_RECOVERY', '%s')
/** A reply from Redis that Flow does not understand (a corrupt entry, a script of another version). */
export const RedisReplyError = createError<Message>('FLOW_ERR_REDIS_REPLY', 'unexpected reply from Redis: %s')

const WIRE_CODES: Readonly<Record<string, ErrorCode>> = {
  FLOW_ERR_BAD_REQUEST: 'bad_request',
  FLOW_ERR_UNAUTHORIZED: 'unauthorized',
  FLOW_ERR_FORBIDDEN: 'forbidden',
  FLOW_ERR_NOT_JOINED: 'not_joined',
  FLOW_ERR_LIMIT_EXCEEDED: 'limit_exceeded',
  FLOW_ERR_RATE_LIMITED: 'rate_limited',
  FLOW_ERR_UNAVAILABLE: 'unavailable',
  FLOW_ERR_NOT_FOUND: 'not_found'
}

/** HTTP status for each protocol code (docs/protocol.md, HTTP). */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  bad_request: 400,
  unknown_type: 400,
  unauthorized: 401,
  forbidden: 403,
  not_joined: 409,
  limit_exceeded: 413,
  rate_limited: 429,
  unavailable: 503,
  not_found: 404,
  internal: 500
}

/**
 * The wire code an error is answered with when it refuses a request or a
 * frame; null for any other error (a bug or a dependency's failure, which
 * the caller answers `internal` or maps itself).
 */
export function wireCode (err: unknown): ErrorCode | null {
  if (!(err instanceof Error)) return null
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' ? WIRE_CODES[code] ?? null : null
}

const BY_WIRE_CODE = {
  bad_request: BadRequestError,
  unknown_type: BadRequestError,
  unauthorized: UnauthorizedError,
  forbidden: ForbiddenError,
  not_joined: NotJoinedError,
  limit_exceeded: LimitExceededError,
  rate_limited: RateLimitedError,
  unavailable: UnavailableError,
  not_found: NotFoundError
} as const

/** The error that answers with `code` (for code paths that choose the code). */
export function refusal (code: Exclude<ErrorCode, 'internal'>, message: string,
  options?: { cause: unknown }): FastifyError {
  const Refusal = BY_WIRE_CODE[code]
  return options === undefined ? new Refusal(message) : new Refusal(message, options)
}

/**
 * Whether an error is the caller's (a refused request, a bad argument)
 * rather than a dependency's failure: a failover never falls back on one.
 */
export function isCallerError (err: unknown): boolean {
  return wireCode(err) !== null || err instanceof TypeError || err instanceof RangeError
}
