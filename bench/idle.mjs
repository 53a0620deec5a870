#!/usr/bin/env node
// Idle connections at scale (issue 17: 50,000 on one instance, RSS per
// connection ≤ 6 KiB, connect rate reported): bench/connections.mjs at
// several sizes and two variants, side by side in one sitting, so a reader
// sees whether the cost per connection is flat.
//
//   node bench/idle.mjs                                    # memory mode: 10,000 and 50,000, connected-only and joined
//   node bench/idle.mjs --redis                            # all three Redis flags on
//   node bench/idle.mjs --targets flow,socketio            # Socket.IO beside Flow, same sizes
//   node bench/idle.mjs --sizes 2000,5000,10000,19000 --repeat 2
//   node bench/idle.mjs --sizes 1000,3000 --no-wait        # a smoke test (run.mjs --short)
//
// Variants: `connected` (the socket is open, nothing else: for Socket.IO, the
// main namespace is connected) and `joined` (each client joined a project,
// rooms of --members). Every run has a fresh server; with --repeat the order
// is reversed every other repetition, so a drift of the machine falls on all.
// Clients are spread over loopback source addresses, 10,000 per address
// (bench/connections.mjs: the ephemeral port range, FLOW_MAX_CONNECTIONS_PER_IP
// set explicitly to its default of 10,000).
//
// Memory is read twice: as the issue defines it, RSS after the clients
// connected and settled minus RSS of the idle server before, without forcing
// a collection (young-generation garbage and heap growth included: a fixed
// cost that a small N divides by less), and both after a full GC through the
// server's inspector (what the connections hold). Between two sizes, the
// marginal cost, (Δ at N2 − Δ at N1) / (N2 − N1), is the cost of one more
// connection with the fixed costs taken out. When the open-files limit caps
// the largest size below what was asked, the table says so and projects the
// figure at the asked size from the two largest sizes measured.
import { pathToFileURL } from 'node:url'
import { parseArgs } from './lib/args.mjs'
import { ensureFileLimit, loadavg, machineInfo, waitForQuiet } from './lib/proc.mjs'
import { num, stamp, table, writeResult } from './lib/report.mjs'
import { round } from './lib/servers.mjs'
import { filesNeeded, runConnections } from './connections.mjs'

export const IDLE_DEFAULTS = {
  sizes: [10_000, 50_000],
  variants: 'connected,joined',
  targets: 'flow',
  redis: false,
  members: 20,
  ramp: 5000,
  concurrency: 100,
  settle: 3,
  idle: 5,
  repeat: 1,
  perAddress: 10_000,
  maxPerIp: 10_000,
  /** the issue's target: RSS per connection at the largest size, KiB */
  targetKiB: 6,
  maxWait: 600,
  noWait: false
}

const list = (s) => String(s).split(',').map((x) => x.trim()).filter((x) => x !== '')

/** The runs of a sitting, in order: every target × variant × size, reversed every other repetition. */
export function idlePlan (o) {
  const one = []
  for (const target of list(o.targets)) {
    for (const variant of list(o.variants)) {
      if (variant !== 'connected' && variant !== 'joined') throw new Error(`unknown variant ${variant}: connected or joined`)
      for (const clients of o.sizes) one.push({ target, variant, clients })
    }
  }
  const runs = []
  for (let rep = 1; rep <= o.repeat; rep++) {
    for (const r of rep % 2 === 1 ? one : [...one].reverse()) runs.push({ ...r, rep })
  }
  return runs
}

export async function runIdle (options, log = (m) => process.stderr.write(`${m}\n`)) {
  const o = { ...IDLE_DEFAULTS, ...options }
  const runs = []
  const failures = []
  for (const p of idlePlan(o)) {
    log(`[idle] ${p.target} ${p.variant} ${num(p.clients)}${o.repeat > 1 ? ` (repetition ${p.rep})` : ''}`)
    let r
    // A run whose server could not start (its port taken meanwhile by another process) is tried once more.
    for (let attempt = 1; r === undefined; attempt++) {
      try {
        r = await runConnections({
          target: p.target,
          memory: !o.redis,
          clients: p.clients,
          members: o.members,
          ramp: o.ramp,
          concurrency: o.concurrency,
          settle: o.settle,
          idle: o.idle,
          connectedOnly: p.variant === 'connected',
          perAddress: o.perAddress,
          maxPerIp: o.maxPerIp,
          gc: true
        }, log)
      } catch (err) {
        // One run failing does not end the sitting: it is reported.
        log(`[idle] ${p.target} ${p.variant} ${num(p.clients)} failed (attempt ${attempt}): ${err.message}`)
        failures.push({ ...p, attempt, error: String(err.message ?? err) })
        if (attempt >= 2) break
      }
    }
    if (r === undefined) continue
    runs.push({ ...r, target: p.target, rep: p.rep, requested: p.clients })
  }
  return { kind: 'idle', options: o, runs, failures, summary: summarizeIdle(runs, o) }
}

