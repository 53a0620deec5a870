import { randomBytes } from 'node:crypto'

/** PROTOCOL.md: project ids. Nothing reaches a Redis key without passing this. */
export const PROJECT_ID = /^[A-Za-z0-9_.-]{1,128}$/
/** PROTOCOL.md: client-chosen op ids (idempotency keys). */
export const OP_ID = /^[A-Za-z0-9_-]{1,64}$/

export function isProjectId (value: unknown): value is string {
  return typeof value === 'string' && PROJECT_ID.test(value)
}

export function isOpId (value: unknown): value is string {
  return typeof value === 'string' && OP_ID.test(value)
}

/** A random, URL-safe id of `bytes` random bytes (base64url). */
export function randomId (bytes = 12): string {
  return randomBytes(bytes).toString('base64url')
}
