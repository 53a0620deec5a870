import type { BroadcastMessage } from '../../ports/broadcaster.js'

/**
 * The Pub/Sub wire format shared by RedisBroadcaster and the op log's Lua
 * script: `{"o":"<origin instance>","m":<BroadcastMessage>}`. The origin lets
 * an instance drop its own echoes.
 */
export interface Envelope {
  readonly origin: string
  readonly message: BroadcastMessage
}

export function encodeEnvelope (origin: string, message: BroadcastMessage): string {
  return JSON.stringify({ o: origin, m: message })
}

const KINDS = new Set(['op', 'member', 'presence'])

/** Parses a Pub/Sub message; null for anything that is not a Flow envelope. */
export function decodeEnvelope (raw: string): Envelope | null {
  let value: unknown
  try {
    value = JSON.parse(raw)
  } catch {
    return null
  }
  if (value === null || typeof value !== 'object') return null
  const { o, m } = value as { o?: unknown, m?: unknown }
  if (typeof o !== 'string' || m === null || typeof m !== 'object') return null
  const kind = (m as { kind?: unknown }).kind
  if (typeof kind !== 'string' || !KINDS.has(kind)) return null
  return { origin: o, message: m as BroadcastMessage }
}

/**
 * The parts of an op envelope around the two values only the Lua script
 * knows (the epoch and the seq): `head + epoch + middle + seq + tail`.
 * Built by JSON.stringify, so every value is escaped as JSON.
 */
export function opEnvelopeParts (origin: string, op: { project: string, id: string, userId: string, sessionId: string | null, data: unknown, ts: number }): { head: string, middle: string, tail: string } {
  const body = JSON.stringify({ project: op.project, id: op.id, userId: op.userId, sessionId: op.sessionId, data: op.data, ts: op.ts })
  return {
    head: `{"o":${JSON.stringify(origin)},"m":{"kind":"op","epoch":"`,
    middle: '","op":{"seq":',
    tail: `,${body.slice(1)}}}`
  }
}
