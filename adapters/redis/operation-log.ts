import type {
  AppendResult, LogMissing, NewOp, NewOpIfLogExists, OpenedLog, OperationLog, ReadResult
} from '../../ports/operation-log.js'
import { NO_EPOCH, type LogPosition, type Op } from '../../lib/types.js'
import { idempotencyKey, isOpId, randomId } from '../../lib/ids.js'
import { opEnvelopeParts, storedOpJson, withStoredFrame } from './codec.js'
import { DEFAULT_KEY_PREFIX, redisKeys, type OpLogKeys, type RedisKeys } from './keys.js'
import { APPEND, FENCE, HEAD, OPEN, READ, TOUCH, runScript, type RedisCommandClient } from './scripts.js'
import { LogWatermarks, type Watermark } from './watermarks.js'
import { ClosedError, RedisReplyError, UnavailableError } from '../../lib/errors.js'
import { integer, list, positiveInteger, text, tuple } from './replies.js'

export interface RedisOperationLogOptions {
  /** a connected (or connecting) node-redis client; the log never closes it */
  readonly client: RedisCommandClient
  /** prefix of every key (`FLOW_KEY_PREFIX`, default `flow`) */
  readonly keyPrefix?: string
  /** ops kept per project, at most (default 10,000: docs/protocol.md guarantee 6) */
  readonly historyLimit?: number
  /** bytes of ops kept per project, at most; the newest op is always kept (default 8 MiB) */
  readonly historyBytes?: number
  /**
   * op ids remembered per project for idempotency: the last idRetention at
   * least, 2 x idRetention at most (default max(historyLimit, 10,000); at
   * least historyLimit)
   */
  readonly idRetention?: number
  /** the default `maxBytes` of a read (default 1 MiB) */
  readonly pageBytes?: number
  /**
   * every key of a project's log expires this long after its last append,
   * open or touch (default: never)
   */
  readonly idleTtlMs?: number
  /**
   * When set, the append script also PUBLISHes each appended op on the
   * project's channel, as the broadcaster's envelope (codec.ts) from this
   * origin, so op messages go out in seq order. Default: no publish.
   */
  readonly publishOrigin?: string
  /** ops sent in one append script call, at most (default 256): the ops of a turn beyond go in the next call */
  readonly maxBatchOps?: number
  /**
   * bytes of ops (their stored JSON and idempotency keys) sent in one append
   * script call, at most (default 1 MiB); an op larger than this goes alone
   */
  readonly maxBatchBytes?: number
  /**
   * what this instance saw of each project's log (watermarks.ts), shared
   * with the Redis broadcaster; default: one of its own, fed by this log's
   * calls only
   */
  readonly watermarks?: LogWatermarks
  /** told each time a call of this log found it below what this instance saw, and moved it to a new epoch */
  readonly onFence?: (fence: Fence) => void
  /**
   * Durable acks (FLOW_ACK_DURABILITY=replica): an append resolves only once
   * `replicas` replicas have it (one WAIT per turn, after the turn's APPEND
   * calls, on the same connection), within `timeoutMs`; else it rejects
   * `unavailable`. Default: resolved when the primary has it.
   */
  readonly durability?: { readonly replicas: number, readonly timeoutMs: number }
}

