#!/usr/bin/env node
// A hostile tenant beside normal members. N members (P projects × M, R ops/s
// each, the fan-out's generator and checks) on a fresh cluster, measured
// twice in one sitting: quiet, and with one hostile client (its own worker
// thread, lib/hostile-worker.mjs) that, for the whole measured phase:
//   - reads history from the start (GET .../ops?since=0&limit=1000) of its
//     big projects, and of projects that do not exist;
//   - POSTs ops to a new project each time;
//   - writes ~63 KB ops to ~20 projects over one WebSocket;
//   - joins its big projects with since: 0 on fresh connections, and loops
//     sync since: 0 on a few more.
// Then it stops and the cluster is sampled ~10 s more, the members idle but
// connected (resets and closes still counted). Every second: each
// instance's RSS (/proc) and /health status, Redis' used_memory and key
// count (INFO, DBSIZE). Reports the members' latency and checks, the
// memory over time (min/max per 5 s window), /health, what the hostile
// client got, and the issue's targets as ratios of the two runs.
//
//   node bench/hostile.mjs                          # 2 instances, one Redis, all flags on; 1,000 members
//   node bench/hostile.mjs --memory --instances 1   # memory mode
//   node bench/hostile.mjs --repeat 3               # quiet/hostile pairs, interleaved (ABBA)
//   node bench/hostile.mjs --projects 5 --members 10 --seconds 5 --after 5 --hostile-writes 20 --no-wait
//
// Flow needs `npm run build` first.
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from './lib/args.mjs'
import { Generator } from './lib/generator.mjs'
import { HOSTILE_CLIENT_DEFAULTS, HostileClient } from './lib/hostile-client.mjs'
import { cpuSeconds, loadavg, machineCpu, machineInfo, resultsDir, sleep, waitForQuiet } from './lib/proc.mjs'
import { ms, num, ratio, stamp, table, windowPlot, writeResult } from './lib/report.mjs'
import { Sampler } from './lib/sampler.mjs'
import { round, startCluster, usageBetween } from './lib/servers.mjs'
import { memberSpecs } from './fanout.mjs'

const H = HOSTILE_CLIENT_DEFAULTS

export const HOSTILE_DEFAULTS = {
  memory: false,
  instances: 2,
  projects: 50,
  members: 20,
  rate: 2,
  seconds: 30, // the measured phase; the hostile client runs all of it
  warmup: 2,
  after: 10, // seconds sampled after the hostile client stops (members idle, still connected)
  payload: 64,
  ramp: 1000,
  drain: 5000,
  repeat: 1, // quiet/hostile pairs, in ABBA order
  hostileProjects: H.projects,
  hostileBytes: H.opBytes,
  hostileWrites: H.writes,
  hostileInFlight: H.writesInFlight,
  hostileReads: H.reads,
  hostilePosts: H.posts,
  hostilePostBytes: H.postBytes,
  hostileJoins: H.joins,
  hostileSyncers: H.syncers,
  hostileNice: H.nice, // the hostile client's process priority (19: lowest); -1: a worker thread of the generator
  hostileSched: H.sched, // 'idle': its process under SCHED_IDLE (only CPU nobody else wants); 'nice': the nice level only
  p99Ratio: 1.5, // the issue's target: the members' p99 with the hostile client within this much of the quiet run's
  rssFlatPercent: 3, // after the stop, RSS may grow this much (or rssFlatMiB, the larger) and still be flat
  rssFlatMiB: 4,
  redisFlatPercent: 1, // the same for Redis used_memory
  redisFlatMiB: 1,
  cpuProfDir: '', // a directory: the servers run with node --cpu-prof, one folder per run (quiet-1, hostile-1, ...)
  serverEnv: '', // KEY=VALUE,KEY=VALUE for the servers (say FLOW_HISTORY_BYTES=1048576 to reach the bounds in a short run)
  label: ''
}

const MiB = 2 ** 20
const WINDOW_S = 5
const LOOP_PROBE = fileURLToPath(new URL('./lib/loop-probe.mjs', import.meta.url))
let probes = 0

/** Each instance's event-loop delay over the measured phase (bench/lib/loop-probe.mjs), or null where it wrote none. */
function readLoopProbe (base, nodes) {
  return nodes.map((n) => {
    const file = `${base}-${n.id}.json`
    return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : null
  })
}

