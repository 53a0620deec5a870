#!/usr/bin/env node
// Runs the benchmark scenarios one after another, writes every result to
// bench/results/run-<stamp>.json and prints markdown tables, with ratios to
// Socket.IO from the same run and the issue's targets checked.
//
//   npm run bench                            # = npm run build && node bench/run.mjs --short
//   node bench/run.mjs                       # full length (about 10 minutes)
//   node bench/run.mjs --short --only fanout-flow,fanout-socketio
//   node bench/run.mjs --profile             # also a CPU profile of Flow under the fan-out load
//   node bench/run.mjs --only hostile-flow,hostile-flow-memory --repeat 3   # the hostile tenant, quiet/hostile pairs
//   node bench/run.mjs --only snapshot-flow-memory,snapshot-flow            # joiner time to live: replay vs snapshot + tail
//   node bench/run.mjs --only jitter         # connections dropped every ~15 s, Flow and Socket.IO (the issue's 2,000 clients, 120 s)
//   node bench/run.mjs --only rolling        # each instance SIGTERMed and restarted in turn behind scripts/cluster.mjs (5,000 clients)
//   node bench/run.mjs --only idle-flow-memory   # 10,000 and 50,000 idle connections on one instance, connected-only and joined
//
// Before each scenario it waits for a quiet machine (1-minute load below 1,
// or cores at least 80 % idle over a short sample: see waitForQuiet).
import { pathToFileURL } from 'node:url'
import { parseArgs } from './lib/args.mjs'
import { ensureFileLimit, machineInfo, waitForQuiet } from './lib/proc.mjs'
import { fanoutTable, ms, num, ratio, stamp, table, writeResult } from './lib/report.mjs'
import { CONNECTIONS_DEFAULTS, connectionsTable, filesNeeded, runConnections } from './connections.mjs'
import { runFanout } from './fanout.mjs'
import { hostileMarkdown, hostileTargets, runHostile } from './hostile.mjs'
import { jitterMarkdown, jitterTargets, runJitter } from './jitter.mjs'
import { rollingMarkdown, rollingTargets, runRolling } from './rolling.mjs'
import { httpTable, runHttp } from './http.mjs'
import { profileTables, runProfile } from './profile.mjs'
import { runSnapshot, snapshotTable } from './snapshot.mjs'
import { memoryBudgetMarkdown, runMemoryBudget } from './memory-budget.mjs'
import { IDLE_DEFAULTS, idleMarkdown, idleTargets, runIdle } from './idle.mjs'

const OPTIONS = {
  short: false,
  only: '', // comma-separated scenario names
  rate: 2, // ops/s per member in the fixed-rate fan-out: 1,000 clients x 19 receivers x 2 = 38,000 deliveries/s
  steps: [], // saturation rates (ops/s per member); default by length
  profile: false,
  repeat: 1, // fixed-rate fan-out scenarios run this many times, interleaved; tables add medians
  maxWait: 600, // seconds to wait for a quiet machine before each scenario
  noWait: false
}

