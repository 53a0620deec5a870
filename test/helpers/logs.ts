import { MemoryOperationLog } from '../../adapters/memory/operation-log.js'
import type {
  AppendResult, LogMissing, NewOp, NewOpIfLogExists, OpenedLog, OperationLog, ReadResult
} from '../../ports/operation-log.js'
import type { LogPosition } from '../../lib/types.js'

export interface TestLogOptions {
  /** the log it stands for: one shared by the cluster, as Redis is (default), or an instance's own */
  readonly scope?: 'cluster' | 'instance'
  /** whether its appends publish the op, as the Redis log does with Pub/Sub on (default false) */
  readonly publishesOps?: boolean
  /** of the memory log underneath */
  readonly historyLimit?: number
}

/**
 * An op log for a test to drive: a memory log does the work (`inner`, which
 * the test may replace to lose the data: a new epoch), and a subclass
 * overrides the calls it holds, slows or fails.
 */
export class TestLog implements OperationLog {
  readonly scope: 'cluster' | 'instance'
  readonly publishesOps: boolean
  inner: MemoryOperationLog

  constructor (options: TestLogOptions = {}) {
    this.scope = options.scope ?? 'cluster'
    this.publishesOps = options.publishesOps ?? false
    this.inner = new MemoryOperationLog(options.historyLimit === undefined ? {} : { historyLimit: options.historyLimit })
  }

  append (op: NewOp): Promise<AppendResult>
  append (op: NewOp | NewOpIfLogExists): Promise<AppendResult | LogMissing>
  async append (op: NewOp | NewOpIfLogExists): Promise<AppendResult | LogMissing> {
    return await this.inner.append(op)
  }

  async read (project: string, since: number, limit: number, epoch?: string, maxBytes?: number): Promise<ReadResult> {
    return await this.inner.read(project, since, limit, epoch, maxBytes)
  }

  async head (project: string): Promise<LogPosition> {
    return await this.inner.head(project)
  }

  async open (project: string): Promise<OpenedLog> {
    return await this.inner.open(project)
  }

  async touch (projects: readonly string[]): Promise<void> {
    await this.inner.touch(projects)
  }

  async close (): Promise<void> {
    await this.inner.close()
  }
}
