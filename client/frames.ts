/**
 * The server's frames of protocol v1 (docs/protocol.md, "Server to client"; their
 * types: lib/protocol/wire.ts), read defensively: a frame of a known type
 * with a missing or wrongly typed field is reported instead of trusted.
 */
import type { ErrorFrame, Member, PongFrame, ServerFrame } from '../lib/protocol/wire.js'

/** The server frames about one project. */
export type ProjectFrame = Exclude<ServerFrame, PongFrame | ErrorFrame>

/** An `error` frame as read: its code may be one this client does not know (`serverError` reads it as `internal`). */
export type ErrorReceived = Omit<ErrorFrame, 'code'> & { readonly code: string }

/** A server frame as read. */
export type Received = ProjectFrame | PongFrame | ErrorReceived

/** A decoded frame; `undefined` for a type this client does not know (ignored, for forward compatibility). */
export type Decoded = { readonly ok: true, readonly frame: Received } | { readonly ok: true, readonly frame: undefined } | { readonly ok: false, readonly message: string }

type Fields = Record<string, unknown>

const isObject = (v: unknown): v is Fields => typeof v === 'object' && v !== null && !Array.isArray(v)
const isString = (v: unknown): v is string => typeof v === 'string'
const isSeq = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
const isRef = (v: unknown): boolean => v === undefined || typeof v === 'string' || typeof v === 'number'

function isMember (v: unknown): v is Member {
  return isObject(v) && isString(v.sessionId) && isString(v.userId) && isObject(v.presence) && typeof v.joinedAt === 'number'
}

/** For each frame type, checks of its fields (named as in its type), in order. */
type Checks = { readonly [T in ServerFrame['type']]: ReadonlyArray<readonly [keyof Extract<ServerFrame, { type: T }> & string, (v: unknown) => boolean]> }

/** The fields each known type needs, checked in order; the first that fails names the problem. */
const checks: Checks = {
  joined: [['project', isString], ['sessionId', isString], ['userId', isString], ['epoch', isString], ['seq', isSeq], ['members', (v) => Array.isArray(v) && v.every(isMember)], ['ref', isRef]],
  left: [['project', isString], ['ref', isRef]],
  ack: [['project', isString], ['id', isString], ['seq', isSeq], ['ref', isRef]],
  op: [['project', isString], ['seq', isSeq], ['id', isString], ['userId', isString], ['sessionId', (v) => v === null || isString(v)], ['ts', (v) => typeof v === 'number']],
  member: [['project', isString], ['event', (v) => v === 'join' || v === 'leave'], ['member', isMember]],
  members: [['project', isString], ['events', (v) => Array.isArray(v) && v.every((e) => isObject(e) && (e.event === 'join' || e.event === 'leave') && isMember(e.member))]],
  member_page: [['project', isString], ['count', isSeq], ['members', (v) => Array.isArray(v) && v.every(isMember)], ['next', (v) => v === null || isString(v)], ['ref', isRef]],
  presence: [['project', isString], ['sessionId', isString], ['userId', isString], ['state', isObject]],
  synced: [['project', isString], ['epoch', isString], ['seq', isSeq], ['ref', isRef]],
  reset: [['project', isString], ['epoch', isString], ['seq', isSeq]],
  pong: [['ref', isRef]],
  error: [['code', isString], ['message', isString], ['project', (v) => v === undefined || isString(v)], ['ref', isRef]],
  snapshot: [['project', isString], ['epoch', isString], ['seq', isSeq]],
  stored: [['project', isString], ['epoch', isString], ['seq', isSeq], ['stored', (v) => typeof v === 'boolean'], ['ref', isRef]]
}

/** Reads one text frame. Never throws. */
export function decodeFrame (text: string): Decoded {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return { ok: false, message: 'a frame from the server is not JSON' }
  }
  if (!isObject(value) || !isString(value.type)) return { ok: false, message: 'a frame from the server has no string type' }
  const type = value.type
  if (!Object.hasOwn(checks, type)) return { ok: true, frame: undefined }
  for (const [field, check] of checks[type as ServerFrame['type']]) {
    if (!check(value[field])) return { ok: false, message: `a ${type} frame from the server has an invalid ${field}` }
  }
  if (type === 'op' && !('data' in value)) return { ok: false, message: 'an op frame from the server has no data' }
  return { ok: true, frame: value as unknown as Received }
}