function parseEnv (s) {
  if (s === '') return {}
  return Object.fromEntries(s.split(',').map((kv) => {
    const i = kv.indexOf('=')
    if (i <= 0) throw new Error(`--server-env wants KEY=VALUE pairs, got ${kv}`)
    return [kv.slice(0, i), kv.slice(i + 1)]
  }))
}

/**
 * The quiet run and the hostile run, `repeat` times, in ABBA order (quiet
 * first in odd pairs, hostile first in even ones) so that drift of the
 * machine falls on both alike. Each run has a fresh cluster.
 */
export async function runHostile (options, log = (m) => process.stderr.write(`${m}\n`)) {
  const o = { ...HOSTILE_DEFAULTS, ...options }
  const redis = !o.memory
  const label = o.label === '' ? `flow${redis ? '' : ' (memory)'} ×${o.instances}` : o.label
  log(`[hostile] ${label}: ${o.projects} projects × ${o.members} members on ${o.instances} instance(s), ${redis ? 'Redis, all flags on' : 'memory only'}, ${o.rate} ops/s per member, ${o.seconds} s measured + ${o.after} s after; ${o.repeat} quiet/hostile pair(s)`)
  const runs = []
  for (let rep = 1; rep <= o.repeat; rep++) {
    const order = rep % 2 === 1 ? [false, true] : [true, false]
    for (const hostile of order) runs.push(await runOnce(o, { label, redis, hostile, rep }, log))
  }
  const result = { kind: 'hostile', label, options: o, runs }
  result.targets = hostileTargets(result)
  return result
}

