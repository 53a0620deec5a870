#!/usr/bin/env node
// WebSocket fan-out: P projects x M members over N instances of one target,
// each member sending R ops/s on an open-loop schedule; every other member
// of the project receives each op. Reports delivered/s, end-to-end latency
// (send time in the op's data to receipt, one machine clock), ack latency,
// losses, duplicates, order, and the CPU and RSS of every server process.
//
//   node bench/fanout.mjs --target flow --instances 2 --rate 2 --seconds 10
//   node bench/fanout.mjs --target flow --memory --instances 1
//   node bench/fanout.mjs --target socketio --rates 2,4,6,8 --saturate
//   node bench/fanout.mjs --target relay --seconds 5
//   node bench/fanout.mjs --target flow --stall 1500   # instance 1 frozen 1.5 s mid-phase
//   node bench/fanout.mjs --target flow --redis-stall 3000   # redis-server frozen 3 s mid-phase (an outage)
//
// Targets: flow (dist/server.js, all three Redis flags on unless
// --memory), socketio (bench/socketio-server.mjs + @socket.io/redis-adapter),
// relay (bench/relay-server.mjs). Flow needs `npm run build` first.
import { pathToFileURL } from 'node:url'
import { parseArgs } from './lib/args.mjs'
import { Generator } from './lib/generator.mjs'
import { monotonicUs } from './lib/cpuprofile.mjs'
import { cpuSeconds, loadavg, machineCpu, sleep, waitForQuiet } from './lib/proc.mjs'
import { fanoutTable, stamp, writeResult } from './lib/report.mjs'
import { round, socketUrl, startCluster, usageBetween } from './lib/servers.mjs'

export const FANOUT_DEFAULTS = {
  target: 'flow',
  driver: '', // default: the target's own (socketio-client for the official client)
  instances: 2,
  memory: false,
  projects: 50,
  members: 20,
  rate: 2,
  rates: [], // several phases over the same connections (saturation steps)
  saturate: false, // stop at the first rate that fails the limits
  p99Limit: 50,
  lossLimit: 0.1,
  seconds: 10,
  warmup: 2,
  payload: 64,
  ramp: 1000,
  drain: 5000,
  label: '',
  stall: 0, // ms: SIGSTOP the first instance this long in the middle of each phase (a GC pause, a starved CPU)
  redisStall: 0, // ms: SIGSTOP redis-server this long in the middle of each phase (a Redis outage: Flow falls back)
  cpuProf: '' // directory: run the instances with node --cpu-prof
}

/**
 * The generator's clients: `projects` × `members`, member m of a project on
 * instance m mod N, so every project has members on every instance.
 */
export function memberSpecs (nodes, projects, members, driver) {
  const clients = []
  for (let p = 0; p < projects; p++) {
    for (let m = 0; m < members; m++) {
      const index = p * members + m
      const node = nodes[m % nodes.length]
      clients.push({ index, project: `bench-p${p}`, member: m, url: socketUrl(driver, node.port, index) })
    }
  }
  return clients
}

/**
 * Runs the fan-out against a fresh cluster and returns every phase's result.
 * `log` gets progress lines.
 */
