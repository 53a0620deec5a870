import type { AppendResult, NewOp, OperationLog, ReadResult } from '../../ports/operation-log.js'
import type { LogPosition, Op } from '../../lib/types.js'
import { randomId } from '../../lib/ids.js'
import { ClosedError } from '../../lib/errors.js'

export interface MemoryOperationLogOptions {
  /** ops kept per project, at least (default 1,000) */
  readonly historyLimit?: number
  /**
   * op ids remembered per project for idempotency: the last idRetention at
   * least, 2 x idRetention at most (default max(historyLimit, 10,000))
   */
  readonly idRetention?: number
}

interface ProjectLog {
  readonly epoch: string
  head: number
  /** kept ops, contiguous, oldest first; ops[i].seq === first + i */
  ops: Op[]
  /** op id -> seq of the newest ids; when it holds idRetention, it becomes `olderIds` */
  ids: Map<string, number>
  /** the generation before `ids`: forgotten whole at the next turn (no per-op trim) */
  olderIds: Map<string, number>
}

/**
 * The embedded op log: a bounded ring of ops per project in this process.
 * Its epoch is made when a project's log is first touched, so a restarted
 * process has new epochs and clients that reconnect get `reset`.
 */
export class MemoryOperationLog implements OperationLog {
  readonly scope = 'instance'
  readonly publishesOps = false
  readonly #logs = new Map<string, ProjectLog>()
  readonly #historyLimit: number
  readonly #idRetention: number
  #closed = false

  constructor (options: MemoryOperationLogOptions = {}) {
    this.#historyLimit = options.historyLimit ?? 1000
    this.#idRetention = options.idRetention ?? Math.max(this.#historyLimit, 10_000)
    if (!(this.#historyLimit >= 1)) throw new RangeError('historyLimit must be >= 1')
  }

  #log (project: string): ProjectLog {
    let log = this.#logs.get(project)
    if (log === undefined) {
      log = { epoch: randomId(9), head: 0, ops: [], ids: new Map(), olderIds: new Map() }
      this.#logs.set(project, log)
    }
    return log
  }

  async append (input: NewOp): Promise<AppendResult> {
    this.#assertOpen()
    const log = this.#log(input.project)
    const seen = log.ids.get(input.id) ?? log.olderIds.get(input.id)
    if (seen !== undefined) {
      return { duplicate: true, epoch: log.epoch, seq: seen, id: input.id }
    }
    const op: Op = {
      project: input.project,
      seq: log.head + 1,
      id: input.id,
      userId: input.userId,
      sessionId: input.sessionId,
      data: structuredClone(input.data),
      ts: input.ts
    }
    log.head = op.seq
    log.ops.push(op)
    // Trim in batches: keeps at least historyLimit ops at O(1) amortised cost.
    if (log.ops.length >= this.#historyLimit * 2) {
      log.ops = log.ops.slice(log.ops.length - this.#historyLimit)
    }
    // Two generations instead of deleting the oldest id on every append
    // (Map.keys().next() + delete costs microseconds once the map is large).
    if (log.ids.size >= this.#idRetention) {
      log.olderIds = log.ids
      log.ids = new Map()
    }
    log.ids.set(op.id, op.seq)
    return { duplicate: false, epoch: log.epoch, op: structuredClone(op) }
  }

  async read (project: string, since: number, limit: number, epoch?: string): Promise<ReadResult> {
    this.#assertOpen()
    const log = this.#log(project)
    const first = log.ops.length > 0 ? (log.ops[0] as Op).seq : log.head + 1
    const reset = (epoch !== undefined && epoch !== log.epoch) ||
      since > log.head || first > since + 1
    if (reset) return { epoch: log.epoch, head: log.head, ops: [], reset: true }
    const start = since + 1 - first
    const ops = log.ops.slice(start, start + Math.max(1, limit))
    return { epoch: log.epoch, head: log.head, ops: structuredClone(ops), reset: false }
  }

  async head (project: string): Promise<LogPosition> {
    this.#assertOpen()
    const log = this.#log(project)
    return { epoch: log.epoch, seq: log.head }
  }

  async close (): Promise<void> {
    this.#closed = true
    this.#logs.clear()
  }

  #assertOpen (): void {
    if (this.#closed) throw new ClosedError('operation log')
  }
}

export function createMemoryOperationLog (options?: MemoryOperationLogOptions): MemoryOperationLog {
  return new MemoryOperationLog(options)
}