async function runOnce (o, { label, redis, hostile: withHostile, rep }, log) {
  const name = `${label} ${withHostile ? 'hostile' : 'quiet'}${o.repeat > 1 ? ` #${rep}` : ''}`
  const cpuProfDir = o.cpuProfDir === '' ? undefined : `${o.cpuProfDir}/${withHostile ? 'hostile' : 'quiet'}-${rep}`
  // The instances' event-loop delay over the measured phase: SIGUSR2 starts the window and ends it.
  const probe = `${resultsDir}/loop-${process.pid}-${++probes}`
  const cluster = await startCluster({ target: 'flow', instances: o.instances, redis, name: `flow-hostile${redis ? '' : '-mem'}`, env: { ...parseEnv(o.serverEnv), FLOW_BENCH_LOOP_PROBE: probe }, cpuProfDir, nodeArgs: ['--import', LOOP_PROBE] })
  const signalProbe = () => { for (const n of cluster.nodes) process.kill(n.proc.pid, 'SIGUSR2') }
  const sampler = new Sampler(cluster)
  const generator = new Generator({ driver: 'flow', clients: memberSpecs(cluster.nodes, o.projects, o.members, 'flow'), members: o.members, payloadBytes: o.payload })
  let hostile = null
  try {
    await sampler.start('connect')
    const connect = await generator.connect({ perSecond: o.ramp })
    log(`[hostile] ${name}: ${connect.connected} members connected in ${(connect.ms / 1000).toFixed(1)} s (${connect.failed} failed)`)
    if (connect.connected === 0) throw new Error(`no member could connect: ${JSON.stringify(connect.reasons)}`)
    await sleep(1000)
    if (o.warmup > 0) {
      sampler.mark('warmup')
      await generator.phase({ phase: 0, rate: o.rate, seconds: o.warmup, drainMs: o.drain })
    }
    const before = cluster.sample()
    const gen0 = cpuSeconds(process.pid)
    const m0 = machineCpu()
    const load = loadavg()
    sampler.mark(withHostile ? 'hostile' : 'quiet')
    signalProbe()
    if (withHostile) {
      hostile = new HostileClient({
        ports: cluster.nodes.map((n) => n.port),
        tag: `h${rep}`,
        projects: o.hostileProjects,
        opBytes: o.hostileBytes,
        writes: o.hostileWrites,
        writesInFlight: o.hostileInFlight,
        reads: o.hostileReads,
        posts: o.hostilePosts,
        postBytes: o.hostilePostBytes,
        joins: o.hostileJoins,
        syncers: o.hostileSyncers,
        nice: o.hostileNice < 0 ? null : o.hostileNice,
        sched: o.hostileSched
      })
      await hostile.start()
    }
    const startDelayMs = 300
    const measuring = generator.phase({ phase: 1, rate: o.rate, seconds: o.seconds, drainMs: o.drain, startDelayMs })
    measuring.catch(() => {}) // awaited below; not an unhandled rejection meanwhile
    // The hostile client runs while the members send; the quiet run waits the same.
    await sleep(startDelayMs + o.seconds * 1000)
    signalProbe()
    const hostileResult = hostile === null ? null : await hostile.stop()
    hostile = null
    const stopAt = sampler.now()
    sampler.mark('after')
    const statsAtStop = cluster.stats()
    const measure = await measuring
    const usage = usageBetween(before, cluster.sample())
    const gen1 = cpuSeconds(process.pid)
    const m1 = machineCpu()
    // The rest of the `after` window: nobody sends; resets and closes still count.
    const left = Math.max(1, o.after - (sampler.now() - stopAt))
    const idle = await generator.phase({ phase: 2, rate: 0, seconds: left, drainMs: 1000 })
    const statsAtEnd = await cluster.stats()
    // Reads must not create keys: what the reads of projects that do not exist left behind.
    const ghostKeys = withHostile ? await sampler.countKeys(`*h${rep}-ghost-*`) : null
    const series = await sampler.stop()
    const run = {
      name,
      label,
      hostile: withHostile,
      rep,
      mode: redis ? 'redis' : 'memory',
      instances: o.instances,
      connected: connect.connected,
      rate: o.rate,
      measure,
      after: { seconds: round(series.marks.at(-1).t - stopAt, 1), resets: idle.resets, closed: idle.closed, errors: idle.errors, stray: idle.stray },
      server: { ...usage, cpuPercent: round((100 * usage.serverCpuSeconds) / usage.seconds, 1), loop: readLoopProbe(probe, cluster.nodes) },
      generator: { cpuSeconds: round(gen1 - gen0, 3), cpuPercent: round((100 * (gen1 - gen0)) / usage.seconds, 1), note: withHostile ? 'includes the hostile worker thread' : undefined },
      machine: { loadAtStart: round(load, 2), busySeconds: round(m1.busy - m0.busy, 2), otherCpuSeconds: round(Math.max(0, (m1.busy - m0.busy) - usage.serverCpuSeconds - (usage.redis?.cpuSeconds ?? 0) - (gen1 - gen0)), 2) },
      hostileClient: hostileResult === null ? null : { ...hostileResult, ghostKeys },
      flowAtStop: flowStats(await statsAtStop),
      flowAtEnd: flowStats(statsAtEnd),
      series
    }
    run.memory = memorySummary(run, o)
    run.health = healthSummary(run, cluster.nodes.map((n) => n.id))
    log(`[hostile] ${name}: p99 ${run.measure.latency.p99} ms, lost ${measure.lost}, dup ${measure.duplicates}, order ${measure.orderViolations}, resets ${measure.resets}+${idle.resets}, RSS peak ${run.memory.rss.map((x) => num(x.peak / MiB, 0)).join('/')} MiB${redis ? `, Redis peak ${num((run.memory.redisUsed?.peak ?? NaN) / MiB, 1)} MiB` : ''}, degraded samples ${run.health.reduce((s, h) => s + h.degraded, 0)}, server ${num(usage.serverCpuSeconds, 2)} CPU-s, loop delay p99/p99.9/max ${run.server.loop.map((l) => l === null ? '—' : `${l.p99}/${l.p999}/${l.max}`).join(', ')} ms`)
    return run
  } finally {
    await hostile?.stop().catch(() => {})
    await generator.close()
    await sampler.stop().catch(() => {})
    await cluster.stop()
  }
}

/** The parts of /ws/stats the report reads. */
function flowStats (stats) {
  if (stats === null) return null
  return stats.map((x) => x?.instanceId === undefined
    ? { unavailable: x?.statusCode ?? null }
    : { id: x.instanceId, fallbacks: x.fallbacks, recoveries: x.recoveries, degradedMs: x.degradedMs, slowConsumersClosed: x.slowConsumersClosed, ops: x.ops, rateLimited: x.frames?.rateLimited, budgets: x.budgets, history: x.history, projects: x.projects, connections: x.connections, memory: x.memory, errors: x.errors })
}

