#!/usr/bin/env node
// Jitter: clients whose connections keep dropping, as on a mobile network.
// P projects × M members on N instances (Redis flags on), R ops/s per
// client on an open loop; every client's TCP socket is destroyed at a random
// moment every ~`interval` s (the first in [0, interval), then interval ×
// U(0.5, 1.5) apart) and stays offline `offline` s, then reconnects to a
// random instance and resumes: Flow with `join` + `since`/`epoch`, Socket.IO
// 4.8 with connection state recovery (@socket.io/redis-streams-adapter).
// Ops due while offline wait in the client's queue; unacknowledged ones are
// sent again after the comeback (Flow: same id, a retry).
//
//   node bench/jitter.mjs                                  # both targets, 2,000 clients, 120 s
//   node bench/jitter.mjs --targets flow --seconds 20 --projects 10 --no-wait
//
// Reports, per target, in one sitting: delivered %, duplicates, order
// violations (Flow's seq), and the comeback ("replay") latency from the
// reconnect (the first attempt: the network is back) to the first missed op
// and to caught up (every op the other members had put on the wire before the
// reconnect has arrived), p50/p99/max; then the issue's targets.
import { pathToFileURL } from 'node:url'
import { parseArgs } from './lib/args.mjs'
import { ChurnGenerator } from './lib/churn-generator.mjs'
import { cpuSeconds, loadavg, machineCpu, machineInfo, sleep, waitForQuiet } from './lib/proc.mjs'
import { ms, num, ratio, stamp, table, writeResult } from './lib/report.mjs'
import { round, socketUrl, startCluster, usageBetween } from './lib/servers.mjs'

export const JITTER_DEFAULTS = {
  targets: 'flow,socketio',
  instances: 2,
  projects: 100,
  members: 20,
  rate: 2,
  seconds: 120,
  warmup: 3,
  interval: 15, // s between a client's drops (on average)
  offline: 2, // s offline after each drop
  payload: 64,
  ramp: 1000,
  drain: 60, // s at most after the phase for every client to come back and catch up
  recovery: 120_000, // Socket.IO's maxDisconnectionDuration (ms)
  streamMaxLen: 100_000, // Socket.IO's redis stream cap (entries)
  replayP99: 1000, // target: replay p99 (to caught up) at most this many ms
  replayRatio: 0.25 // target: ... and at most this × Socket.IO's
}

export function jitterSpecs (nodes, target, projects, members) {
  const clients = []
  for (let p = 0; p < projects; p++) {
    for (let m = 0; m < members; m++) {
      const index = p * members + m
      // First on instance m mod N (every project on every instance), then on either at each comeback.
      clients.push({ index, project: `jitter-p${p}`, member: m, url: socketUrl(target, nodes[m % nodes.length].port, index), urls: nodes.map((n) => socketUrl(target, n.port, index)) })
    }
  }
  return clients
}

/** One target: a fresh cluster, connect, warm up (no drops), then the measured phase with drops, and the drain. */
export async function runJitterTarget (target, options, log = (m) => process.stderr.write(`${m}\n`)) {
  const o = { ...JITTER_DEFAULTS, ...options }
  const label = `${target} ×${o.instances}`
  log(`[jitter] ${label}: ${o.projects} × ${o.members} clients, ${o.rate} ops/s each, a drop every ~${o.interval} s, ${o.offline} s offline, ${o.seconds} s`)
  const env = target === 'socketio' ? { SOCKETIO_RECOVERY_MS: String(o.recovery), SOCKETIO_STREAM_MAXLEN: String(o.streamMaxLen) } : {}
  const cluster = await startCluster({ target, instances: o.instances, redis: true, name: `jitter-${target}`, env })
  const clients = jitterSpecs(cluster.nodes, target, o.projects, o.members)
  const generator = new ChurnGenerator({ target, clients, members: o.members, payloadBytes: o.payload })
  let result = null
  try {
    const connect = await generator.connect({ perSecond: o.ramp })
    log(`[jitter] connected ${connect.connected}/${clients.length} in ${(connect.ms / 1000).toFixed(1)} s (${connect.failed} failed, ${connect.retried} retries)`)
    if (connect.connected === 0) throw new Error(`no client could connect: ${JSON.stringify(connect.reasons)}`)
    await sleep(1000)
    if (o.warmup > 0) {
      await generator.phase({ phase: 0, rate: o.rate, seconds: o.warmup, drainMs: 5000 })
      log(`[jitter] warm-up done (${o.warmup} s, no drops)`)
    }
    const before = cluster.sample()
    const gen0 = cpuSeconds(process.pid)
    const m0 = machineCpu()
    const load = loadavg()
    const r = await generator.phase({ phase: 1, rate: o.rate, seconds: o.seconds, drops: { intervalMs: o.interval * 1000, offlineMs: o.offline * 1000 }, drainMs: o.drain * 1000 })
    const after = cluster.sample()
    const gen1 = cpuSeconds(process.pid)
    const m1 = machineCpu()
    const usage = usageBetween(before, after)
    const ours = usage.serverCpuSeconds + (usage.redis?.cpuSeconds ?? 0) + (gen1 - gen0)
    result = {
      label,
      target,
      instances: o.instances,
      clients: clients.length,
      connect,
      rate: o.rate,
      ...r,
      orderViolations: target === 'flow' ? r.orderViolations : null,
      server: { ...usage, cpuSeconds: usage.serverCpuSeconds },
      generator: { cpuSeconds: round(gen1 - gen0, 3), cpuPercent: round((100 * (gen1 - gen0)) / usage.seconds, 1) },
      machine: { loadAtStart: round(load, 2), busySeconds: round(m1.busy - m0.busy, 2), otherCpuSeconds: round(Math.max(0, m1.busy - m0.busy - ours), 2) },
      alive: cluster.alive()
    }
    const e = r.episodes
    log(`[jitter] ${label}: delivered ${r.deliveredPercent.toFixed(3)} % (lost ${r.lost}), dup ${r.duplicates}, order ${r.orderViolations}, resets ${r.resets}, ${e.count} comebacks (${e.open} not caught up), caught up p50 ${e.caughtUp.p50} p99 ${e.caughtUp.p99} max ${e.caughtUp.max} ms`)
  } finally {
    await generator.close()
    await cluster.stop()
  }
  return result
}

