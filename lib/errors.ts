import createError from '@fastify/error'
import type { ErrorCode } from './protocol/wire.js'

/** The protocol's error codes (PROTOCOL.md), and `unauthorized` (HTTP 401). */
export type { ErrorCode }

/** An error the hub answers a frame or a request with. */
export class ProtocolError extends Error {
  readonly code: ErrorCode
  constructor (code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'ProtocolError'
    this.code = code
  }
}

/** HTTP status for each protocol code (PROTOCOL.md, HTTP). */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  bad_request: 400,
  unknown_type: 400,
  unauthorized: 401,
  forbidden: 403,
  not_joined: 409,
  limit_exceeded: 413,
  rate_limited: 429,
  unavailable: 503,
  internal: 500
}

/** A bad configuration value: start-up stops with this message. */
export const ConfigError = createError<[string]>('FLOW_ERR_CONFIG_INVALID', 'invalid configuration: %s')

/**
 * Whether an error is the caller's (a refused request, a bad argument)
 * rather than a dependency's failure: a failover never falls back on one.
 */
export function isCallerError (err: unknown): boolean {
  return err instanceof ProtocolError || err instanceof TypeError || err instanceof RangeError
}