/** A log found below what the instance saw, moved to a new epoch (its surviving ops kept). */
export interface Fence {
  readonly project: string
  /** the epoch and seq the instance saw */
  readonly seen: Watermark
  /** the log's new epoch, and its head (the seqs Redis still had) */
  readonly epoch: string
  readonly head: number
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
const DEFAULT_HISTORY_BYTES = 8 * 1024 * 1024
const DEFAULT_ID_RETENTION = 10_000
const DEFAULT_PAGE_BYTES = 1024 * 1024
const DEFAULT_MAX_BATCH_OPS = 256
const DEFAULT_MAX_BATCH_BYTES = 1024 * 1024

/** The WAIT of one turn's appends (durable acks): sent once, after the turn's calls. */
interface Confirm {
  /** true once it was sent: a command of the turn sent later (a script sent again after NOSCRIPT) is not covered */
  sent: boolean
  promise: Promise<void> | null
  readonly wait: () => Promise<void>
}

/** An append waiting for its turn's script call. */
interface Queued {
  readonly input: NewOp | NewOpIfLogExists
  /** its idempotency key (lib/ids.ts) */
  readonly key: string
  /** the op as stored (encodeOp) */
  readonly body: string
  /** what it adds to the call's arguments, in bytes */
  readonly bytes: number
  readonly resolve: (result: AppendResult | LogMissing) => void
  readonly reject: (err: unknown) => void
}

/**
 * The shared op log: one Redis stream per project, written only by Lua
 * scripts, so every instance of the cluster sees one sequence per project.
 *
 * - Keys (see keys.ts and scripts.ts): `{prefix}:{project}:meta` (hash:
 *   `epoch`, `seq` = head, `bytes` = size of the kept ops), `:ops` (stream,
 *   entry id `<seq>-0`, field `op` = the op as JSON without project and seq),
 *   `:sizes` (list: each kept op's size, oldest first), `:ids` and `:ids:old`
 *   (hashes: op id -> seq, two generations of `idRetention` ids at most).
 * - append() is one script call for all the ops of a project that arrive
 *   in one event-loop turn (a batch, in arrival order; at most
 *   `maxBatchOps` ops and `maxBatchBytes` bytes per call, the rest in the
 *   next calls, sent right behind it): per op the log (created when it has
 *   none, unless `create: false`), the id check, XADD with the next seq, the
 *   id (the ids generation turned by RENAME when full); then once the
 *   history trimmed to `historyLimit` ops and `historyBytes` bytes from its
 *   oldest op (sizes popped, XTRIM MINID ~), head and bytes, the idle TTL on
 *   every key (and one PUBLISH of the batch with `publishOrigin`). Each
 *   caller's promise settles with its own op's result, exactly what the op
 *   alone would have got after the ones before it. Redis runs scripts one at
 *   a time, so seqs are contiguous cluster-wide, and calls sent in order on
 *   one client run in that order (one exception, when Redis' script cache
 *   is emptied while calls are in flight: see runScript in scripts.ts).
 * - The turn: the first append of a turn queues a microtask that queues a
 *   tick, which Node runs once the microtask queue has drained, before it
 *   goes back to I/O or timers. A microtask alone would leave out the
 *   appends a turn reaches after an await (the host's `onOp` check chain, a
 *   re-sync's Promise.all); a tick alone, queued from a socket's callback,
 *   runs before any promise continuation of that callback. Nothing waits
 *   past the turn it was called in; setImmediate would also gather other
 *   sockets' reads of the same poll phase, at the price of holding every op
 *   for the rest of that phase.
 * - read() and head() are read-only scripts, so head, epoch and ops come
 *   from one moment, and they create nothing: a project without a log is
 *   NO_EPOCH at head 0. read() serves at most `maxBytes` (`pageBytes`) after
 *   the first op, deciding the page from the sizes list before it reads the
 *   stream: neither the script nor the reply holds more than that page.
 * - open() creates the log (a script); touch() runs a small script per
 *   project, all sent at once (one round trip): each extends the TTL of a
 *   project's keys when it has a log.
 * - With `idleTtlMs` every key of a project's log gets that TTL at each
 *   append, open and touch, so the keys of an active project stay and those
 *   of an idle one expire together; the project then comes back with a new
 *   epoch.
 * - The epoch also changes when a key is lost alone (the meta hash, or the
 *   stream, sizes or ids of a log with kept ops: Redis lost data, a key was
 *   evicted or deleted); the new head then continues above the seqs still
 *   stored, and callers holding the old epoch get `reset`.
 * - Project ids and ops are validated when append() is called, before
 *   anything is sent: a bad op rejects alone and never fails its batch. A
 *   Redis failure rejects every op of the call with Redis' error (each op
 *   may or may not have been appended: a retry with the same id is safe).
 *
 * close() only marks the log closed (further calls reject; appends already
 * made are still sent at the end of their turn): the client belongs to the
 * caller.
 */
export class RedisOperationLog implements OperationLog {
  readonly scope = 'cluster'
  readonly publishesOps: boolean
  readonly #client: RedisCommandClient
  readonly #keys: RedisKeys
  readonly #historyLimit: number
  readonly #historyBytes: number
  readonly #idRetention: number
  readonly #pageBytes: number
  /** the idle TTL as the scripts take it: ms, '0' for none */
  readonly #ttl: string
  readonly #origin: string | undefined
  readonly #maxBatchOps: number
  readonly #maxBatchBytes: number
  /** appends of this turn not sent yet, per project in arrival order (a Map keeps the projects in theirs) */
  #queued = new Map<string, { readonly keys: OpLogKeys, readonly ops: Queued[] }>()
  #flushQueued = false
  #closed = false
  readonly #seen: LogWatermarks
  readonly #onFence: ((fence: Fence) => void) | undefined
  readonly #durability: { readonly replicas: number, readonly timeoutMs: number } | undefined
  /** after a WAIT short of replicas: appends are refused until the replicas are back (INFO replication) */
  #replicasAway = false
  /** the INFO check in flight while the replicas are away, and when the last one answered */
  #replicaCheck: Promise<void> | null = null
  #replicaCheckedAt = 0
  /** how many times a log was found below what this instance saw, and moved to a new epoch */
  #fenced = 0
  /** random once per log; candidates add a counter (no random bytes per call on the hot path) */
  readonly #epochBase = randomId(9)
  #epochCount = 0

