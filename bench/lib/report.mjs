// Markdown tables of results, and the JSON files in bench/results/.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { resultsDir } from './proc.mjs'

export function table (headers, rows) {
  const lines = [`| ${headers.join(' | ')} |`, `| ${headers.map(() => '---').join(' | ')} |`]
  for (const row of rows) lines.push(`| ${row.map((c) => (c === null || c === undefined ? '—' : String(c))).join(' | ')} |`)
  return lines.join('\n')
}

/** A number with thousands separators and `digits` decimals. */
export function num (x, digits = 0) {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—'
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** a / b as "1.23×", or — when either is missing. */
export function ratio (a, b, digits = 2) {
  if (a === null || b === null || a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '—'
  return `${(a / b).toFixed(digits)}×`
}

export function ms (x) {
  if (x === null || x === undefined) return '—'
  return x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0)
}

export function writeResult (name, data) {
  mkdirSync(resultsDir, { recursive: true })
  const file = join(resultsDir, `${name}.json`)
  writeFileSync(file, JSON.stringify(data, null, 2) + '\n')
  return file
}

export function stamp () {
  return new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)
}

/** The fan-out table: one row per run, ratios against `baseline` (a run, or a function giving each row's). */
export function fanoutTable (runs, baseline) {
  const baseOf = typeof baseline === 'function' ? baseline : () => baseline
  const headers = ['run', 'clients', 'rate/member', 'delivered/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'ack p99 ms', 'lost', 'dup', 'order', 'server CPU s', 'µs CPU/delivery', '+ redis', 'RSS MiB/inst', 'gen CPU %', 'p99 vs base', 'CPU/deliv vs base']
  const rows = runs.map((r) => [r, baseOf(r)]).map(([r, base]) => [
    r.rep === undefined || r.rep === 1 ? r.label : `${r.label} #${r.rep}`,
    num(r.connected),
    num(r.rate, r.rate % 1 === 0 ? 0 : 1),
    num(r.deliveredPerSecond),
    ms(r.latency.p50),
    ms(r.latency.p99),
    ms(r.latency.p999),
    ms(r.latency.max),
    ms(r.ack.p99),
    `${num(r.lost)} (${r.lostPercent.toFixed(3)} %)`,
    num(r.duplicates),
    r.orderViolations === null ? 'n/a' : num(r.orderViolations),
    num(r.server.cpuSeconds, 2),
    num(r.server.usPerDelivery, 2),
    r.server.usPerDeliveryWithRedis === null ? '—' : num(r.server.usPerDeliveryWithRedis, 2),
    r.server.instances.map((i) => num(i.rssMiB, 0)).join(' / '),
    num(r.generator.cpuPercent, 0),
    base === undefined ? '—' : ratio(r.latency.p99, base.latency.p99),
    base === undefined ? '—' : ratio(r.server.usPerDelivery, base.server.usPerDelivery)
  ])
  return table(headers, rows)
}

/**
 * A text plot of a series over time, one line per `windowS` window: the
 * window's min and max as a bar (░ from 0 to the min, █ from the min to the
 * max) scaled to the series' largest value, then the figures. `tagOf(points)`
 * labels a window (its phases, say). Points are { t (s), v }; null values
 * are skipped (a window without any shows no bar).
 */
export function windowPlot (points, { windowS = 5, width = 40, format = (v) => String(v), tagOf = () => '' } = {}) {
  const valid = points.filter((p) => p.v !== null && p.v !== undefined && Number.isFinite(p.v))
  const top = Math.max(0, ...valid.map((p) => p.v))
  const end = Math.max(0, ...points.map((p) => p.t))
  const lines = []
  for (let from = 0; from <= end; from += windowS) {
    const inside = points.filter((p) => p.t >= from && p.t < from + windowS)
    if (inside.length === 0) continue
    const values = inside.filter((p) => valid.includes(p)).map((p) => p.v)
    const when = `${from}–${from + windowS} s`.padStart(10)
    const tag = tagOf(inside).padEnd(5)
    if (values.length === 0) { lines.push(`${when} ${tag} ▕${' '.repeat(width)}▏ —`); continue }
    const lo = Math.min(...values)
    const hi = Math.max(...values)
    const a = top === 0 ? 0 : Math.min(width - 1, Math.round((lo / top) * width))
    const b = top === 0 ? 0 : Math.max(a + 1, Math.round((hi / top) * width))
    const bar = '░'.repeat(a) + '█'.repeat(Math.min(width, b) - a)
    lines.push(`${when} ${tag} ▕${bar.padEnd(width)}▏ ${format(lo)}–${format(hi)}`)
  }
  return lines.join('\n')
}
