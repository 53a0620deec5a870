import { randomBytes } from 'node:crypto'

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

/** A random, URL-safe id of `bytes` random bytes (base64url). */
export function randomId (bytes = 12): string {
  return randomBytes(bytes).toString('base64url')
}
