import type { AppendResult, NewOp, OperationLog, ReadResult } from '../../ports/operation-log.js'
import type { LogPosition, Op } from '../../lib/types.js'
import { isOpId, randomId } from '../../lib/ids.js'
import { opEnvelopeParts, storedOpJson, withStoredFrame } from './codec.js'
import { DEFAULT_KEY_PREFIX, redisKeys, type OpLogKeys, type RedisKeys } from './keys.js'
import { APPEND, HEAD, READ, runScript, type RedisCommandClient } from './scripts.js'
import { ClosedError, RedisReplyError } from '../../lib/errors.js'

export interface RedisOperationLogOptions {
  /** a connected (or connecting) node-redis client; the log never closes it */
  readonly client: RedisCommandClient
  /** prefix of every key (`FLOW_KEY_PREFIX`, default `flow`) */
  readonly keyPrefix?: string
  /** ops kept per project, at least (default 10,000: docs/protocol.md guarantee 6) */
  readonly historyLimit?: number
  /**
   * op ids remembered per project for idempotency: the last idRetention at
   * least, 2 x idRetention at most (default max(historyLimit, 10,000); at
   * least historyLimit)
   */
  readonly idRetention?: number
  /**
   * When set, the append script also PUBLISHes each appended op on the
   * project's channel, as the broadcaster's envelope (codec.ts) from this
   * origin, so op messages go out in seq order. Default: no publish.
   */
  readonly publishOrigin?: string
}

/** An op as stored in a stream entry: the entry id holds the seq, the key the project. */
interface StoredOp {
  readonly id: string
  readonly userId: string
  readonly sessionId: string | null
  readonly data: unknown
  readonly ts: number
}

const DEFAULT_HISTORY_LIMIT = 10_000
const DEFAULT_ID_RETENTION = 10_000

/**
 * The shared op log: one Redis stream per project, written only by Lua
 * scripts, so every instance of the cluster sees one sequence per project.
 *
 * - Keys (see keys.ts): `{prefix}:{project}:ops` (stream, entry id
 *   `<seq>-0`, field `op` = the op as JSON without project and seq),
 *   `:meta` (hash: `epoch`, `seq` = head), `:ids` and `:ids:old` (hashes:
 *   op id -> seq, two generations of at most `idRetention` ids).
 * - append() is one script: epoch, id check, XADD with the next seq and
 *   `MAXLEN ~ historyLimit`, head, id (the ids generation turned by RENAME
 *   when full, instead of a trim per append) (and PUBLISH with
 *   `publishOrigin`). Redis runs scripts one at a time, so seqs are contiguous
 *   cluster-wide, and calls sent in order on one client run in that order
 *   (one exception, when Redis' script cache is emptied while calls are in
 *   flight: see runScript in scripts.ts).
 * - read() and head() are scripts too, so head, epoch and ops come from one
 *   moment. Both create the epoch of a project that has none: a project with
 *   no op still has a stable epoch.
 * - The epoch changes only when the meta hash is lost (Redis lost its data,
 *   or the keys were deleted); the new head then continues above the seqs
 *   still stored, and callers holding the old epoch get `reset`.
 * - Project ids are validated before any command is sent; a Redis failure
 *   rejects with Redis' error (the op may or may not have been appended: a
 *   retry with the same id is safe).
 *
 * close() only marks the log closed (further calls reject): the client
 * belongs to the caller.
 */
export class RedisOperationLog implements OperationLog {
  readonly scope = 'cluster'
  readonly publishesOps: boolean
  readonly #client: RedisCommandClient
  readonly #keys: RedisKeys
  readonly #historyLimit: number
  readonly #idRetention: number
  readonly #origin: string | undefined
  #closed = false
  /** random once per log; candidates add a counter (no random bytes per call on the hot path) */
  readonly #epochBase = randomId(9)
  #epochCount = 0

