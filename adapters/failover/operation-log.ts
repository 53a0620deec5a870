import type { AppendResult, NewOp, OperationLog, ReadResult } from '../../ports/operation-log.js'
import type { LogPosition } from '../../lib/types.js'
import { ProtocolError } from '../../lib/errors.js'
import { MemoryOperationLog } from '../memory/operation-log.js'
import { Failover, type FailoverOptions } from './failover.js'
import { withTimeout } from './outage.js'

export interface FailoverOperationLogOptions extends FailoverOptions {
  readonly primary: OperationLog
  /** ops kept per project by the fallback log */
  readonly historyLimit: number
  /** ops the outage buffer may hold; beyond, appends answer `unavailable` (default 100,000) */
  readonly maxBuffered?: number
}

/**
 * The op log with a memory fallback. During an outage ops are appended to a
 * fresh memory log (a new epoch: members get `reset`) and kept, in the order
 * they were accepted, in the outage buffer. `resync` appends the buffer to the
 * primary in that order, idempotently by op id (an op whose timed-out append
 * did land is not appended twice), and only then switches back.
 */
export class FailoverOperationLog extends Failover implements OperationLog {
  readonly #primary: OperationLog
  readonly #historyLimit: number
  readonly #maxBuffered: number
  #fallback: MemoryOperationLog | null = null
  #buffer: NewOp[] = []

  constructor (options: FailoverOperationLogOptions) {
    super(options)
    this.#primary = options.primary
    this.#historyLimit = options.historyLimit
    this.#maxBuffered = options.maxBuffered ?? 100_000
  }

  get scope (): 'cluster' | 'instance' {
    return this.mode === 'primary' ? this.#primary.scope : 'instance'
  }

  get publishesOps (): boolean {
    return this.mode === 'primary' && this.#primary.publishesOps
  }

  /** ops accepted during the outage and not yet in the primary */
  get buffered (): number {
    return this.#buffer.length
  }

  protected enterFallback (): void {
    this.#fallback = new MemoryOperationLog({ historyLimit: this.#historyLimit })
    this.#buffer = []
  }

  protected leaveFallback (): void {
    void this.#fallback?.close()
    this.#fallback = null
  }

  #log (): MemoryOperationLog {
    this.#fallback ??= new MemoryOperationLog({ historyLimit: this.#historyLimit })
    return this.#fallback
  }

  async append (op: NewOp): Promise<AppendResult> {
    return await this.call('op log append', async () => await this.#primary.append(op), async () => {
      if (this.#buffer.length >= this.#maxBuffered) {
        throw new ProtocolError('unavailable', 'the op log is away and the outage buffer is full; try again')
      }
      const result = await this.#log().append(op)
      if (!result.duplicate) this.#buffer.push(op)
      return result
    })
  }

  async read (project: string, since: number, limit: number, epoch?: string): Promise<ReadResult> {
    return await this.call('op log read', async () => await this.#primary.read(project, since, limit, epoch),
      async () => await this.#log().read(project, since, limit, epoch))
  }

  async head (project: string): Promise<LogPosition> {
    return await this.call('op log head', async () => await this.#primary.head(project),
      async () => await this.#log().head(project))
  }

  async resync (): Promise<void> {
    if (this.mode === 'primary') return
    // Ops accepted while this runs join the buffer and are appended too.
    while (this.#buffer.length > 0) {
      const op = this.#buffer[0] as NewOp
      await withTimeout(this.#primary.append(op), this.timeoutMs, 'op log re-sync')
      this.#buffer.shift()
    }
    this.backToPrimary()
  }

  async close (): Promise<void> {
    await this.#fallback?.close()
    this.#fallback = null
  }
}
