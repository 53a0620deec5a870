import type {
  AppendResult, LogMissing, NewOp, NewOpIfLogExists, OpenedLog, OperationLog, ReadResult
} from '../../ports/operation-log.js'
import type { LogPosition } from '../../lib/types.js'
import { UnavailableError } from '../../lib/errors.js'
import { storedOpJson } from '../../lib/protocol/op-frame.js'
import { withTimeout } from '../../lib/watchdog.js'
import { PortSwitch, type PortControl, type SwitchOptions } from './switch.js'

/** Appends `resync` keeps in flight at once. */
const RESYNC_BATCH = 100

export interface FailoverOperationLogOptions extends SwitchOptions {
  readonly primary: OperationLog
  /** a fresh, empty log to serve from during an outage (a new epoch) */
  readonly fallback: () => OperationLog
  /** ops the outage buffer may hold; beyond, appends answer `unavailable` (default 100,000) */
  readonly maxBuffered?: number
  /** bytes of ops (their stored JSON) the outage buffer may hold; beyond, appends answer `unavailable` (default 64 MiB) */
  readonly maxBufferedBytes?: number
}

/** The op log decorator's control: where it serves from, its re-sync, and what waits in its outage buffer. */
export interface OperationLogControl extends PortControl {
  /** ops accepted during the outage and not yet in the primary */
  readonly buffered: number
  /** the fallback log serving now (made on first use during an outage); null when serving from the primary */
  readonly fallbackLog: OperationLog | null
}

/**
 * The op log with a memory fallback. During an outage ops are appended to a
 * fresh memory log (a new epoch: members get `reset`) and kept, in the order
 * they were accepted, in the outage buffer. `resync` appends the buffer to the
 * primary in that order, idempotently by op id (an op whose timed-out append
 * did land is not appended twice), and only then switches back.
 *
 * The fallback cannot tell which projects the primary has: an append with
 * `create: false` is taken as any other there (and creates the project's
 * log in the primary at re-sync), rather than refused for a project that
 * does exist.
 */
export class FailoverOperationLog implements OperationLog {
  readonly #switch: PortSwitch
  readonly #primary: OperationLog
  readonly #makeFallback: () => OperationLog
  readonly #maxBuffered: number
  readonly #maxBufferedBytes: number
  /** the size of each buffered op, and their sum */
  #bufferSizes: number[] = []
  #bufferBytes = 0
  #fallback: OperationLog | null = null
  #buffer: NewOp[] = []
  /** while `resync` appends the buffer's last batch: appends wait for it, then go where the log serves from */
  #gate: Promise<void> | null = null
  /** appends sent to the primary and not settled yet */
  readonly #onPrimary = new Set<Promise<AppendResult | LogMissing>>()
  /** resolves when #onPrimary empties: one promise for all the appends that wait for it */
  #primaryDrained: { promise: Promise<void>, resolve: () => void } | null = null