  constructor (options: RedisOperationLogOptions) {
    this.#client = options.client
    this.#keys = redisKeys(options.keyPrefix ?? DEFAULT_KEY_PREFIX)
    this.#historyLimit = positiveInteger(options.historyLimit ?? DEFAULT_HISTORY_LIMIT, 'historyLimit')
    this.#historyBytes = positiveInteger(options.historyBytes ?? DEFAULT_HISTORY_BYTES, 'historyBytes')
    this.#idRetention = positiveInteger(options.idRetention ?? Math.max(this.#historyLimit, DEFAULT_ID_RETENTION), 'idRetention')
    this.#pageBytes = positiveInteger(options.pageBytes ?? DEFAULT_PAGE_BYTES, 'pageBytes')
    this.#ttl = options.idleTtlMs === undefined ? '0' : String(positiveInteger(options.idleTtlMs, 'idleTtlMs'))
    this.#origin = options.publishOrigin
    this.publishesOps = options.publishOrigin !== undefined
    this.#maxBatchOps = positiveInteger(options.maxBatchOps ?? DEFAULT_MAX_BATCH_OPS, 'maxBatchOps')
    this.#maxBatchBytes = positiveInteger(options.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES, 'maxBatchBytes')
    this.#seen = options.watermarks ?? new LogWatermarks()
    this.#onFence = options.onFence
    if (options.durability !== undefined) {
      positiveInteger(options.durability.replicas, 'durability.replicas')
      positiveInteger(options.durability.timeoutMs, 'durability.timeoutMs')
    }
    this.#durability = options.durability
    if (this.#idRetention < this.#historyLimit) throw new RangeError('idRetention must be an integer >= historyLimit')
  }

  /**
   * A fresh epoch for the scripts to use when a project has none: unique per
   * process (random base) and per call (counter). Used only then.
   */
  /**
   * Logs this instance found below a seq it had seen (acked, delivered or
   * read) in the same epoch, and moved to a new epoch: Redis lost acked ops
   * (a failover to a lagging replica, a restart that lost part of its AOF).
   */
  get fenced (): number {
    return this.#fenced
  }


  /** After a script's answer: the log at (epoch, head), and whether this call moved it from `seen` to a new epoch. */
  #saw (project: string, epoch: string, head: number, fenced: boolean, seen: readonly Watermark[]): void {
    if (fenced) {
      this.#fenced++
      // The seq seen in the epoch the log was in: the first pair that is not the log's new epoch.
      const lost = seen.find((w) => w.epoch !== epoch) ?? { epoch: '', seq: 0 }
      this.#onFence?.({ project, seen: { epoch: lost.epoch, seq: lost.seq }, epoch, head })
    }
    this.#seen.saw(project, epoch, head)
  }

  #candidate (): string {
    this.#epochCount++
    return `${this.#epochBase}${this.#epochCount.toString(36)}`
  }

