import { isUtf8 } from 'node:buffer'
import { Ajv, type ValidateFunction } from 'ajv'
import { PROJECT_ID, OP_ID } from '../ids.js'
import type { ClientFrame, Ref } from './wire.js'

/** Client frames of protocol v1 (lib/protocol/wire.ts), as validated here. Unknown fields are ignored. */
export type {
  ClientFrame, JoinFrame, LeaveFrame, OpFrame, PresenceFrame, SyncFrame, PingFrame, ListMembersFrame, Ref
} from './wire.js'
export type ClientFrameType = ClientFrame['type']

const ref = {
  anyOf: [
    { type: 'string', maxLength: 64 },
    { type: 'integer', minimum: Number.MIN_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER }
  ]
}
const project = { type: 'string', pattern: PROJECT_ID.source }
const seq = { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER }
const epoch = { type: 'string', minLength: 1, maxLength: 128 }
const object = { type: 'object' }
/** a flag that is on or absent */
const flag = { const: true }
/** (1.3) features asked for at join: names this server does not know are ignored */
const features = { type: 'array', maxItems: 16, items: { type: 'string', maxLength: 32 } }
/** (1.3) a resume token, or a members cursor: opaque to the client */
const opaque = { type: 'string', minLength: 1, maxLength: 256 }

const schemas: Record<ClientFrameType, object> = {
  join: {
    type: 'object',
    required: ['project'],
    properties: { project, since: seq, epoch, presence: object, snapshot: flag, features, resume: opaque, ref }
  },
  leave: { type: 'object', required: ['project'], properties: { project, ref } },
  op: {
    type: 'object',
    required: ['project', 'data'],
    properties: { project, id: { type: 'string', pattern: OP_ID.source }, data: {}, ref }
  },
  presence: { type: 'object', required: ['project', 'state'], properties: { project, state: object, ref } },
  sync: {
    type: 'object',
    required: ['project', 'since'],
    properties: { project, since: seq, epoch, snapshot: flag, ref }
  },
  ping: { type: 'object', properties: { ref } },
  list_members: {
    type: 'object',
    required: ['project'],
    properties: { project, after: opaque, limit: { type: 'integer', minimum: 1, maximum: 10_000 }, ref }
  },
  snapshot: {
    type: 'object',
    required: ['project', 'epoch', 'seq', 'state'],
    properties: { project, epoch, seq, state: {}, ref }
  }
}

const ajv = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true, unicodeRegExp: false })
const validators = new Map<string, ValidateFunction>(
  Object.entries(schemas).map(([type, schema]) => [type, ajv.compile(schema)])
)

/** A frame that could not be accepted, with what to answer. */
export interface FrameError {
  readonly ok: false
  readonly code: 'bad_request' | 'unknown_type'
  readonly message: string
  /** echoed when the frame had a usable one */
  readonly ref?: Ref
  readonly project?: string
}

export type ParseResult = { readonly ok: true, readonly frame: ClientFrame } | FrameError

function usableRef (value: unknown): Ref | undefined {
  if (typeof value === 'string' && value.length <= 64) return value
  if (typeof value === 'number' && Number.isSafeInteger(value)) return value
  return undefined
}

function fail (code: FrameError['code'], message: string, source?: Record<string, unknown>): FrameError {
  const error: { -readonly [K in keyof FrameError]: FrameError[K] } = { ok: false, code, message }
  if (source !== undefined) {
    const r = usableRef(source.ref)
    if (r !== undefined) error.ref = r
    if (typeof source.project === 'string' && PROJECT_ID.test(source.project)) error.project = source.project
  }
  return error
}

/**
 * Turns one WebSocket message into a validated frame, or says why not.
 * Never throws: every malformed input maps to `bad_request` or `unknown_type`.
 */
export function parseFrame (data: Buffer | string, isBinary: boolean): ParseResult {
  if (isBinary) return fail('bad_request', 'binary frames are not accepted: send JSON text frames')
  let text: string
  if (typeof data === 'string') text = data
  else {
    if (!isUtf8(data)) return fail('bad_request', 'frame is not valid UTF-8')
    text = data.toString('utf8')
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return fail('bad_request', 'frame is not valid JSON')
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return fail('bad_request', 'frame must be a JSON object')
  }
  const source = value as Record<string, unknown>
  const type = source.type
  if (typeof type !== 'string') return fail('bad_request', 'frame needs a string "type"', source)
  const validate = Object.hasOwn(schemas, type) ? validators.get(type) : undefined
  if (validate === undefined) {
    return fail('unknown_type', `unknown frame type ${JSON.stringify(type.slice(0, 32))}`, source)
  }
  // Deeper than the bound needs more brackets than a shorter text holds.
  if (text.length > 2 * MAX_JSON_DEPTH && nestsDeeper(value, MAX_JSON_DEPTH)) {
    return fail('bad_request', `${type}: frame nests arrays and objects deeper than ${MAX_JSON_DEPTH} levels`, source)
  }
  if (!validate(value)) {
    const e = validate.errors?.[0]
    const missing = (e?.params as { missingProperty?: string } | undefined)?.missingProperty
    const field = e === undefined ? '' : e.instancePath.slice(1).replaceAll('/', '.') || missing || ''
    const what = e === undefined ? 'is invalid'
      : e.keyword === 'required' ? 'is required'
        : e.keyword === 'pattern' ? 'has invalid characters or length'
          : (e.message ?? 'is invalid')
    return fail('bad_request', `${type}: ${field === '' ? 'frame' : field} ${what}`, source)
  }
  return { ok: true, frame: value as ClientFrame }
}

/**
 * The ref and project of a frame that is not processed (dropped by the rate
 * limit), so the error about it can name them as for any other error.
 */
/** What a dropped frame is named by in the error about it. */
export interface FrameLabel { readonly ref?: Ref, readonly project?: string }

export function peekFrame (data: Buffer | string, isBinary: boolean): FrameLabel {
  const parsed = parseFrame(data, isBinary)
  if (!parsed.ok) return { ref: parsed.ref, project: parsed.project }
  const { frame } = parsed
  return { ref: frame.ref, project: 'project' in frame ? frame.project : undefined }
}

/**
 * Deepest nesting of arrays and objects accepted in a frame, the frame
 * itself being level 1. Deeper values overflow the stack of the recursive
 * serialisers they go through (JSON.stringify, structuredClone).
 */
export const MAX_JSON_DEPTH = 128

/** Whether a parsed JSON value nests arrays and objects deeper than `max` levels. Iterative. */
export function nestsDeeper (value: unknown, max: number): boolean {
  const values: unknown[] = [value]
  const depths: number[] = [1]
  while (values.length > 0) {
    const v = values.pop()
    const depth = depths.pop() as number
    if (v === null || typeof v !== 'object') continue
    if (depth > max) return true
    for (const child of Array.isArray(v) ? v as unknown[] : Object.values(v)) {
      if (child !== null && typeof child === 'object') {
        values.push(child)
        depths.push(depth + 1)
      }
    }
  }
  return false
}

/** Size of a JSON value as UTF-8 bytes when serialised. */
export function jsonBytes (value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value))
}
