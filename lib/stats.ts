/** Upper bounds (ms) of the delivery latency buckets. */
export const LATENCY_BUCKETS_MS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000] as const

/**
 * A fixed-bucket histogram: counts per bucket (cumulative on output), sum and
 * count. Listeners see each observation as it is made: an exporter keeps its
 * own histogram from them (/metrics feeds prom-client's).
 */
export class Histogram {
  readonly bounds: readonly number[]
  readonly counts: number[]
  sum = 0
  count = 0
  readonly #listeners = new Set<(value: number) => void>()

  constructor (bounds: readonly number[]) {
    this.bounds = bounds
    this.counts = new Array<number>(bounds.length).fill(0)
  }

  observe (value: number): void {
    this.sum += value
    this.count++
    for (const listener of this.#listeners) listener(value)
    for (let i = 0; i < this.bounds.length; i++) {
      if (value <= (this.bounds[i] as number)) {
        this.counts[i] = (this.counts[i] as number) + 1
        return
      }
    }
  }

  /**
   * Calls `listener` with every later observation, synchronously, until the
   * returned function is called. A listener must not throw: the observer
   * (the hub, delivering an op) would see it.
   */
  subscribe (listener: (value: number) => void): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }
}

/** Counters the hub and the ports keep; served by /ws/stats and /metrics. */
export class Stats {
  framesIn = 0
  framesOut = 0
  framesRejected = 0
  opsAppended = 0
  opsDuplicate = 0
  /** ops refused because too many were waiting for the log (back-pressure) */
  opsShed = 0
  broadcastsPublished = 0
  broadcastsReceived = 0
  broadcastErrors = 0
  fallbacks = 0
  recoveries = 0
  /** op logs found below what this instance saw in their epoch (Redis lost acked ops) and moved to a new epoch */
  logFences = 0
  connectionsOpened = 0
  connectionsClosed = 0
  slowConsumersClosed = 0
  rateLimited = 0
  /** times a connection was not read for a while: its identity sent past FLOW_IDENTITY_WRITE_BYTES_PER_SECOND */
  writesPaused = 0
  /** times a replay or HTTP read waited or was refused: its identity was past FLOW_IDENTITY_READ_BYTES_PER_SECOND */
  readsDeferred = 0
  errorsSent: Record<string, number> = {}
  framesInByType: Record<string, number> = {}
  /** failed port calls (Redis command errors, timeouts) by port */
  portErrors: Record<string, number> = {}
  /** ms from an op's acceptance (its ts) to its delivery on this instance */
  readonly deliveryLatency = new Histogram(LATENCY_BUCKETS_MS)

  countPortError (port: string): void {
    this.portErrors[port] = (this.portErrors[port] ?? 0) + 1
  }

  countError (code: string): void {
    this.errorsSent[code] = (this.errorsSent[code] ?? 0) + 1
  }

  countFrame (type: string): void {
    this.framesInByType[type] = (this.framesInByType[type] ?? 0) + 1
  }
}
