/**
 * Reading the replies of Redis scripts and commands, whatever the client's
 * RESP version or type mapping, and checking the adapters' numeric options.
 * A reply of the wrong shape throws a RedisReplyError.
 */
import { RedisReplyError } from '../../lib/errors.js'

/** An array reply; `what` names the script in the error. */
export function list (reply: unknown, what?: string): unknown[] {
  if (!Array.isArray(reply)) {
    throw new RedisReplyError(what === undefined ? 'expected an array' : `the ${what} script answered ${typeof reply}`)
  }
  return reply as unknown[]
}

/** An array reply of exactly `length` items. */
export function tuple (reply: unknown, length: number, what: string): unknown[] {
  const items = list(reply, what)
  if (items.length !== length) throw new RedisReplyError(`the ${what} script answered ${items.length} items, not ${length}`)
  return items
}

/** A bulk string reply. */
export function text (value: unknown): string {
  if (typeof value === 'string') return value
  if (Buffer.isBuffer(value)) return value.toString('utf8')
  throw new RedisReplyError('expected a string')
}

/** An integer reply. */
export function integer (value: unknown): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' || typeof value === 'bigint' ? Number(value) : NaN
  if (!Number.isSafeInteger(n)) throw new RedisReplyError('expected an integer')
  return n
}

/** An adapter option that must be an integer >= 1. */
export function positiveInteger (value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be an integer >= 1`)
  return value
}