const median = (xs) => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return null
  const m = Math.floor(v.length / 2)
  return v.length % 2 === 1 ? v[m] : (v[m - 1] + v[m]) / 2
}

/** Per target, variant and size: medians over repetitions, marginal costs between sizes, a projection. */
export function summarizeIdle (runs, o) {
  const groups = new Map()
  for (const r of runs) {
    const key = `${r.target}|${r.variant}`
    if (!groups.has(key)) groups.set(key, new Map())
    const bySize = groups.get(key)
    if (!bySize.has(r.requested)) bySize.set(r.requested, [])
    bySize.get(r.requested).push(r)
  }
  const rows = []
  for (const [key, bySize] of groups) {
    const [target, variant] = key.split('|')
    const sizes = [...bySize.keys()].sort((a, b) => a - b)
    let prev = null
    const points = []
    for (const requested of sizes) {
      const rs = bySize.get(requested)
      const n = median(rs.map((r) => r.connect.connected))
      const delta = median(rs.map((r) => (r.rss.afterMiB - r.rss.beforeMiB) * 1024))
      const deltaGc = median(rs.map((r) => (r.rss.afterGcMiB - r.rss.beforeGcMiB) * 1024))
      const heapGc = median(rs.map((r) => r.heap === null ? NaN : (r.heap.afterMiB - r.heap.beforeMiB) * 1024))
      const point = {
        target,
        variant,
        label: rs[0].label,
        requested,
        connected: n,
        failed: Math.max(...rs.map((r) => r.connect.failed)),
        addresses: rs[0].sourceAddresses.length,
        repetitions: rs.length,
        connectPerSecond: median(rs.map((r) => r.connectedPerSecond)),
        connectCpuSeconds: median(rs.map((r) => r.connectCpu.instances[0].cpuSeconds)),
        rssBeforeMiB: median(rs.map((r) => r.rss.beforeMiB)),
        rssAfterMiB: median(rs.map((r) => r.rss.afterMiB)),
        rssPerConnectionKiB: median(rs.map((r) => r.rss.perConnectionKiB)),
        rssGcPerConnectionKiB: median(rs.map((r) => r.rss.afterGcPerConnectionKiB)),
        heapPerConnectionKiB: median(rs.map((r) => r.heap?.perConnectionKiB)),
        heapNoGcPerConnectionKiB: median(rs.map((r) => r.heap?.noGcPerConnectionKiB)),
        idleCpuPercent: median(rs.map((r) => r.idle.instances[0].cpuPercent)),
        marginalRssKiB: null,
        marginalRssGcKiB: null,
        marginalHeapKiB: null,
        delta,
        deltaGc,
        heapGc
      }
      if (prev !== null && n > prev.connected) {
        point.marginalRssKiB = round((delta - prev.delta) / (n - prev.connected), 2)
        point.marginalRssGcKiB = round((deltaGc - prev.deltaGc) / (n - prev.connected), 2)
        point.marginalHeapKiB = Number.isFinite(heapGc) && Number.isFinite(prev.heapGc) ? round((heapGc - prev.heapGc) / (n - prev.connected), 2) : null
      }
      points.push(point)
      prev = point
    }
    const base = points[0]
    for (const p of points) {
      p.rssVsSmallest = base.rssPerConnectionKiB > 0 ? round(p.rssPerConnectionKiB / base.rssPerConnectionKiB, 2) : null
      p.rssGcVsSmallest = base.rssGcPerConnectionKiB > 0 ? round(p.rssGcPerConnectionKiB / base.rssGcPerConnectionKiB, 2) : null
      p.connectVsSmallest = base.connectPerSecond > 0 ? round(p.connectPerSecond / base.connectPerSecond, 2) : null
    }
    // The largest size asked for, when the machine capped it: projected from the two largest measured.
    const last = points[points.length - 1]
    if (last.connected < last.requested && last.marginalRssKiB !== null) {
      const more = last.requested - last.connected
      last.projection = {
        clients: last.requested,
        rssPerConnectionKiB: round((last.delta + last.marginalRssKiB * more) / last.requested, 2),
        rssGcPerConnectionKiB: round((last.deltaGc + last.marginalRssGcKiB * more) / last.requested, 2)
      }
    }
    rows.push(...points)
  }
  return rows
}

