// Preloaded into a server under test (node --import): the event loop's delay
// over a window the bench chooses. The first SIGUSR2 starts the window (the
// histogram is reset), the second ends it and writes the figures, as JSON,
// to the file FLOW_BENCH_LOOP_PROBE + '-' + FLOW_INSTANCE_ID + '.json'. Delays in ms: how late a timer of
// `resolution` ms fired, that is how long the loop was held by something else.
import { writeFileSync } from 'node:fs'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'

const file = process.env.FLOW_BENCH_LOOP_PROBE
if (file !== undefined && file !== '') {
  const h = monitorEventLoopDelay({ resolution: 2 })
  h.enable()
  let started = null
  process.on('SIGUSR2', () => {
    if (started === null) {
      h.reset()
      started = { at: performance.now(), elu: performance.eventLoopUtilization() }
      return
    }
    const pct = (p) => Math.round(h.percentile(p) / 1e4) / 100
    writeFileSync(`${file}-${process.env.FLOW_INSTANCE_ID ?? process.pid}.json`, JSON.stringify({
      seconds: Math.round(performance.now() - started.at) / 1000,
      samples: h.count,
      p50: pct(50),
      p90: pct(90),
      p99: pct(99),
      p999: pct(99.9),
      max: Math.round(h.max / 1e4) / 100,
      utilization: Math.round(performance.eventLoopUtilization(started.elu).utilization * 1000) / 1000
    }))
    started = null
  })
}