export async function runJitter (options, log) {
  const o = { ...JITTER_DEFAULTS, ...options }
  const runs = []
  for (const target of o.targets.split(',')) runs.push(await runJitterTarget(target, o, log))
  return { kind: 'jitter', options: o, runs, targets: jitterTargets(runs, o) }
}

/** The issue's targets for the jitter bench: Flow's figures, and its replay p99 as a ratio of Socket.IO's in the same run. */
export function jitterTargets (runs, o = JITTER_DEFAULTS) {
  const flow = runs.find((r) => r?.target === 'flow')
  const sio = runs.find((r) => r?.target === 'socketio')
  if (flow === undefined) return []
  const p99 = flow.episodes.caughtUp.p99
  const out = [
    ['jitter: 100 % delivered', flow.lost === 0 && flow.episodes.open === 0, `${flow.deliveredPercent.toFixed(3)} % (${num(flow.delivered)} of ${num(flow.expected)}; ${num(flow.lost)} lost, ${num(flow.episodes.open)} comeback(s) never caught up)`],
    ['jitter: 0 duplicates', flow.duplicates === 0, `${num(flow.duplicates)} duplicate deliveries (${num(flow.resent)} ops resent after a comeback)`],
    [`jitter: replay p99 (reconnect to caught up) ≤ ${o.replayP99} ms`, p99 !== null && p99 <= o.replayP99, `${ms(p99)} ms over ${num(flow.episodes.caughtUp.n)} comebacks`]
  ]
  if (sio !== undefined) {
    const sp99 = sio.episodes.caughtUp.p99
    out.push([`jitter: replay p99 ≤ ${o.replayRatio}× Socket.IO's`, p99 !== null && sp99 !== null && p99 <= o.replayRatio * sp99, `Flow ${ms(p99)} ms vs Socket.IO ${ms(sp99)} ms (${ratio(p99, sp99)})`])
  }
  return out.map(([name, ok, detail]) => ({ name, ok, detail }))
}

const pct = (x) => (x === null || x === undefined ? '—' : `${x.toFixed(3)} %`)
const pms = (s) => `${ms(s.p50)} / ${ms(s.p99)} / ${ms(s.max)}`

export function jitterMarkdown (res) {
  const o = res.options
  const runs = res.runs.filter((r) => r !== null)
  const sio = runs.find((r) => r.target === 'socketio')
  const lines = [
    `#### Jitter: ${num(o.projects * o.members)} clients (${o.projects} × ${o.members}) on ${o.instances} instances, ${o.rate} ops/s each, a drop every ~${o.interval} s, ${o.offline} s offline, ${o.seconds} s`,
    '',
    table(['run', 'sent', 'delivered', 'lost', 'dup', 'order', 'resets', 'comebacks', 'not caught up', 'resumed / fresh', 'resent', 'reconnect → first missed op p50 / p99 / max ms', 'reconnect → caught up p50 / p99 / max ms', 'lost → caught up p99 ms', 'caught up p99 vs Socket.IO', 'live p99 ms', 'gen lag p99 ms', 'server CPU s', 'other load CPU s'],
      runs.map((r) => {
        const e = r.episodes
        return [r.label, num(r.sent), pct(r.deliveredPercent), num(r.lost), num(r.duplicates), r.orderViolations === null ? 'n/a' : num(r.orderViolations), num(r.resets), num(e.count), num(e.open),
          `${num(e.how.resumed ?? 0)} / ${num(e.how.fresh ?? 0)}`, num(r.resent), pms(e.firstMissed), pms(e.caughtUp), ms(e.outOfSync.p99),
          sio === undefined || r === sio ? '—' : ratio(e.caughtUp.p99, sio.episodes.caughtUp.p99), ms(r.latency.p99), num(r.lag.p99, 1), num(r.server.cpuSeconds, 1), num(r.machine.otherCpuSeconds, 1)]
      })),
    '',
    `Missed ops per comeback (median / p99): ${runs.map((r) => `${r.label} ${num(r.episodes.missedOps.p50)} / ${num(r.episodes.missedOps.p99)}`).join(', ')}. Reconnect → joined p50 / p99: ${runs.map((r) => `${r.label} ${ms(r.episodes.connect.p50)} / ${ms(r.episodes.connect.p99)} ms`).join(', ')}.`
  ]
  if (res.targets.length > 0) lines.push('', table(['target', 'met', 'numbers'], res.targets.map((t) => [t.name, t.ok ? 'yes' : '**no**', t.detail])))
  return lines.join('\n')
}

async function main () {
  const o = parseArgs({ ...JITTER_DEFAULTS, noWait: false, maxWait: 600 })
  const gate = o.noWait ? { quiet: null, load: loadavg() } : await waitForQuiet({ maxWaitMs: o.maxWait * 1000 })
  const res = await runJitter(o)
  res.quiet = gate
  res.machine = machineInfo()
  const file = writeResult(`jitter-${stamp()}`, res)
  process.stdout.write(`\n${jitterMarkdown(res)}\n\nresults: ${file}\n`)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => { process.stderr.write(`${err.stack}\n`); process.exit(1) })
}