/** Values of one series over the run: { t, v }. */
const pointsOf = (samples, pick) => samples.map((s) => ({ t: s.t, v: pick(s) }))

/**
 * One series summed up: before (the last sample ahead of the measured phase),
 * its peak from then on, at the stop, at the end, and its growth after the
 * stop: the largest value of the last 5 s minus the largest of the first 5 s
 * after it (flat when within the allowance).
 */
function seriesSummary (points, { measureAt, stopAt, endAt }, allowance) {
  const valid = points.filter((p) => p.v !== null && Number.isFinite(p.v))
  const ahead = valid.filter((p) => p.t < measureAt)
  const from = valid.filter((p) => p.t >= measureAt)
  const after = valid.filter((p) => p.t >= stopAt)
  if (from.length === 0 || after.length === 0) return null
  const w = Math.min(WINDOW_S, (endAt - stopAt) / 2)
  const first = after.filter((p) => p.t < stopAt + w)
  const last = after.filter((p) => p.t >= endAt - w)
  const firstMax = Math.max(...(first.length > 0 ? first : after.slice(0, 1)).map((p) => p.v))
  const lastMax = Math.max(...(last.length > 0 ? last : after.slice(-1)).map((p) => p.v))
  const growth = lastMax - firstMax
  const allowed = Math.max(firstMax * allowance.percent / 100, allowance.bytes)
  return {
    before: (ahead.at(-1) ?? from[0]).v,
    peak: Math.max(...from.map((p) => p.v)),
    atStop: after[0].v,
    end: after.at(-1).v,
    afterGrowth: growth,
    allowed,
    flat: growth <= allowed
  }
}

function memorySummary (run, o) {
  const { samples, marks } = run.series
  const at = (phase) => marks.find((m) => m.phase === phase)?.t
  const when = { measureAt: at(run.hostile ? 'hostile' : 'quiet'), stopAt: at('after'), endAt: at('end') }
  const rssAllowance = { percent: o.rssFlatPercent, bytes: o.rssFlatMiB * MiB }
  const redisAllowance = { percent: o.redisFlatPercent, bytes: o.redisFlatMiB * MiB }
  const hasRedis = samples.some((s) => s.redisUsed !== null)
  return {
    rss: samples[0].rss.map((_, i) => seriesSummary(pointsOf(samples, (s) => s.rss[i]), when, rssAllowance)),
    redisUsed: hasRedis ? seriesSummary(pointsOf(samples, (s) => s.redisUsed), when, redisAllowance) : null,
    redisKeys: hasRedis ? seriesSummary(pointsOf(samples, (s) => s.redisKeys), when, { percent: 0, bytes: 0 }) : null,
    redisRss: hasRedis ? seriesSummary(pointsOf(samples, (s) => s.redisRss), when, rssAllowance) : null
  }
}

const HEALTH_CHARS = { ok: '.', degraded: 'D', 503: '5', timeout: 't', down: 'x' }

/** Per instance: how many samples said what, from the measured phase on; and a timeline, one character a second. */
function healthSummary (run, ids) {
  const { samples, marks } = run.series
  const measureAt = marks.find((m) => m.phase === (run.hostile ? 'hostile' : 'quiet'))?.t ?? 0
  return ids.map((id, i) => {
    const counts = {}
    let firstDegradedAt = null
    for (const s of samples) {
      if (s.t < measureAt) continue
      const h = s.health[i]
      counts[h] = (counts[h] ?? 0) + 1
      if (h === 'degraded' && firstDegradedAt === null) firstDegradedAt = round(s.t - measureAt, 1)
    }
    const timeline = samples.map((s) => HEALTH_CHARS[s.health[i]] ?? '?').join('')
    const seen = Object.values(counts).reduce((a, b) => a + b, 0)
    return { id, samples: seen, ok: counts.ok ?? 0, degraded: counts.degraded ?? 0, unavailable: counts['503'] ?? 0, noAnswer: seen - (counts.ok ?? 0) - (counts.degraded ?? 0) - (counts['503'] ?? 0), counts, firstDegradedAt, timeline }
  })
}

// ---- the report -------------------------------------------------------------