  append (op: NewOp): Promise<AppendResult>
  append (op: NewOp | NewOpIfLogExists): Promise<AppendResult | LogMissing>
  async append (input: NewOp | NewOpIfLogExists): Promise<AppendResult | LogMissing> {
    this.#assertOpen()
    // Validated here, so a bad op rejects alone, before anything is sent, and never fails its batch.
    const keys = this.#opLog(input.project)
    const body = encodeOp(input)
    const key = idempotencyKey(input.userId, input.id)
    if (this.#replicasAway) await this.#replicasBack()
    return await new Promise<AppendResult | LogMissing>((resolve, reject) => {
      // What it adds to the call: the create flag, the key, the JSON.
      const bytes = 1 + Buffer.byteLength(key) + Buffer.byteLength(body)
      let queue = this.#queued.get(input.project)
      if (queue === undefined) {
        queue = { keys, ops: [] }
        this.#queued.set(input.project, queue)
      }
      queue.ops.push({ input, key, body, bytes, resolve, reject })
      if (!this.#flushQueued) {
        this.#flushQueued = true
        // Sent at the end of the turn (see the class comment: a microtask that queues a tick).
        queueMicrotask(this.#queueFlush)
      }
    })
  }

  readonly #queueFlush = (): void => { process.nextTick(this.#flush) }

  /** Sends every queued op: per project, in arrival order, at most maxBatchOps ops and maxBatchBytes bytes per call. */
  readonly #flush = (): void => {
    this.#flushQueued = false
    const queued = this.#queued
    this.#queued = new Map()
    // With durable acks, one WAIT after every call of the turn (sent below, on the same connection, so it
    // covers them all); each call's ops resolve once it answers.
    let confirm: Confirm | null = null
    if (this.#durability !== undefined) {
      const turn: Confirm = {
        sent: false,
        promise: null,
        wait: () => {
          if (turn.promise === null) {
            turn.promise = this.#waitReplicas()
            turn.sent = true
          }
          return turn.promise
        }
      }
      confirm = turn
    }
    for (const [project, { keys, ops }] of queued) {
      let from = 0
      while (from < ops.length) {
        let to = from + 1
        let bytes = (ops[from] as Queued).bytes
        while (to < ops.length && to - from < this.#maxBatchOps && bytes + (ops[to] as Queued).bytes <= this.#maxBatchBytes) {
          bytes += (ops[to] as Queued).bytes
          to++
        }
        // Sent now, in order, on one client: Redis runs the calls in that order.
        this.#appendBatch(project, keys, ops.slice(from, to), confirm)
        from = to
      }
    }
    // Every call of the turn waits on it (or failed already): a rejection is theirs to see, never unhandled.
    if (confirm !== null) confirm.wait().catch(() => {})
  }

  /**
   * WAIT for the replicas (durable acks): resolves when enough of them have
   * every write sent before it on this connection; else rejects
   * `unavailable` and refuses appends until INFO shows the replicas back.
   */
  async #waitReplicas (): Promise<void> {
    const { replicas, timeoutMs } = this.#durability as { replicas: number, timeoutMs: number }
    const reply = await this.#client.sendCommand(['WAIT', String(replicas), String(timeoutMs)])
    if (integer(reply) >= replicas) return
    this.#replicasAway = true
    this.#replicaCheckedAt = Date.now()
    throw new UnavailableError(`the op is on the primary but ${integer(reply)} of ${replicas} replicas confirmed it within ` +
      `${timeoutMs} ms (FLOW_ACK_DURABILITY=replica): try again with its id`)
  }

