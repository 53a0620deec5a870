import type { BroadcastMessage } from '../../ports/broadcaster.js'
import { withOpFrame, storedOpJson, opJsonFromStored, withStoredFrame } from '../../lib/protocol/op-frame.js'
import type { Op } from '../../lib/types.js'

/**
 * The Pub/Sub wire format shared by RedisBroadcaster and the op log's Lua
 * script: `{"o":"<origin instance>","m":<BroadcastMessage>}`. The origin lets
 * an instance drop its own echoes.
 *
 * An op message ends with the op, `seq` first and in the order of an `op`
 * frame: `{"o":…,"m":{"kind":"op"[,"relay":true],"epoch":…,"op":{"seq":…,
 * "project":…,"id":…,"userId":…,"sessionId":…,"data":…,"ts":…}}}`. The
 * receiver takes the frame it sends to its members from that text instead
 * of serialising the op's data again.
 *
 * A batch (the op log's append script publishes the ops of one call in one
 * message) is the envelopes of its ops joined by `\n`, in seq order:
 * `{"o":…,"m":{…}}\n{"o":…,"m":{…}}`. JSON text never holds a raw newline
 * (JSON.stringify escapes it in strings), so `\n` only ever separates
 * envelopes. A batch of one op is a plain envelope, which instances from
 * before batching read too; they ignore a batch of several (it is not one
 * JSON value) and fill the gap from the op log when the next op shows it.
 */
export interface Envelope {
  readonly origin: string
  readonly message: BroadcastMessage
}

/** The start of every message `origin` publishes: its own echoes are dropped on it, unread. */
export function envelopePrefix (origin: string): string {
  return `{"o":${JSON.stringify(origin)},`
}

/** The op's stored JSON and its frame (lib/protocol/op-frame.ts), for the Redis adapters. */
export { storedOpJson, withStoredFrame }

export function encodeEnvelope (origin: string, message: BroadcastMessage): string {
  if (message.kind !== 'op') return JSON.stringify({ o: origin, m: message })
  const { op } = message
  return `${envelopePrefix(origin)}"m":{"kind":"op"${message.relay === true ? ',"relay":true' : ''},"epoch":${JSON.stringify(message.epoch)},"op":${opJsonFromStored(op.seq, op.project, storedOpJson(op))}}}`
}

const KINDS = new Set(['op', 'member', 'presence'])
const OP_START = '"op":{"seq":'

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
  if (kind === 'op') {
    const op = (m as { op?: unknown }).op
    if (op === null || typeof op !== 'object' || typeof (op as { seq?: unknown }).seq !== 'number') return null
    // The op object is the message's last value (see above): its text is the frame's.
    const start = raw.indexOf(OP_START)
    if (start !== -1 && raw.endsWith('}}}')) withOpFrame(op as Op, raw.slice(start + 5, raw.length - 2))
  }
  return { origin: o, message: m as BroadcastMessage }
}

/** What separates the envelopes of a batch (see above). */
export const BATCH_SEPARATOR = '\n'

/**
 * Parses a Pub/Sub message: one envelope, or each envelope of a batch in
 * order. Parts that are not Flow envelopes are left out (an empty array for
 * a message with none).
 */
export function decodeMessage (raw: string): Envelope[] {
  if (!raw.includes(BATCH_SEPARATOR)) {
    const envelope = decodeEnvelope(raw)
    return envelope === null ? [] : [envelope]
  }
  const envelopes: Envelope[] = []
  for (const part of raw.split(BATCH_SEPARATOR)) {
    const envelope = decodeEnvelope(part)
    if (envelope !== null) envelopes.push(envelope)
  }
  return envelopes
}

/**
 * The parts of an op envelope the Lua script joins with the two values only
 * it knows (the epoch and the seq) and the op's stored JSON, which it has
 * already: `head + epoch + middle + seq + beforeStored + stored.slice(1) +
 * '}}'`. Every value is escaped as JSON.
 */
export function opEnvelopeParts (origin: string, project: string): { head: string, middle: string, beforeStored: string } {
  return {
    head: `${envelopePrefix(origin)}"m":{"kind":"op","epoch":"`,
    middle: '","op":{"seq":',
    beforeStored: `,"project":${JSON.stringify(project)},`
  }
}