function median (xs) {
  const v = xs.filter((x) => x !== null && x !== undefined && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return null
  const mid = Math.floor(v.length / 2)
  return v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}

/** The issue's targets, as [name, { ok, detail }] (null: not measured). Ratios of the hostile to the quiet runs of this sitting. */
export function hostileTargets (result) {
  const o = result.options
  const quiet = result.runs.filter((r) => !r.hostile)
  const hostile = result.runs.filter((r) => r.hostile)
  if (quiet.length === 0 || hostile.length === 0) return []
  const check = (ok, ...facts) => ({ ok, detail: facts.join(', ') })
  const q99 = median(quiet.map((r) => r.measure.latency.p99))
  const h99 = median(hostile.map((r) => r.measure.latency.p99))
  const pairs = hostile.map((h) => ratio(h.measure.latency.p99, quiet.find((q) => q.rep === h.rep)?.measure.latency.p99)).join(', ')
  const resets = hostile.reduce((s, r) => s + r.measure.resets + r.after.resets, 0)
  const quietResets = quiet.reduce((s, r) => s + r.measure.resets + r.after.resets, 0)
  const closed = hostile.reduce((s, r) => s + r.measure.closed + r.after.closed, 0)
  const rss = hostile.flatMap((r) => r.memory.rss.map((x, i) => ({ run: r, i, x })))
  const rssFlat = rss.every(({ x }) => x !== null && x.flat)
  const redis = hostile.filter((r) => r.memory.redisUsed !== null)
  const degraded = hostile.reduce((s, r) => s + r.health.reduce((a, h) => a + h.degraded + h.unavailable + h.noAnswer, 0), 0)
  const mib = (b) => `${b < 0 ? '−' : '+'}${num(Math.abs(b) / MiB, 1)} MiB`
  const rows = [
    [`${result.label}: members' p99 with the hostile client ≤ ${o.p99Ratio}× the quiet run's`, q99 !== null && h99 !== null
      ? check(h99 <= o.p99Ratio * q99, `${ms(h99)} ms vs ${ms(q99)} ms (${ratio(h99, q99)}${hostile.length > 1 ? `, medians; pairs ${pairs}` : ''})`)
      : check(false, 'no latency measured')],
    [`${result.label}: zero resets with the hostile client`, check(resets === 0, `${resets} reset(s) (measured phase and after; the quiet run: ${quietResets}), ${closed} member(s) closed`)],
    [`${result.label}: RSS flat after the hostile client stops`, check(rssFlat,
      rss.map(({ run, i, x }) => x === null ? 'no samples' : `${run.memory.rss.length > 1 ? `inst ${i + 1}` : 'RSS'}${hostile.length > 1 ? ` #${run.rep}` : ''} ${mib(x.afterGrowth)} (allowed ${mib(x.allowed)})`).join(', '))]
  ]
  if (redis.length > 0) {
    rows.push([`${result.label}: Redis memory flat after the hostile client stops`, check(redis.every((r) => r.memory.redisUsed.flat),
      redis.map((r) => `used_memory ${mib(r.memory.redisUsed.afterGrowth)} (allowed ${mib(r.memory.redisUsed.allowed)}; peak ${num(r.memory.redisUsed.peak / MiB, 1)} MiB, ${num(r.memory.redisKeys?.peak ?? null)} keys)`).join(', '))])
  }
  rows.push([`${result.label}: /health ok throughout (not an issue target)`, check(degraded === 0, `${degraded} sample(s) degraded, 503 or unanswered from the measured phase on`)])
  return rows
}

const mibs = (b) => (b === null || b === undefined ? '—' : num(b / MiB, b < 10 * MiB ? 1 : 0))
const path = (x) => (x === null ? '—' : `${mibs(x.before)} → ${mibs(x.peak)} → ${mibs(x.atStop)} → ${mibs(x.end)}`)
const signed = (b) => (b === null || b === undefined ? '—' : `${b < 0 ? '−' : '+'}${num(Math.abs(b) / MiB, 1)}`)

export function membersTable (runs) {
  const quietOf = (r) => runs.find((q) => !q.hostile && q.rep === r.rep)
  return table(['run', 'members', 'rate/member', 'delivered/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'ack p99 ms', 'lost', 'dup', 'order', 'FIFO', 'resets (phase + after)', 'closed', 'errors', 'server CPU %', 'gen lag p99 ms', 'other load CPU s', 'p99 vs quiet'],
    runs.map((r) => {
      const m = r.measure
      const q = quietOf(r)
      return [r.name, num(r.connected), num(r.rate, r.rate % 1 === 0 ? 0 : 1), num(m.deliveredPerSecond), ms(m.latency.p50), ms(m.latency.p99), ms(m.latency.p999), ms(m.latency.max), ms(m.ack.p99),
        `${num(m.lost)} (${m.lostPercent.toFixed(3)} %)`, num(m.duplicates), num(m.orderViolations), num(m.fifoViolations), `${m.resets} + ${r.after.resets}`, num(m.closed + r.after.closed),
        Object.keys(m.errors).length === 0 ? '—' : JSON.stringify(m.errors), num(r.server.cpuPercent, 0), num(m.lag.p99, 1), num(r.machine.otherCpuSeconds, 1), r.hostile && q !== undefined ? ratio(m.latency.p99, q.measure.latency.p99) : '—']
    }))
}

export function memoryTable (runs) {
  return table(['run', 'RSS MiB per instance: before → peak → at stop → end', 'RSS growth after stop MiB', 'Redis used_memory MiB: before → peak → at stop → end', 'growth after stop MiB', 'Redis keys: before → peak → end', 'redis-server RSS peak MiB', 'memory op log MiB at the end'],
    runs.map((r) => {
      const mem = r.memory
      const history = r.flowAtEnd?.map((x) => x?.history === null || x?.history === undefined ? '—' : `${mibs(x.history.bytes)} (${num(x.history.projects)} projects)`).join(' / ') ?? '—'
      return [r.name, mem.rss.map(path).join(' / '), mem.rss.map((x) => `${signed(x?.afterGrowth)}${x?.flat === false ? ' **not flat**' : ''}`).join(' / '),
        path(mem.redisUsed), mem.redisUsed === null ? '—' : `${signed(mem.redisUsed.afterGrowth)}${mem.redisUsed.flat ? '' : ' **not flat**'}`,
        mem.redisKeys === null ? '—' : `${num(mem.redisKeys.before)} → ${num(mem.redisKeys.peak)} → ${num(mem.redisKeys.end)}`,
        mem.redisRss === null ? '—' : mibs(mem.redisRss.peak), history]
    }))
}

export function healthTable (runs) {
  const rows = []
  for (const r of runs) {
    r.health.forEach((h, i) => {
      const s = r.flowAtEnd?.[i]
      rows.push([r.name, h.id, num(h.samples), num(h.ok), h.degraded > 0 ? `**${h.degraded}**` : '0', num(h.unavailable), num(h.noAnswer), h.firstDegradedAt ?? '—',
        s?.fallbacks ?? '—', s?.recoveries ?? '—', s?.degradedMs ?? '—', s?.slowConsumersClosed ?? '—', s?.ops?.shed ?? '—', s?.rateLimited ?? '—', s?.budgets?.writesPaused ?? '—', s?.budgets?.readsDeferred ?? '—'])
    })
  }
  return table(['run', 'instance', 'samples', 'ok', 'degraded', '503', 'no answer', 'first degraded (s in)', 'fallbacks', 'recoveries', 'degraded ms', 'slow consumers closed', 'ops shed', 'frames rate-limited', 'writes paused (identity budget)', 'reads deferred (identity budget)'], rows)
}

/** What the hostile client achieved, one row per lane. */
export function hostileClientTable (run, o) {
  const h = run.hostileClient
  if (h === null) return ''
  const { writer: w, reads: rd, ghostReads: g, posts: p, joins: j, syncs: s } = h.lanes
  const bytes = (b) => `${num(b / MiB, 1)} MiB`
  const codes = (x) => Object.keys(x).length === 0 ? '' : Object.entries(x).map(([k, v]) => `${k}: ${v}`).join(', ')
  const list = (...parts) => parts.filter((x) => x !== '' && x !== null && x !== undefined).join('; ') || '—'
  const per = (b) => `${num(b / MiB / h.seconds, 1)} MiB/s`
  const rows = [
    [`writer: ${o.hostileProjects} projects, ${num(o.hostileBytes)}-byte ops at ${o.hostileWrites}/s`, num(w.attempted), `${num(w.acked)} acked`, num(w.codes.rate_limited ?? 0), list(codes(w.codes), w.skipped > 0 ? `${num(w.skipped)} turns skipped (${o.hostileInFlight} unacked)` : '', codes(w.closes) === '' ? '' : `closed ${codes(w.closes)}`, w.connects > 1 ? `${w.connects} connections` : '', codes(w.errors)), `${bytes(w.bytesSent)} sent (${per(w.bytesSent)})`],
    [`history reads since=0&limit=1000, its projects (${o.hostileReads / 2}/s)`, num(rd.attempted), num(rd.status[200] ?? 0), num(rd.status[429] ?? 0), list(`largest page ${bytes(rd.maxPageBytes)}, ${num(rd.maxPageOps)} ops`, rd.resets > 0 ? `${rd.resets} reset` : '', codes(Object.fromEntries(Object.entries(rd.status).filter(([k]) => k !== '200' && k !== '429'))), rd.skipped > 0 ? `${num(rd.skipped)} skipped` : '', codes(rd.errors)), `${bytes(rd.bytesRead)} (${per(rd.bytesRead)})`],
    [`history reads of projects that do not exist (${o.hostileReads / 2}/s)`, num(g.attempted), num(g.status[200] ?? 0), num(g.status[429] ?? 0), list(h.ghostKeys === null || h.ghostKeys === undefined ? '' : `${num(h.ghostKeys)} Redis keys of those projects at the end`, codes(Object.fromEntries(Object.entries(g.status).filter(([k]) => k !== '200' && k !== '429'))), g.ops > 0 ? `${g.ops} ops read` : '', codes(g.errors)), bytes(g.bytesRead)],
    [`POSTs to new projects (${o.hostilePosts}/s, ${num(o.hostilePostBytes)} B)`, num(p.attempted), `${num((p.status[201] ?? 0) + (p.status[200] ?? 0))} (projects created)`, `${num(p.status[429] ?? 0)}: ${num(p.httpLimited)} HTTP limit, ${num(p.creationCapped)} new-project cap${p.budgetLimited > 0 ? `, ${num(p.budgetLimited)} write budget` : ''}${p.shed > 0 ? `, ${p.shed} shed` : ''}`, list(codes(Object.fromEntries(Object.entries(p.status).filter(([k]) => !['200', '201', '429'].includes(k)))), p.skipped > 0 ? `${num(p.skipped)} skipped` : '', codes(p.errors)), `${bytes(p.bytesSent)} sent`],
    [`joins with since: 0 on fresh connections (${o.hostileJoins}/s)`, num(j.attempted), `${num(j.joined)} joined, ${num(j.replayed)} replays read to the head`, codes(j.refused) === '' ? '0' : `upgrades refused ${codes(j.refused)}`, list(j.replayed > 0 ? `replay mean ${ms(j.replayMsSum / j.replayed)} ms, max ${ms(j.replayMsMax)} ms` : '', j.resets > 0 ? `${j.resets} resets` : '', codes(j.codes), codes(j.closes) === '' ? '' : `closed ${codes(j.closes)}`, j.skipped > 0 ? `${num(j.skipped)} skipped` : '', codes(j.errors)), `${bytes(j.bytesRead)} (${per(j.bytesRead)})`],
    [`${o.hostileSyncers} connections looping sync since: 0`, `${num(s.syncs)} syncs`, num(s.syncs), codes(s.refused) === '' ? num(s.codes.rate_limited ?? 0) : `upgrades refused ${codes(s.refused)}`, list(s.syncs > 0 ? `sync mean ${ms(s.syncMsSum / s.syncs)} ms, max ${ms(s.syncMsMax)} ms` : '', s.resets > 0 ? `${s.resets} resets` : '', codes(s.codes), codes(s.closes) === '' ? '' : `closed ${codes(s.closes)}`, s.connects > o.hostileSyncers ? `${s.connects} connections` : '', codes(s.errors)), `${bytes(s.bytesRead)} (${per(s.bytesRead)})`]
  ]
  const total = w.bytesRead + rd.bytesRead + g.bytesRead + p.bytesRead + j.bytesRead + s.bytesRead
  return `${table(['lane', 'requests', 'answered', '429 / refused', 'detail', 'bytes'], rows)}\n\nIn all: ${bytes(total)} read in ${num(h.seconds, 1)} s (${per(total)}); the hostile worker thread's event loop was busy ${num(h.eventLoopUtilization * 100, 0)} % of the time.`
}

const PHASE_CODES = { connect: 'c', warmup: 'w', quiet: 'q', hostile: 'H', after: 'a' }

/** RSS of each instance and Redis used_memory over the run: min/max per 5 s window, and /health one character a second. */
export function runPlots (run) {
  const { samples } = run.series
  const tagOf = (inside) => [...new Set(inside.map((s) => PHASE_CODES[s.phase] ?? '?'))].join('/')
  const mk = (pick) => samples.map((s) => ({ t: s.t, v: pick(s), phase: s.phase }))
  const fmt = (v) => num(v / MiB, v < 10 * MiB ? 1 : 0)
  const blocks = run.health.map((h, i) => `${h.id} RSS, MiB\n${windowPlot(mk((s) => s.rss[i]), { windowS: WINDOW_S, format: fmt, tagOf })}`)
  if (samples.some((s) => s.redisUsed !== null)) {
    blocks.push(`Redis used_memory, MiB\n${windowPlot(mk((s) => s.redisUsed), { windowS: WINDOW_S, format: (v) => num(v / MiB, 1), tagOf })}`)
    blocks.push(`Redis keys\n${windowPlot(mk((s) => s.redisKeys), { windowS: WINDOW_S, format: (v) => num(v), tagOf })}`)
  }
  const pad = Math.max(5, ...run.health.map((h) => h.id.length))
  const health = run.health.map((h) => `${h.id.padEnd(pad)} ${h.timeline}`).join('\n')
  const phases = samples.map((s) => PHASE_CODES[s.phase] ?? '?').join('')
  blocks.push(`/health, one character a second (. ok, D degraded, 5 503, t timeout, x down)\n${'phase'.padEnd(pad)} ${phases}\n${health}`)
  return `\`\`\`\n${run.name}: c connect, w warm-up, q quiet / H hostile (measured), a after the stop; ░ 0 to min, █ min to max per ${WINDOW_S} s\n\n${blocks.join('\n\n')}\n\`\`\``
}

/** The markdown of one result: members, memory, /health, the hostile client, plots (targets on request). */
export function hostileMarkdown (result, { targets = true, plots = 'first' } = {}) {
  const o = result.options
  const out = []
  const runs = result.runs
  out.push(`#### ${result.label}: ${num(o.projects * o.members)} members (${o.projects} × ${o.members}) at ${o.rate} ops/s, ${o.seconds} s measured, ${o.after} s after the stop${o.serverEnv === '' ? '' : `, servers with ${o.serverEnv}`}`)
  out.push('', 'Normal members, measured phase (the hostile client runs through all of it):', '', membersTable(runs))
  out.push('', 'Memory (sampled every second; "after stop" compares the largest value of the last 5 s with that of the first 5 s after the hostile client stopped):', '', memoryTable(runs))
  out.push('', '/health from the measured phase on, and /ws/stats at the end:', '', healthTable(runs))
  for (const r of runs.filter((x) => x.hostile)) out.push('', `What the hostile client achieved (${r.name}):`, '', hostileClientTable(r, o))
  const plotted = plots === 'all' ? runs : plots === 'first' ? runs.filter((r) => r.rep === 1) : []
  for (const r of plotted) out.push('', runPlots(r))
  if (targets && result.targets.length > 0) {
    out.push('', table(['target', 'met', 'numbers'], result.targets.map(([name, c]) => [name, c.ok ? 'yes' : '**no**', c.detail])))
  }
  return out.join('\n')
}

async function main () {
  const o = parseArgs({ ...HOSTILE_DEFAULTS, noWait: false })
  const gate = o.noWait ? { quiet: null, load: loadavg() } : await waitForQuiet()
  const result = await runHostile(o)
  result.quiet = gate
  result.machine = machineInfo()
  const file = writeResult(`hostile-${o.memory ? 'memory-' : ''}${stamp()}`, result)
  process.stdout.write(`\n${hostileMarkdown(result, { plots: 'all' })}\n\nresults: ${file}\n`)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => { process.stderr.write(`${err.stack}\n`); process.exit(1) })
}