  /** The decorated log and its control (what only the failover module uses). */
  static create (options: FailoverOperationLogOptions): { port: FailoverOperationLog, control: OperationLogControl } {
    const log = new FailoverOperationLog(options)
    const control: OperationLogControl = {
      get serving () { return log.#switch.serving },
      get buffered () { return log.#buffer.length },
      get fallbackLog () { return log.#switch.serving === 'fallback' ? log.#log() : null },
      resync: async () => { await log.#resync() }
    }
    return { port: log, control }
  }

  private constructor (options: FailoverOperationLogOptions) {
    this.#primary = options.primary
    this.#makeFallback = options.fallback
    this.#maxBuffered = options.maxBuffered ?? 100_000
    this.#maxBufferedBytes = options.maxBufferedBytes ?? 64 * 1024 * 1024
    this.#switch = new PortSwitch(options, () => {
      this.#fallback = this.#makeFallback()
      this.#buffer = []
      this.#bufferSizes = []
      this.#bufferBytes = 0
    }, () => {
      void this.#fallback?.close()
      this.#fallback = null
    })
  }

  get scope (): 'cluster' | 'instance' {
    return this.#switch.serving === 'primary' ? this.#primary.scope : 'instance'
  }

  /**
   * The primary's, in both modes: an op accepted on the fallback is published
   * by the primary's append when `resync` moves it there, in seq order. The
   * caller must not publish it itself: another instance already back on the
   * primary would relay it into the shared log ahead of the ops still in
   * this instance's outage buffer, out of its sender's order.
   */
  get publishesOps (): boolean {
    return this.#primary.publishesOps
  }

  #log (): OperationLog {
    this.#fallback ??= this.#makeFallback()
    return this.#fallback
  }

  append (op: NewOp): Promise<AppendResult>
  append (op: NewOp | NewOpIfLogExists): Promise<AppendResult | LogMissing>
  async append (op: NewOp | NewOpIfLogExists): Promise<AppendResult | LogMissing> {
    for (;;) {
      if (this.#gate !== null) await this.#gate
      // Fell back while earlier appends are still in flight on the primary:
      // they reach the buffer first (failed, timed out, or taken by both), so
      // ops keep their order across the switch.
      else if (this.#switch.serving === 'fallback' && this.#onPrimary.size > 0) await this.#drainedPrimary()
      else break
    }
    if (this.#switch.serving === 'fallback') return await this.#append(op)
    const appending = this.#append(op)
    this.#onPrimary.add(appending)
    try {
      return await appending
    } finally {
      this.#onPrimary.delete(appending)
      if (this.#onPrimary.size === 0 && this.#primaryDrained !== null) {
        this.#primaryDrained.resolve()
        this.#primaryDrained = null
      }
    }
  }

  /** Resolves once no append is in flight on the primary. */
  async #drainedPrimary (): Promise<void> {
    if (this.#primaryDrained === null) {
      let resolve!: () => void
      const promise = new Promise<void>((res) => { resolve = res })
      this.#primaryDrained = { promise, resolve }
    }
    await this.#primaryDrained.promise
  }

  async #append (op: NewOp | NewOpIfLogExists): Promise<AppendResult | LogMissing> {
    const taken = await this.#switch.call<{ by: 'primary' | 'fallback', result: AppendResult | LogMissing }>('op log append',
      async () => ({ by: 'primary', result: await this.#primary.append(op) }),
      async () => ({ by: 'fallback', result: await this.#appendFallback(op) }))
    // The primary took it, but the port fell back while the call was in flight:
    // the instance now serves the fallback's epoch, so the fallback takes the op
    // too (its seq is then one of the epoch the members are in; at resync the
    // primary answers it as a duplicate by id).
    if (taken.by === 'primary' && !taken.result.duplicate && this.#switch.serving === 'fallback') return await this.#appendFallback(op)
    return taken.result
  }

  async #appendFallback (input: NewOp | NewOpIfLogExists): Promise<AppendResult> {
    const size = Buffer.byteLength(storedOpJson(input))
    if (this.#buffer.length >= this.#maxBuffered || this.#bufferBytes + size > this.#maxBufferedBytes) {
      throw new UnavailableError('the op log is away and the outage buffer is full; try again')
    }
    const op: NewOp = input.create === false ? { ...input, create: true } : input
    // Its place in the buffer is taken now, in the order of the fallback's
    // seqs, so a re-sync that is finishing cannot miss it. A duplicate stays
    // too: the primary answers it as one by id.
    this.#buffer.push(op)
    this.#bufferSizes.push(size)
    this.#bufferBytes += size
    return await this.#log().append(op)
  }

  async read (project: string, since: number, limit: number, epoch?: string, maxBytes?: number): Promise<ReadResult> {
    return await this.#switch.call('op log read', async () => await this.#primary.read(project, since, limit, epoch, maxBytes),
      async () => await this.#log().read(project, since, limit, epoch, maxBytes))
  }

  async head (project: string): Promise<LogPosition> {
    return await this.#switch.call('op log head', async () => await this.#primary.head(project),
      async () => await this.#log().head(project))
  }

  async open (project: string): Promise<OpenedLog> {
    return await this.#switch.call('op log open', async () => await this.#primary.open(project),
      async () => await this.#log().open(project))
  }

  async touch (projects: readonly string[]): Promise<void> {
    await this.#switch.call('op log touch', async () => { await this.#primary.touch(projects) },
      async () => { await this.#log().touch(projects) })
  }

  async #resync (): Promise<void> {
    if (this.#switch.serving === 'primary') return
    // Ops accepted while this runs join the buffer and are appended too. One
    // round trip per op would not outpace live traffic: appends are started
    // in batches, in buffer order (calls made in order are applied in order;
    // the Redis log sends the ops of one project started in one turn as one
    // script call, so a batch of one project is one call). The first goes
    // alone, so a primary that lost its script cache (a restart) has it back
    // before a batch is in flight. With ops arriving
    // more often than once per round trip the buffer would never be seen
    // empty: for the last batch, new appends wait, and go to the primary
    // after it (or to the fallback, behind what is left, when it fails).
    for (let size = 1; ; size = RESYNC_BATCH) {
      const last = this.#buffer.length <= size
      let open = (): void => {}
      if (last) this.#gate = new Promise<void>((resolve) => { open = resolve })
      try {
        const batch = this.#buffer.slice(0, size)
        await withTimeout(Promise.all(batch.map(async (op) => await this.#primary.append(op))), this.#switch.options.timeoutMs, 'op log re-sync')
        this.#buffer.splice(0, batch.length)
        for (const size of this.#bufferSizes.splice(0, batch.length)) this.#bufferBytes -= size
        if (last) {
          this.#switch.backToPrimary()
          return
        }
      } finally {
        if (last) {
          this.#gate = null
          open()
        }
      }
    }
  }

  async close (): Promise<void> {
    await this.#fallback?.close()
    this.#fallback = null
  }
}