export function idleTable (summary) {
  return table(
    ['server', 'variant', 'clients asked', 'connected', 'failed', 'source addresses', 'connect/s', 'connect CPU s', 'RSS before → after MiB', 'RSS/conn KiB', 'RSS/conn after GC KiB', 'heap/conn after GC KiB', 'marginal RSS/conn KiB', 'marginal after GC KiB', 'RSS/conn vs smallest', 'connect/s vs smallest', 'idle CPU %'],
    summary.map((p) => [
      p.label, p.variant, num(p.requested), num(p.connected), num(p.failed), p.addresses, num(p.connectPerSecond), num(p.connectCpuSeconds, 1),
      `${num(p.rssBeforeMiB, 1)} → ${num(p.rssAfterMiB, 1)}`, num(p.rssPerConnectionKiB, 2), num(p.rssGcPerConnectionKiB, 2), num(p.heapPerConnectionKiB, 2),
      num(p.marginalRssKiB, 2), num(p.marginalRssGcKiB, 2), p.rssVsSmallest === null ? '—' : `${p.rssVsSmallest.toFixed(2)}×`, p.connectVsSmallest === null ? '—' : `${p.connectVsSmallest.toFixed(2)}×`, num(p.idleCpuPercent, 1)
    ])
  )
}

/**
 * The issue's target at the largest size of each Flow variant: measured when reached, else projected (and
 * said). Not judged below `minClients` (a smoke test's few thousand: fixed costs dominate RSS per connection).
 */
export function idleTargets (summary, o, minClients = 10_000) {
  const out = []
  for (const variant of ['connected', 'joined']) {
    const pts = summary.filter((p) => p.target === 'flow' && p.variant === variant)
    if (pts.length === 0) continue
    const last = pts[pts.length - 1]
    if (last.requested < minClients) continue
    const reached = last.connected >= last.requested
    const kib = reached ? last.rssPerConnectionKiB : last.projection?.rssPerConnectionKiB
    const name = `${num(last.requested)} idle connections (${variant}) on one instance at ≤ ${o.targetKiB} KiB RSS each`
    const detail = reached
      ? `${num(last.connected)} connected at ${num(last.connectPerSecond)}/s, ${num(kib, 2)} KiB RSS each (${num(last.rssGcPerConnectionKiB, 2)} after a GC)`
      : `only ${num(last.connected)} could connect (the open-files limit); projected at ${num(last.requested)}: ${num(kib, 2)} KiB (${num(last.projection?.rssGcPerConnectionKiB, 2)} after a GC), from a marginal ${num(last.marginalRssKiB, 2)} KiB per connection`
    out.push({ name, ok: reached && kib !== null && kib <= o.targetKiB, projected: !reached, detail })
  }
  return out
}

export function idleMarkdown (result) {
  const o = result.options
  const t = idleTargets(result.summary, o)
  const lines = [idleTable(result.summary)]
  if ((result.failures ?? []).length > 0) lines.push('', ...result.failures.map((f) => `- failed (attempt ${f.attempt ?? 1}): ${f.target} ${f.variant} ${num(f.clients)}: ${f.error}`))
  if (t.length > 0) {
    lines.push('', table(['target', 'met', 'numbers'], t.map((x) => [x.name, x.ok ? 'yes' : x.projected ? '**not measured**' : '**no**', x.detail])))
  }
  return lines.join('\n')
}

async function main () {
  const o = parseArgs(IDLE_DEFAULTS)
  ensureFileLimit(filesNeeded(Math.max(...o.sizes)))
  const gate = o.noWait ? { quiet: null, load: loadavg() } : await waitForQuiet({ maxWaitMs: o.maxWait * 1000 })
  const result = await runIdle(o)
  result.quiet = gate
  result.machine = machineInfo()
  const file = writeResult(`idle-${o.redis ? 'redis' : 'memory'}-${stamp()}`, result)
  process.stdout.write(`\n${idleMarkdown(result)}\n\nresults: ${file}\n`)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => { process.stderr.write(`${err.stack}\n`); process.exit(1) })
}
