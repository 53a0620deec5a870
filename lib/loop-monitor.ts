import { monitorEventLoopDelay, performance, type EventLoopUtilization } from 'node:perf_hooks'

/** Event-loop figures of one sampling window: delays in ms, utilisation 0..1. */
export interface LoopFigures {
  readonly p50: number
  readonly p99: number
  readonly max: number
  readonly utilization: number
}

/**
 * Event-loop delay and utilisation over the last sampling window; zeros
 * until the first window ends. Its timer is unref'd; `close()` stops it.
 */
export class LoopMonitor {
  readonly #histogram = monitorEventLoopDelay({ resolution: 10 })
  #elu: EventLoopUtilization = performance.eventLoopUtilization()
  #last: LoopFigures = { p50: 0, p99: 0, max: 0, utilization: 0 }
  readonly #timer: NodeJS.Timeout

  constructor (windowMs: number) {
    this.#histogram.enable()
    this.#timer = setInterval(() => { this.#sample() }, windowMs)
    this.#timer.unref()
  }

  #sample (): void {
    const h = this.#histogram
    const elu = performance.eventLoopUtilization(this.#elu)
    this.#elu = performance.eventLoopUtilization()
    this.#last = {
      p50: h.percentile(50) / 1e6,
      p99: h.percentile(99) / 1e6,
      max: h.max / 1e6,
      utilization: elu.utilization
    }
    h.reset()
  }

  get current (): LoopFigures {
    return this.#last
  }

  close (): void {
    clearInterval(this.#timer)
    this.#histogram.disable()
  }
}