  constructor (options: RedisOperationLogOptions) {
    this.#client = options.client
    this.#keys = redisKeys(options.keyPrefix ?? DEFAULT_KEY_PREFIX)
    this.#historyLimit = options.historyLimit ?? DEFAULT_HISTORY_LIMIT
    this.#idRetention = options.idRetention ?? Math.max(this.#historyLimit, DEFAULT_ID_RETENTION)
    this.#origin = options.publishOrigin
    this.publishesOps = options.publishOrigin !== undefined
    if (!Number.isSafeInteger(this.#historyLimit) || this.#historyLimit < 1) {
      throw new RangeError('historyLimit must be an integer >= 1')
    }
    if (!Number.isSafeInteger(this.#idRetention) || this.#idRetention < this.#historyLimit) {
      throw new RangeError('idRetention must be an integer >= historyLimit')
    }
  }

  /**
   * A fresh epoch for the scripts to use when a project has none: unique per
   * process (random base) and per call (counter). Used only then.
   */
  #candidate (): string {
    this.#epochCount++
    return `${this.#epochBase}${this.#epochCount.toString(36)}`
  }

  async append (input: NewOp): Promise<AppendResult> {
    this.#assertOpen()
    const keys = this.#opLog(input.project)
    const body = encodeOp(input)
    const publish = this.#origin === undefined
      ? ['', '', '', '']
      : [this.#keys.channel(input.project), ...envelopeParts(this.#origin, input.project)]
    const reply = await runScript(this.#client, APPEND, [keys.meta, keys.ops, keys.ids, keys.oldIds], [
      this.#candidate(),
      input.id,
      body,
      String(this.#historyLimit),
      String(this.#idRetention),
      ...publish
    ])
    const [appended, epoch, seq] = tuple(reply, 3, 'append')
    const result = { epoch: text(epoch), seq: integer(seq) }
    if (integer(appended) === 0) return { duplicate: true, ...result, id: input.id }
    return { duplicate: false, epoch: result.epoch, op: decodeOp(input.project, result.seq, body) }
  }

  async read (project: string, since: number, limit: number, epoch?: string): Promise<ReadResult> {
    this.#assertOpen()
    const keys = this.#opLog(project)
    if (!Number.isSafeInteger(since) || since < 0) throw new RangeError('since must be an integer >= 0')
    if (Number.isNaN(limit)) throw new RangeError('limit must be a number >= 1')
    const count = Math.max(1, Math.min(Math.floor(limit), Number.MAX_SAFE_INTEGER))
    const reply = await runScript(this.#client, READ, [keys.meta, keys.ops, keys.ids, keys.oldIds], [
      this.#candidate(),
      String(since),
      String(count),
      epoch === undefined ? '0' : '1',
      epoch ?? ''
    ])
    const items = list(reply, 'read')
    const [current, head, reset] = tuple(items.slice(0, 3), 3, 'read')
    const position = { epoch: text(current), head: integer(head) }
    if (integer(reset) === 1) return { ...position, ops: [], reset: true }
    const ops: Op[] = []
    for (let i = 3; i + 1 < items.length; i += 2) {
      const seq = entrySeq(text(items[i]))
      // The script checked the first entry; the stream holds seqs contiguously.
      if (seq !== since + 1 + ops.length) return { ...position, ops: [], reset: true }
      ops.push(decodeOp(project, seq, text(items[i + 1])))
    }
    return { ...position, ops, reset: false }
  }

  async head (project: string): Promise<LogPosition> {
    this.#assertOpen()
    const keys = this.#opLog(project)
    const reply = await runScript(this.#client, HEAD, [keys.meta, keys.ops, keys.ids, keys.oldIds], [this.#candidate()])
    const [epoch, seq] = tuple(reply, 2, 'head')
    return { epoch: text(epoch), seq: integer(seq) }
  }

  /** Marks the log closed; further calls reject. The client stays open. */
  async close (): Promise<void> {
    this.#closed = true
  }

  #opLog (project: string): OpLogKeys {
    return this.#keys.opLog(project)
  }

  #assertOpen (): void {
    if (this.#closed) throw new ClosedError('operation log')
  }
}

export function createRedisOperationLog (options: RedisOperationLogOptions): RedisOperationLog {
  return new RedisOperationLog(options)
}

/** The stream field of an op: its JSON without project and seq. Validates what JSON would lose. */
function encodeOp (op: NewOp): string {
  if (!isOpId(op.id)) throw new TypeError('op id must be 1 to 64 characters of A-Z a-z 0-9 _ -')
  if (typeof op.userId !== 'string') throw new TypeError('op userId must be a string')
  if (op.sessionId !== null && typeof op.sessionId !== 'string') throw new TypeError('op sessionId must be a string or null')
  if (!Number.isFinite(op.ts)) throw new TypeError('op ts must be a finite number')
  // JSON.stringify would drop the field: there is no JSON value to store.
  if (op.data === undefined || typeof op.data === 'function' || typeof op.data === 'symbol') {
    throw new TypeError('op data must be a JSON value')
  }
  return storedOpJson(op)
}

function envelopeParts (origin: string, project: string): string[] {
  const { head, middle, beforeStored } = opEnvelopeParts(origin, project)
  return [head, middle, beforeStored]
}

function decodeOp (project: string, seq: number, body: string): Op {
  const value: unknown = JSON.parse(body)
  if (!isStoredOp(value)) throw new RedisReplyError(`corrupt op log entry ${seq} of project ${project}`)
  return withStoredFrame({ project, seq, id: value.id, userId: value.userId, sessionId: value.sessionId, data: value.data, ts: value.ts }, body)
}

function isStoredOp (value: unknown): value is StoredOp {
  if (typeof value !== 'object' || value === null) return false
  const op = value as Record<string, unknown>
  return typeof op.id === 'string' && typeof op.userId === 'string' &&
    (op.sessionId === null || typeof op.sessionId === 'string') &&
    'data' in op && typeof op.ts === 'number'
}

/** `<seq>-0` -> seq */
function entrySeq (id: string): number {
  const match = /^(\d+)-0$/.exec(id)
  const seq = match === null ? NaN : Number(match[1])
  if (!Number.isSafeInteger(seq)) throw new RedisReplyError(`stream entry id ${id}`)
  return seq
}

function list (reply: unknown, what: string): unknown[] {
  if (!Array.isArray(reply)) throw new RedisReplyError(`the ${what} script answered ${typeof reply}`)
  return reply as unknown[]
}

function tuple (reply: unknown, length: number, what: string): unknown[] {
  const items = list(reply, what)
  if (items.length !== length) throw new RedisReplyError(`the ${what} script answered ${items.length} items, not ${length}`)
  return items
}

/** A bulk string reply, whatever the client's type mapping. */
function text (value: unknown): string {
  if (typeof value === 'string') return value
  if (Buffer.isBuffer(value)) return value.toString('utf8')
  throw new RedisReplyError('expected a string')
}

/** An integer reply, whatever the client's type mapping. */
function integer (value: unknown): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' || typeof value === 'bigint' ? Number(value) : NaN
  if (!Number.isSafeInteger(n)) throw new RedisReplyError('expected an integer')
  return n
}