export async function runFanout (options, log = (m) => process.stderr.write(`${m}\n`)) {
  const o = { ...FANOUT_DEFAULTS, ...options }
  const redis = !o.memory
  const driver = o.driver === '' ? o.target : o.driver
  const label = o.label === '' ? `${o.target}${driver === o.target ? '' : ` (${driver})`}${redis ? '' : ' (memory)'} ×${o.instances}` : o.label
  const rates = o.rates.length > 0 ? o.rates : [o.rate]
  log(`[fanout] ${label}: ${o.projects} projects × ${o.members} members on ${o.instances} instance(s), ${redis ? 'Redis' : 'memory only'}, rates ${rates.join(', ')} ops/s per member, ${o.seconds} s each`)
  const cluster = await startCluster({
    target: o.target,
    instances: o.instances,
    redis,
    name: `${o.target}${redis ? '' : '-mem'}`,
    cpuProfDir: o.cpuProf === '' ? undefined : o.cpuProf
  })
  const clients = memberSpecs(cluster.nodes, o.projects, o.members, driver)
  const generator = new Generator({ driver, clients, members: o.members, payloadBytes: o.payload })
  const phases = []
  let connect = null
  let serverStats = null
  try {
    connect = await generator.connect({ perSecond: o.ramp })
    log(`[fanout] connected ${connect.connected}/${clients.length} in ${(connect.ms / 1000).toFixed(1)} s (${connect.failed} failed, ${connect.retried} retries)`)
    if (connect.connected === 0) throw new Error(`no client could connect: ${JSON.stringify(connect.reasons)}`)
    await sleep(1000)
    if (o.warmup > 0) {
      await generator.phase({ phase: 0, rate: rates[0], seconds: o.warmup, drainMs: o.drain })
      log(`[fanout] warm-up done (${o.warmup} s)`)
    }
    for (let i = 0; i < rates.length; i++) {
      const rate = rates[i]
      const before = cluster.sample()
      const gen0 = cpuSeconds(process.pid)
      const m0 = machineCpu()
      const load = loadavg()
      const monoStartUs = monotonicUs()
      const stall = o.stall > 0 ? stallProcess(cluster.nodes[0].proc.pid, 300 + o.seconds * 500, o.stall) : null
      const redisStall = o.redisStall > 0 && cluster.redis !== null ? stallProcess(cluster.redis.proc.pid, 300 + o.seconds * 300, o.redisStall) : null
      const r = await generator.phase({ phase: i + 1, rate, seconds: o.seconds, drainMs: o.drain })
      await stall
      await redisStall
      const monoEndUs = monotonicUs()
      const after = cluster.sample()
      const gen1 = cpuSeconds(process.pid)
      const m1 = machineCpu()
      const usage = usageBetween(before, after)
      const ours = usage.serverCpuSeconds + (usage.redis?.cpuSeconds ?? 0) + (gen1 - gen0)
      const result = {
        label,
        target: o.target,
        driver,
        mode: redis ? 'redis' : 'memory',
        instances: o.instances,
        projects: o.projects,
        members: o.members,
        connected: connect.connected,
        rate,
        ...r,
        orderViolations: o.target === 'flow' ? r.orderViolations : null,
        server: {
          ...usage,
          cpuSeconds: usage.serverCpuSeconds,
          usPerDelivery: r.delivered === 0 ? null : round((usage.serverCpuSeconds * 1e6) / r.delivered, 2),
          usPerDeliveryWithRedis: usage.redis === null || r.delivered === 0 ? null : round(((usage.serverCpuSeconds + usage.redis.cpuSeconds) * 1e6) / r.delivered, 2)
        },
        generator: { cpuSeconds: round(gen1 - gen0, 3), cpuPercent: round((100 * (gen1 - gen0)) / usage.seconds, 1) },
        window: { monoStartUs, monoEndUs },
        machine: { loadAtStart: round(load, 2), busySeconds: round(m1.busy - m0.busy, 2), otherCpuSeconds: round(Math.max(0, m1.busy - m0.busy - ours), 2) }
      }
      const stats = await cluster.stats()
      if (stats !== null) {
        // Flow's own view at the end of the phase (counters are since start).
        result.flow = stats.map((x) => x?.instanceId === undefined
          ? { unavailable: x?.statusCode ?? null }
          : { id: x.instanceId, fallbacks: x.fallbacks, recoveries: x.recoveries, degradedMs: x.degradedMs, circuit: x.circuit, slowConsumersClosed: x.slowConsumersClosed, errors: x.errors, broadcasts: x.broadcasts, eventLoop: x.eventLoop })
      }
      result.held = result.latency.p99 !== null && result.latency.p99 <= o.p99Limit && result.lostPercent <= o.lossLimit && result.closed === 0
      phases.push(result)
      log(`[fanout] ${label} @ ${rate}/s: ${Math.round(r.deliveredPerSecond)} delivered/s, p99 ${result.latency.p99} ms, lost ${r.lost} (${r.lostPercent.toFixed(3)} %), dup ${r.duplicates}${r.resets > 0 ? `, resets ${r.resets}` : ''}${r.orderViolations > 0 && o.target === 'flow' ? `, ORDER ${r.orderViolations}` : ''}, server CPU ${usage.serverCpuSeconds} s, ${result.server.usPerDelivery} µs/delivery${result.held ? '' : '  <- over the limits'}`)
      if (!cluster.alive()) { log('[fanout] a server process died; stopping'); break }
      if (o.saturate && !result.held) break
    }
    serverStats = await cluster.stats()
  } finally {
    await generator.close()
    await cluster.stop()
  }
  const held = phases.filter((p) => p.held)
  return {
    kind: 'fanout',
    label,
    options: o,
    connect,
    phases,
    saturation: o.saturate
      ? { limits: { p99Ms: o.p99Limit, lossPercent: o.lossLimit }, highestRate: held.at(-1)?.rate ?? null, deliveredPerSecond: held.at(-1)?.deliveredPerSecond ?? null, firstFailed: phases.find((p) => !p.held)?.rate ?? null }
      : null,
    serverStats
  }
}

/** Stops a process (SIGSTOP) after `afterMs` for `forMs`, then lets it go on (SIGCONT). */
async function stallProcess (pid, afterMs, forMs) {
  await sleep(afterMs)
  process.kill(pid, 'SIGSTOP')
  try {
    await sleep(forMs)
  } finally {
    process.kill(pid, 'SIGCONT')
  }
}

async function main () {
  const o = parseArgs({ ...FANOUT_DEFAULTS, noWait: false })
  const gate = o.noWait ? { quiet: null, load: loadavg() } : await waitForQuiet()
  const result = await runFanout(o)
  result.quiet = gate
  const file = writeResult(`fanout-${o.target}${o.memory ? '-memory' : ''}-${stamp()}`, result)
  process.stdout.write(`\n${fanoutTable(result.phases)}\n\n`)
  if (result.saturation !== null) process.stdout.write(`highest rate that held: ${result.saturation.highestRate ?? 'none'} ops/s per member\n`)
  process.stdout.write(`results: ${file}\n`)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => { process.stderr.write(`${err.stack}\n`); process.exit(1) })
}
