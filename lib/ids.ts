import { randomFillSync } from 'node:crypto'

/** docs/protocol.md: project ids. Nothing reaches a Redis key without passing this. */
export const PROJECT_ID = /^[A-Za-z0-9_.-]{1,128}$/
/** docs/protocol.md: client-chosen op ids (idempotency keys). */
export const OP_ID = /^[A-Za-z0-9_-]{1,64}$/

/** FLOW_KEY_PREFIX: the prefix of every Redis key and channel. */
export const KEY_PREFIX = /^[A-Za-z0-9_.:-]{1,64}$/
/** FLOW_INSTANCE_ID: part of Redis keys, so no braces or spaces. */
export const INSTANCE_ID = /^[A-Za-z0-9_.-]{1,128}$/

export function isProjectId (value: unknown): value is string {
  return typeof value === 'string' && PROJECT_ID.test(value)
}

/**
 * What an op log remembers an op by for idempotency: its id within its
 * sender's (a user id holds no newline, so the pair is unambiguous).
 */
export function idempotencyKey (userId: string, id: string): string {
  return `${userId}\n${id}`
}

export function isOpId (value: unknown): value is string {
  return typeof value === 'string' && OP_ID.test(value)
}

/**
 * Random bytes drawn from the CSPRNG 4 KiB at a time: a join makes two or
 * three ids (connection, session, resume token), and one randomFillSync per
 * id showed in a join storm's profile. Each byte is handed out once.
 */
const POOL_BYTES = 4096
const pool = Buffer.alloc(POOL_BYTES)
let used = POOL_BYTES

/** A random, URL-safe id of `bytes` random bytes (base64url; at most 4,096 bytes). */
export function randomId (bytes = 12): string {
  if (!Number.isSafeInteger(bytes) || bytes < 1 || bytes > POOL_BYTES) {
    throw new RangeError('bytes must be an integer from 1 to 4096')
  }
  if (used + bytes > POOL_BYTES) {
    randomFillSync(pool)
    used = 0
  }
  const id = pool.toString('base64url', used, used + bytes)
  used += bytes
  return id
}