function plan (o) {
  const short = o.short
  const fan = { projects: 50, members: 20, seconds: short ? 4 : 10, warmup: short ? 1 : 2, rate: o.rate }
  const steps = o.steps.length > 0 ? o.steps : (short ? [2, 4, 6, 8, 12] : [2, 3, 4, 5, 6, 8, 10, 12, 16])
  const sat = { projects: 50, members: 20, seconds: short ? 3 : 6, warmup: 1, rates: steps, saturate: true, drain: short ? 3000 : 5000 }
  // One hostile tenant beside the members, and the same run without it (pairs interleaved with --repeat).
  const hostile = short
    ? { projects: 10, members: 20, rate: o.rate, seconds: 6, warmup: 1, after: 5, repeat: o.repeat, hostileWrites: 50, hostileReads: 6, hostilePosts: 150, hostileJoins: 1, hostileSyncers: 2 }
    : { rate: o.rate, repeat: o.repeat }
  const snap = short ? { ops: 5000, every: 1000, repeat: 3 } : { ops: 25_000, every: 1000, repeat: 11 }
  const scenarios = [
    { name: 'fanout-flow', group: 'fanout', run: () => runFanout({ ...fan, target: 'flow', instances: 2 }) },
    { name: 'fanout-socketio', group: 'fanout', run: () => runFanout({ ...fan, target: 'socketio', instances: 2 }) },
    { name: 'fanout-relay', group: 'fanout', run: () => runFanout({ ...fan, target: 'relay', instances: 2 }) },
    { name: 'fanout-flow-memory', group: 'fanout', run: () => runFanout({ ...fan, target: 'flow', instances: 1, memory: true }) },
    // The original claim: 1,000 active users on one instance (Redis flags on), p99 < 50 ms, RSS < 512 MB.
    { name: 'fanout-flow-single', group: 'fanout', run: () => runFanout({ ...fan, target: 'flow', instances: 1, label: 'flow ×1 (Redis)' }) },
    { name: 'saturation-flow', group: 'saturation', run: () => runFanout({ ...sat, target: 'flow', instances: 2 }) },
    { name: 'saturation-socketio', group: 'saturation', run: () => runFanout({ ...sat, target: 'socketio', instances: 2 }) },
    // redis-server frozen (SIGSTOP) in the middle of the phase: Flow falls back to memory and recovers.
    { name: 'outage-flow', group: 'outage', run: () => runFanout({ ...fan, target: 'flow', instances: 2, seconds: short ? 6 : 10, redisStall: short ? 1500 : 3000 }) },
    { name: 'outage-socketio', group: 'outage', run: () => runFanout({ ...fan, target: 'socketio', instances: 2, seconds: short ? 6 : 10, redisStall: short ? 1500 : 3000 }) },
    { name: 'hostile-flow', group: 'hostile', run: () => runHostile({ ...hostile, instances: 2 }) },
    { name: 'hostile-flow-memory', group: 'hostile', run: () => runHostile({ ...hostile, instances: 1, memory: true }) },
    // A memory-mode instance with its history budget (FLOW_MEMORY_HISTORY_BYTES) full: RSS against the 512 MB floor.
    { name: 'memory-budget', group: 'hostile', run: () => runMemoryBudget(short ? { budgets: '32', members: 50 } : {}) },
    { name: 'connections-flow', group: 'connections', run: () => runConnections({ target: 'flow', settle: short ? 2 : 3, idle: short ? 3 : 10 }) },
    { name: 'http-flow', group: 'http', run: () => runHttp({ seconds: short ? 3 : 10 }) },
    // A new joiner on a long project: full replay (since 0) against snapshot + tail, interleaved.
    { name: 'snapshot-flow-memory', group: 'snapshot', run: () => runSnapshot({ ...snap }) },
    { name: 'snapshot-flow', group: 'snapshot', run: () => runSnapshot({ ...snap, redis: true }) },
    // Connections dropped every ~15 s, offline 2 s, resumed: Flow then Socket.IO with connection state recovery.
    // Short: 200 clients for 15 s; full (only with --only, several minutes): the issue's 2,000 clients for 120 s.
    { name: 'jitter', group: 'churn', explicit: !short, run: () => runJitter(short ? { projects: 10, seconds: 15, warmup: 1, drain: 20 } : {}) },
    // Each instance SIGTERMed, drained and restarted in turn behind scripts/cluster.mjs (Flow only).
    // Short: 500 clients for 30 s; full (only with --only): 5,000 clients for 60 s.
    { name: 'rolling', group: 'churn', explicit: !short, run: () => runRolling(short ? { clients: 500, seconds: 30, warmup: 1, before: 5, gap: 5, drain: 30 } : {}) },
    // Idle connections at scale (issue 17), connected-only and joined, two sizes side by side, memory mode.
    // Short: 1,000 and 3,000; full (only with --only): 10,000 and 50,000 (capped by the open-files limit).
    { name: 'idle-flow-memory', group: 'idle', explicit: !short, run: () => runIdle(short ? { sizes: [1000, 3000], settle: 2, idle: 2 } : {}) }
  ]
  if (!short) {
    scenarios.push(
      { name: 'fanout-socketio-memory', group: 'fanout', run: () => runFanout({ ...fan, target: 'socketio', instances: 1, memory: true }) },
      { name: 'fanout-relay-memory', group: 'fanout', run: () => runFanout({ ...fan, target: 'relay', instances: 1, memory: true }) },
      { name: 'saturation-relay', group: 'saturation', run: () => runFanout({ ...sat, target: 'relay', instances: 2 }) },
      { name: 'connections-flow-memory', group: 'connections', run: () => runConnections({ target: 'flow', memory: true }) },
      { name: 'connections-socketio', group: 'connections', run: () => runConnections({ target: 'socketio' }) },
      { name: 'http-flow-memory', group: 'http', run: () => runHttp({ memory: true }) }
    )
  }
  // Repetitions of the fixed-rate fan-out, round robin over the targets, so
  // that noise from the machine falls on every target alike.
  const fixed = scenarios.filter((sc) => sc.group === 'fanout')
  const rest = scenarios.filter((sc) => sc.group !== 'fanout')
  const repeated = []
  for (let k = 1; k <= o.repeat; k++) for (const sc of fixed) repeated.push(k === 1 ? sc : { ...sc, name: `${sc.name}#${k}` })
  scenarios.splice(0, scenarios.length, ...repeated, ...rest)
  if (o.profile) scenarios.push({ name: 'profile-flow', group: 'profile', run: () => runProfile({ ...fan, target: 'flow', instances: 2, seconds: short ? 5 : 10, top: 25 }) })
  const only = o.only === '' ? null : new Set(o.only.split(','))
  // `explicit` scenarios (the long churn runs) run only when --only names them.
  return only === null ? scenarios.filter((sc) => sc.explicit !== true) : scenarios.filter((sc) => only.has(sc.name.replace(/#\d+$/, '')))
}

const FANOUTS = ['fanout-flow', 'fanout-socketio', 'fanout-relay', 'fanout-flow-memory', 'fanout-flow-single', 'fanout-socketio-memory', 'fanout-relay-memory']

/** Every repetition's phase of a fixed-rate fan-out scenario. */
function repetitions (r, name) {
  return Object.keys(r).filter((k) => k === name || k.startsWith(`${name}#`))
    .filter((k) => r[k].phases[0] !== undefined)
    .map((k) => ({ ...r[k].phases[0], rep: k.includes('#') ? Number(k.split('#')[1]) : 1 }))
}

function median (xs) {
  const v = xs.filter((x) => x !== null && x !== undefined && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return null
  const mid = Math.floor(v.length / 2)
  return v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}

/** The median of each key figure over the repetitions (a phase-shaped object). */
function medianPhase (phases) {
  if (phases.length === 0) return undefined
  const pick = (f) => median(phases.map(f))
  return {
    label: phases[0].label,
    repetitions: phases.length,
    deliveredPerSecond: pick((p) => p.deliveredPerSecond),
    lost: Math.max(...phases.map((p) => p.lost)),
    duplicates: Math.max(...phases.map((p) => p.duplicates)),
    orderViolations: phases[0].orderViolations === null ? null : Math.max(...phases.map((p) => p.orderViolations)),
    latency: { p50: pick((p) => p.latency.p50), p99: pick((p) => p.latency.p99), p999: pick((p) => p.latency.p999), max: pick((p) => p.latency.max) },
    ack: { p99: pick((p) => p.ack.p99) },
    lag: { p99: pick((p) => p.lag.p99) },
    server: { cpuSeconds: pick((p) => p.server.cpuSeconds), usPerDelivery: pick((p) => p.server.usPerDelivery), usPerDeliveryWithRedis: pick((p) => p.server.usPerDeliveryWithRedis), rssMiB: pick((p) => Math.max(...p.server.instances.map((i) => i.rssMiB))) },
    generator: { cpuPercent: pick((p) => p.generator.cpuPercent) },
    otherCpuSeconds: pick((p) => p.machine.otherCpuSeconds)
  }
}

function medianTable (meds, base) {
  return table(['run', 'reps', 'delivered/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'ack p99 ms', 'worst lost', 'worst dup', 'µs CPU/delivery', '+ redis', 'max RSS MiB', 'gen lag p99 ms', 'other load CPU s', 'p99 vs Socket.IO', 'CPU/deliv vs Socket.IO'],
    meds.map((m) => [m.label, m.repetitions, num(m.deliveredPerSecond), ms(m.latency.p50), ms(m.latency.p99), ms(m.latency.p999), ms(m.latency.max), ms(m.ack.p99), num(m.lost), num(m.duplicates), num(m.server.usPerDelivery, 2), m.server.usPerDeliveryWithRedis === null ? '—' : num(m.server.usPerDeliveryWithRedis, 2), num(m.server.rssMiB, 0), num(m.lag.p99, 1), num(m.otherCpuSeconds, 1), base === undefined ? '—' : ratio(m.latency.p99, base.latency.p99), base === undefined ? '—' : ratio(m.server.usPerDelivery, base.server.usPerDelivery)]))
}

const held = (rate) => (rate === null ? 'no step' : `${rate} ops/s per member`)

/** The issue's targets, checked on this run's results (medians over repetitions; null: not measured). */
function targets (r) {
  const flow = medianPhase(repetitions(r, 'fanout-flow'))
  const sio = medianPhase(repetitions(r, 'fanout-socketio'))
  const relay = medianPhase(repetitions(r, 'fanout-relay'))
  const mem = medianPhase(repetitions(r, 'fanout-flow-memory'))
  const satFlow = r['saturation-flow']?.saturation
  const satSio = r['saturation-socketio']?.saturation
  const conn = r['connections-flow']
  const single = medianPhase(repetitions(r, 'fanout-flow-single'))
  const check = (ok, ...facts) => ({ ok, detail: facts.join(', ') })
  return [
    ['CPU per delivery ≤ the bare relay\'s', flow && relay
      ? check(flow.server.usPerDelivery <= relay.server.usPerDelivery, `Flow ${flow.server.usPerDelivery} µs vs relay ${relay.server.usPerDelivery} µs (${ratio(flow.server.usPerDelivery, relay.server.usPerDelivery)})`)
      : null],
    ['p99 ≤ half of Socket.IO\'s', flow && sio
      ? check(flow.latency.p99 <= sio.latency.p99 / 2, `Flow ${flow.latency.p99} ms vs Socket.IO ${sio.latency.p99} ms (${ratio(flow.latency.p99, sio.latency.p99)})`)
      : null],
    ['saturation ≥ 2× Socket.IO\'s', satFlow && satSio
      ? check((satFlow.highestRate ?? 0) >= 2 * (satSio.highestRate ?? Infinity), `highest rate held: Flow ${held(satFlow.highestRate)}, Socket.IO ${held(satSio.highestRate)} (${ratio(satFlow.highestRate, satSio.highestRate)})`)
      : null],
    ['10,000 idle connections at ≤ 8 KB RSS each', conn
      ? check(conn.connect.connected >= 10_000 && conn.rss.perConnectionKiB * 1024 <= 8000, `${num(conn.connect.connected)} connected, ${conn.rss.perConnectionKiB} KiB (${num(conn.rss.perConnectionKiB * 1.024, 2)} KB) RSS each`)
      : null],
    ['1,000 active users on one instance: p99 < 50 ms, RSS < 512 MB', single
      ? check(single.latency.p99 < 50 && single.server.rssMiB * 1.048576 < 512, `p99 ${single.latency.p99} ms at ${num(single.deliveredPerSecond)} deliveries/s, RSS ${num(single.server.rssMiB, 0)} MiB`)
      : null],
    ['memory-only at least as fast as Redis per delivery', flow && mem
      ? check(mem.server.usPerDelivery <= flow.server.usPerDelivery, `memory ×1 ${mem.server.usPerDelivery} µs vs Redis ×2 ${flow.server.usPerDelivery} µs per delivery (${ratio(mem.server.usPerDelivery, flow.server.usPerDelivery)}); Redis incl. redis-server ${flow.server.usPerDeliveryWithRedis} µs`)
      : null],
    // The hostile tenant ("Bounded by bytes and time"): ratios of its hostile and quiet runs.
    ...['hostile-flow', 'hostile-flow-memory'].filter((k) => r[k]).flatMap((k) => hostileTargets(r[k])),
    // Churn (issue 17): connections dropped and resumed.
    ...(r.jitter ? jitterTargets(r.jitter.runs, r.jitter.options).map((t) => [t.name, { ok: t.ok, detail: t.detail }]) : []),
    ...(r.rolling ? rollingTargets(r.rolling.runs, r.rolling.options).map((t) => [t.name, { ok: t.ok, detail: t.detail }]) : []),
    // Idle connections at scale (issue 17): RSS per connection at the largest size (projected when capped).
    ...(r['idle-flow-memory'] ? idleTargets(r['idle-flow-memory'].summary, r['idle-flow-memory'].options).map((t) => [t.name, { ok: t.ok, detail: t.detail }]) : [])
  ]
}

/** A per-member rate as given (0.75, 1.25): never rounded. */
const rate = (x) => (x === null || x === undefined ? '—' : String(x))

function saturationTable (runs, baseline) {
  const rows = []
  for (const run of runs) {
    for (const p of run.phases) {
      rows.push([run.label, rate(p.rate), num(p.deliveredPerSecond), ms(p.latency.p50), ms(p.latency.p99), ms(p.latency.max), `${num(p.lost)} (${p.lostPercent.toFixed(3)} %)`, num(p.closed), num(p.server.cpuSeconds / p.server.seconds * 100, 0), num(p.server.usPerDelivery, 2), num(p.lag.p99, 1), num(p.generator.cpuPercent, 0), p.held ? 'yes' : '**no**'])
    }
  }
  const steps = table(['run', 'rate/member', 'delivered/s', 'p50 ms', 'p99 ms', 'max ms', 'lost', 'closed', 'server CPU %', 'µs CPU/delivery', 'gen lag p99 ms', 'gen CPU %', 'held'], rows)
  const summary = table(['run', 'highest rate held (ops/s per member)', 'delivered/s at it', 'first rate that failed', 'vs Socket.IO'],
    runs.map((r) => [r.label, rate(r.saturation.highestRate), num(r.saturation.deliveredPerSecond), r.saturation.firstFailed === null ? 'none (all held)' : rate(r.saturation.firstFailed), baseline === undefined ? '—' : ratio(r.saturation.highestRate, baseline.saturation.highestRate)]))
  return { steps, summary }
}

export function markdown (run) {
  const r = run.results
  const out = []
  const m = run.machine
  out.push(`Machine: ${m.nproc} cores, ${m.cpuModel}, ${m.memGiB} GiB, Node ${m.node}, ${m.redis}; git ${m.git}; ${m.date}; mode ${run.options.short ? 'short' : 'full'}`)
  const fan = FANOUTS.flatMap((k) => repetitions(r, k))
  if (fan.length > 0) {
    const base = medianPhase(repetitions(r, 'fanout-socketio'))
    const meds = FANOUTS.map((k) => medianPhase(repetitions(r, k))).filter((m) => m !== undefined)
    out.push('', '### Fan-out at a fixed rate', '')
    if (run.options.repeat > 1) out.push(`Medians over ${run.options.repeat} interleaved repetitions (worst case for losses and duplicates):`, '', medianTable(meds, base), '', 'Every repetition:', '')
    const sio = repetitions(r, 'fanout-socketio')
    out.push(fanoutTable(fan, (p) => sio.find((q) => q.rep === p.rep)))
    const extra = table(['run', 'sent', 'acked', 'expected', 'delivered', 'duplicates', 'FIFO violations', 'resets', 'errors', 'redis CPU s', 'gen lag p99 ms', 'other load CPU s', 'load at start'],
      fan.map((p) => [p.rep === 1 ? p.label : `${p.label} #${p.rep}`, num(p.sent), num(p.acked), num(p.expected), num(p.delivered), num(p.duplicates), num(p.fifoViolations), num(p.resets ?? 0), JSON.stringify(p.errors), p.server.redis === null ? '—' : num(p.server.redis.cpuSeconds, 2), num(p.lag.p99, 1), num(p.machine.otherCpuSeconds, 2), p.machine.loadAtStart]))
    out.push('', extra)
  }
  const sat = ['saturation-flow', 'saturation-socketio', 'saturation-relay'].filter((k) => r[k]).map((k) => r[k])
  if (sat.length > 0) {
    const t = saturationTable(sat, r['saturation-socketio'])
    out.push('', '### Saturation', '', t.summary, '', t.steps)
  }
  const outages = ['outage-flow', 'outage-socketio'].filter((k) => r[k]?.phases[0]).map((k) => ({ ...r[k].phases[0], stats: r[k].serverStats }))
  if (outages.length > 0) {
    out.push('', `### Redis frozen for ${run.options.short ? 1.5 : 3} s mid-phase`, '', table(['run', 'delivered/s', 'p50 ms', 'p99 ms', 'max ms', 'lost (not delivered live)', 'resets', 'dup', 'order', 'fallbacks', 'degraded ms'],
      outages.map((p) => [p.label, num(p.deliveredPerSecond), ms(p.latency.p50), ms(p.latency.p99), ms(p.latency.max), `${num(p.lost)} (${p.lostPercent.toFixed(3)} %)`, num(p.resets ?? 0), num(p.duplicates), p.orderViolations === null ? 'n/a' : num(p.orderViolations),
        Array.isArray(p.stats) ? p.stats.map((x) => x?.fallbacks ?? '—').join(' / ') : '—', Array.isArray(p.stats) ? p.stats.map((x) => x?.degradedMs ?? '—').join(' / ') : '—'])))
  }
  const hostile = ['hostile-flow', 'hostile-flow-memory'].filter((k) => r[k]).map((k) => r[k])
  if (hostile.length > 0) {
    out.push('', '### A hostile tenant beside the members (with and without it, same sitting)')
    for (const h of hostile) out.push('', hostileMarkdown(h, { targets: false }))
  }
  if (r['memory-budget']) out.push('', '### Memory mode with its history budget full', '', memoryBudgetMarkdown(r['memory-budget']))
  const conns = ['connections-flow', 'connections-flow-memory', 'connections-socketio'].filter((k) => r[k]).map((k) => r[k])
  if (conns.length > 0) out.push('', '### Idle connections', '', connectionsTable(conns))
  const http = ['http-flow', 'http-flow-memory'].filter((k) => r[k]).map((k) => r[k])
  if (http.length > 0) out.push('', '### HTTP', '', httpTable(http))
  const snaps = ['snapshot-flow-memory', 'snapshot-flow'].filter((k) => r[k]).map((k) => r[k])
  if (snaps.length > 0) {
    const s = snaps[0].options
    out.push('', `### Snapshots: a new joiner on a ${num(s.ops)}-op project (a snapshot every ${num(s.every)} ops), medians of ${s.repeat} interleaved joins`, '', snapshotTable(snaps))
  }
  if (r.jitter) out.push('', '### Jitter: connections dropped and resumed', '', jitterMarkdown({ ...r.jitter, targets: [] }))
  if (r.rolling) out.push('', '### Rolling deploy', '', rollingMarkdown({ ...r.rolling, targets: [] }))
  if (r['idle-flow-memory']) out.push('', '### Idle connections at scale (memory mode, side by side)', '', idleMarkdown(r['idle-flow-memory']).split('\n\n')[0])
  if (r['profile-flow']) {
    const p = r['profile-flow']
    const t = profileTables(p, 25)
    out.push('', `### CPU profile: ${p.label}, measured phase only (${num(p.busyMs)} ms busy)`, '', t.functions, '', t.owners)
  }
  const checks = targets(r).filter(([, c]) => c !== null)
  if (checks.length > 0) {
    out.push('', '### Targets', '', table(['target', 'met', 'numbers'], checks.map(([name, c]) => [name, c.ok ? 'yes' : '**no**', c.detail])))
    if (run.options.short || run.options.repeat < 3) {
      out.push('', 'Latency and saturation from one short repetition on a shared machine are a smoke test: p99 moves 2-3x between runs. Decide targets on `--repeat 3` full-length runs (BENCHMARKS.md).')
    }
  }
  if (run.failures.length > 0) out.push('', '### Failed scenarios', '', ...run.failures.map((f) => `- ${f.name}: ${f.error}`))
  const gates = Object.entries(run.gates).filter(([, g]) => g.quiet === false)
  if (gates.length > 0) out.push('', `Not quiet (ran anyway after waiting): ${gates.map(([k, g]) => `${k} (load ${g.load.toFixed(2)})`).join(', ')}`)
  return out.join('\n')
}

async function main () {
  const o = parseArgs(OPTIONS)
  const scenarios = plan(o)
  if (scenarios.some((s) => s.group === 'connections')) ensureFileLimit(filesNeeded(CONNECTIONS_DEFAULTS.clients))
  if (scenarios.some((s) => s.group === 'idle')) ensureFileLimit(filesNeeded(o.short ? 3000 : Math.max(...IDLE_DEFAULTS.sizes)))
  const run = { kind: 'run', options: o, machine: machineInfo(), gates: {}, results: {}, failures: [] }
  const started = Date.now()
  const file = `run-${o.short ? 'short-' : ''}${stamp()}`
  for (const s of scenarios) {
    run.gates[s.name] = o.noWait ? { quiet: null } : await waitForQuiet({ allowIdleSample: true, maxWaitMs: o.maxWait * 1000 })
    process.stderr.write(`\n[bench] ${s.name} (${Math.round((Date.now() - started) / 1000)} s in)\n`)
    try {
      run.results[s.name] = await s.run()
    } catch (err) {
      process.stderr.write(`[bench] ${s.name} failed: ${err.stack}\n`)
      run.failures.push({ name: s.name, error: String(err.message ?? err) })
    }
    writeResult(file, run)
  }
  run.seconds = Math.round((Date.now() - started) / 1000)
  run.targets = Object.fromEntries(targets(run.results).map(([k, v]) => [k, v]))
  const path = writeResult(file, run)
  process.stdout.write(`\n${markdown(run)}\n\nTotal ${run.seconds} s. Results: ${path}\n`)
  if (run.failures.length > 0) process.exitCode = 1
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => { process.stderr.write(`${err.stack}\n`); process.exit(1) })
}