  /** While the replicas are away: resolves once INFO replication shows enough of them online (checked at most every timeoutMs), else rejects. */
  async #replicasBack (): Promise<void> {
    const { replicas, timeoutMs } = this.#durability as { replicas: number, timeoutMs: number }
    if (this.#replicaCheck === null && Date.now() - this.#replicaCheckedAt >= timeoutMs) {
      this.#replicaCheck = this.#client.sendCommand(['INFO', 'replication']).then((info) => {
        if (onlineReplicas(text(info)) >= replicas) this.#replicasAway = false
      }).finally(() => {
        this.#replicaCheckedAt = Date.now()
        this.#replicaCheck = null
      })
    }
    if (this.#replicaCheck !== null) await this.#replicaCheck
    if (this.#replicasAway) {
      throw new UnavailableError(`fewer than ${replicas} replicas confirm writes (FLOW_ACK_DURABILITY=replica): the op was not appended; try again`)
    }
  }

  /** One APPEND call for `batch` (one project's ops, in arrival order); each op's promise settles with its own result. */
  #appendBatch (project: string, keys: OpLogKeys, batch: readonly Queued[], confirm: Confirm | null): void {
    const args = [
      this.#candidate(),
      String(this.#historyLimit),
      String(this.#historyBytes),
      String(this.#idRetention),
      this.#ttl,
      ...(this.#origin === undefined ? ['', '', '', ''] : [this.#keys.channel(project), ...envelopeParts(this.#origin, project)])
    ]
    const seen = this.#seenNow(project)
    args.push(seenArg(seen))
    for (const op of batch) args.push(op.input.create === false ? '0' : '1', op.key, op.body)
    const fail = (err: unknown): void => { for (const op of batch) op.reject(err) }
    // Sent again after the turn's WAIT (runScript does after NOSCRIPT): it needs a WAIT of its own.
    let late = false
    runScript(this.#client, APPEND, keys.all, args, () => { late ||= confirm?.sent === true }).then((reply) => {
      let results: Array<AppendResult | LogMissing>
      try {
        results = appendResults(project, batch, reply)
      } catch (err) {
        fail(err)
        return
      }
      let head = 0
      let epoch = ''
      for (const r of results) {
        if (r.missing === true) continue
        epoch = r.epoch
        head = Math.max(head, r.duplicate ? r.seq : r.op.seq)
      }
      this.#saw(project, epoch, head, appendFenced(reply), seen)
      const settle = (): void => { for (const [i, op] of batch.entries()) op.resolve(results[i] as AppendResult | LogMissing) }
      if (confirm === null) settle()
      else if (late) this.#waitReplicas().then(settle, fail)
      else confirm.wait().then(settle, fail)
    }, fail)
  }

  async read (project: string, since: number, limit: number, epoch?: string, maxBytes = this.#pageBytes): Promise<ReadResult> {
    return await this.#read(project, since, limit, epoch, maxBytes, true)
  }

  async #read (project: string, since: number, limit: number, epoch: string | undefined, maxBytes: number,
    mayFence: boolean): Promise<ReadResult> {
    this.#assertOpen()
    const keys = this.#opLog(project)
    if (!Number.isSafeInteger(since) || since < 0) throw new RangeError('since must be an integer >= 0')
    if (Number.isNaN(limit)) throw new RangeError('limit must be a number >= 1')
    if (Number.isNaN(maxBytes)) throw new RangeError('maxBytes must be a number')
    const count = Math.max(1, Math.min(Math.floor(limit), Number.MAX_SAFE_INTEGER))
    const budget = Math.max(0, Math.min(Math.floor(maxBytes), Number.MAX_SAFE_INTEGER))
    const seen = this.#seenNow(project)
    const reply = await runScript(this.#client, READ, keys.all.slice(0, 3), [
      String(since),
      String(count),
      String(budget),
      epoch === undefined ? '0' : '1',
      // The script names "no log" ''.
      epoch === undefined || epoch === NO_EPOCH ? '' : epoch
    ])
    const items = list(reply, 'read')
    const [current, head, reset] = tuple(items.slice(0, 3), 3, 'read')
    const position = { epoch: epochOf(current), head: integer(head) }
    if (await this.#behind(project, keys, seen, text(current), position.head) && mayFence) {
      // The log lost ops this instance saw: it is in a new epoch now, so this read's answer is another epoch's.
      return await this.#read(project, since, limit, epoch, maxBytes, false)
    }
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
    return await this.#head(project, true)
  }

  async #head (project: string, mayFence: boolean): Promise<LogPosition> {
    this.#assertOpen()
    const keys = this.#opLog(project)
    const seen = this.#seenNow(project)
    const [epoch, seq] = tuple(await runScript(this.#client, HEAD, [keys.meta], []), 2, 'head')
    if (await this.#behind(project, keys, seen, text(epoch), integer(seq)) && mayFence) return await this.#head(project, false)
    return { epoch: epochOf(epoch), seq: integer(seq) }
  }

  async open (project: string): Promise<OpenedLog> {
    this.#assertOpen()
    const keys = this.#opLog(project)
    const seen = this.#seenNow(project)
    const reply = await runScript(this.#client, OPEN, keys.all, [this.#candidate(), this.#ttl, seenArg(seen)])
    const [epoch, seq, created, fenced] = tuple(reply, 4, 'open')
    this.#saw(project, text(epoch), integer(seq), integer(fenced) === 1, seen)
    return { epoch: text(epoch), seq: integer(seq), created: integer(created) === 1 }
  }

  /** One TOUCH script per project, sent together (one round trip); nothing to do without an idle TTL. */
  async touch (projects: readonly string[]): Promise<void> {
    this.#assertOpen()
    const all = [...new Set(projects)].map((project) => this.#opLog(project))
    if (this.#ttl === '0') return
    await Promise.all(all.map(async (keys) => await runScript(this.#client, TOUCH, keys.all, [this.#ttl])))
  }

  /** Marks the log closed; further calls reject. The client stays open. */
  async close (): Promise<void> {
    this.#closed = true
  }

  /**
   * Records what a read-only call saw (epoch '' for no log); when the log
   * was below what this instance had seen in that epoch *before the call was
   * sent* (`seen`: so the seen op was in Redis before the call ran, whatever
   * connection told of it), fences it (FENCE: a new epoch, the ops kept)
   * and resolves true: the caller asks again.
   */
  async #behind (project: string, keys: OpLogKeys, seen: readonly Watermark[], epoch: string, head: number): Promise<boolean> {
    if (epoch === '') return false
    const known = seen.find((w) => w.epoch === epoch)
    if (known === undefined || known.seq <= head) {
      this.#seen.saw(project, epoch, head)
      return false
    }
    const reply = await runScript(this.#client, FENCE, keys.all, [this.#candidate(), seenArg(seen)])
    const [now, at, fenced] = tuple(reply, 3, 'fence')
    this.#saw(project, text(now), integer(at), integer(fenced) === 1, seen)
    return true
  }

  /** What this instance saw of the project's log now, copied (the watermarks update their entries in place). */
  #seenNow (project: string): Watermark[] {
    return this.#seen.all(project).map((w) => ({ epoch: w.epoch, seq: w.seq }))
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


/** The scripts answer '' for a project without a log. */
function epochOf (value: unknown): string {
  const epoch = text(value)
  return epoch === '' ? NO_EPOCH : epoch
}

/** The stream field of an op: its JSON without project and seq. Validates what JSON would lose. */
function encodeOp (op: NewOp | NewOpIfLogExists): string {
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

/** What the scripts take for what an instance saw of a log: `<epoch> <seq>` pairs separated by spaces, '' for nothing. */
function seenArg (seen: readonly Watermark[]): string {
  return seen.map((w) => `${w.epoch} ${w.seq}`).join(' ')
}

/** Whether an APPEND call moved the log to a new epoch (its reply's third item: scripts.ts). */
function appendFenced (raw: unknown): boolean {
  return integer(list(raw, 'append')[2]) === 1
}

/** Each op's result from an APPEND reply ({epoch, created, fenced, code, seq, ...}: scripts.ts). */
function appendResults (project: string, batch: readonly Queued[], raw: unknown): Array<AppendResult | LogMissing> {
  const reply = tuple(raw, 3 + 2 * batch.length, 'append')
  const epoch = text(reply[0])
  const createdBy = integer(reply[1])
  return batch.map((op, i): AppendResult | LogMissing => {
    const code = integer(reply[3 + 2 * i])
    const seq = integer(reply[4 + 2 * i])
    if (code === 2) return { duplicate: false, created: false, missing: true }
    if (code === 0) return { duplicate: true, epoch, seq, id: op.input.id }
    if (code !== 1) throw new RedisReplyError(`the append script answered code ${code}`)
    return { duplicate: false, created: createdBy === i + 1, epoch, op: decodeOp(project, seq, op.body) }
  })
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

/** Replicas INFO replication lists as online with a lag (seconds since their last ack) of at most 1. */
function onlineReplicas (info: string): number {
  let n = 0
  for (const m of info.matchAll(/^slave\d+:.*\bstate=online\b.*\blag=(\d+)/gm)) if (Number(m[1]) <= 1) n++
  return n
}

/** `<seq>-0` -> seq */
function entrySeq (id: string): number {
  const match = /^(\d+)-0$/.exec(id)
  const seq = match === null ? NaN : Number(match[1])
  if (!Number.isSafeInteger(seq)) throw new RedisReplyError(`stream entry id ${id}`)
  return seq
}




