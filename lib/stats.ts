/** Counters the hub and the ports keep; served by /ws/stats and /metrics. */
export class Stats {
  framesIn = 0
  framesOut = 0
  framesRejected = 0
  opsAppended = 0
  opsDuplicate = 0
  broadcastsPublished = 0
  broadcastsReceived = 0
  broadcastErrors = 0
  fallbacks = 0
  recoveries = 0
  connectionsOpened = 0
  connectionsClosed = 0
  slowConsumersClosed = 0
  rateLimited = 0
  errorsSent: Record<string, number> = {}
  framesInByType: Record<string, number> = {}

  countError (code: string): void {
    this.errorsSent[code] = (this.errorsSent[code] ?? 0) + 1
  }

  countFrame (type: string): void {
    this.framesInByType[type] = (this.framesInByType[type] ?? 0) + 1
  }
}
