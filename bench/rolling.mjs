#!/usr/bin/env node
// Rolling deploy: N clients (5,000 by default, projects of 20) on 2 Flow
// instances behind `scripts/cluster.mjs` (its Redis, its round-robin TCP
// balancer, its restart of a process that exits), sending R ops/s each on an
// open loop. During the measured phase each instance in turn gets SIGTERM,
// drains (acks ops in flight, closes its sockets with 1001), exits and is
// started again by the cluster script; the next one follows once the first
// is back and `gap` s have passed. Every client reconnects through the
// balancer (after a random 0-500 ms) and resumes with `join` + `since`/`epoch`
// (bench/lib/churn-client.mjs); ops due meanwhile wait in its queue, and
// unacknowledged ones are sent again with the same id.
//
//   node bench/rolling.mjs                                   # 5,000 clients, 0.1 ops/s each
//   node bench/rolling.mjs --clients 1000 --seconds 40 --no-wait
//
// Reports clients that never came back (not joined again, or never caught
// up, when the drain ends), the time each client was out of sync (from the
// close to caught up: every op the other members had put on the wire before
// its first reconnect attempt has arrived) p50/p95/p99/max, resets, lost and
// duplicated deliveries, and the issue's targets. Flow only: the cluster
// script runs Flow; Socket.IO is not run beside it (see BENCHMARKS.md).
import { spawn } from 'node:child_process'
import { createWriteStream, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { pathToFileURL } from 'node:url'
import { parseArgs } from './lib/args.mjs'
import { ChurnGenerator } from './lib/churn-generator.mjs'
import { cpuSeconds, ensureFileLimit, freePort, loadavg, machineCpu, machineInfo, resultsDir, root, sleep, waitForPort, waitForQuiet } from './lib/proc.mjs'
import { ms, num, stamp, table, writeResult } from './lib/report.mjs'
import { round, socketUrl } from './lib/servers.mjs'

export const ROLLING_DEFAULTS = {
  clients: 5000,
  members: 20,
  rate: 0.1, // ops/s per client: 5,000 × 0.1 × 19 = 9,500 deliveries/s, half this machine's knee
  seconds: 60, // measured phase; the deploy runs inside it
  warmup: 3,
  before: 10, // s into the phase before the first SIGTERM
  gap: 10, // s between an instance being back and the next SIGTERM
  payload: 64,
  ramp: 1000,
  drain: 60, // s at most after the phase for every client to come back and catch up
  grace: 30, // s an instance may take to exit after SIGTERM before it gets SIGKILL (Kubernetes' default grace period)
  syncP95: 2000 // target: p95 time back in sync (ms)
}

/** The cluster script as a child process, its log lines watched. */
async function startClusterScript (instances, env) {
  const port = await freePort()
  const redisPort = await freePort()
  const ports = []
  for (let i = 0; i < instances; i++) ports.push(await freePort())
  const child = spawn(process.execPath, ['scripts/cluster.mjs', '--port', String(port), '--redis-port', String(redisPort), '--instance-ports', ports.join(','), '--stop-on-stdin-close'], {
    cwd: root,
    env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn', NODE_ENV: 'development', ...env },
    stdio: ['pipe', 'pipe', 'pipe']
  })
  const lines = []
  const waiters = new Set()
  const pids = new Map()
  mkdirSync(join(resultsDir, 'logs'), { recursive: true })
  const logFile = join(resultsDir, 'logs', `rolling-cluster-${process.pid}-${stamp()}.log`)
  const logStream = createWriteStream(logFile)
  const onLine = (line) => {
    const at = Date.now()
    logStream.write(`${new Date(at).toISOString()} ${line}\n`)
    if (line.startsWith('[cluster]')) lines.push({ at, line })
    const started = /^\[cluster\] (flow-\d+) started \(pid (\d+)/.exec(line)
    if (started !== null) pids.set(started[1], Number(started[2]))
    for (const w of waiters) if (w.re.test(line)) { waiters.delete(w); w.resolve(at) }
  }
  createInterface({ input: child.stdout }).on('line', onLine)
  createInterface({ input: child.stderr }).on('line', onLine)
  const exited = new Promise((resolve) => child.once('exit', resolve))
  const cluster = {
    port,
    redisPort,
    pids,
    lines,
    logFile,
    /** Resolves (with the time) at the next log line matching `re`. */
    waitFor (re, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => { if (waiters.delete(w)) reject(new Error(`cluster: no line matching ${re} within ${timeoutMs} ms`)) }, timeoutMs)
        // Resolved: its timer must not keep the process alive.
        const w = { re, resolve: (at) => { clearTimeout(timer); resolve(at) } }
        waiters.add(w)
      })
    },
    async stop () {
      child.stdin.end()
      child.kill('SIGTERM')
      const timer = setTimeout(() => { child.kill('SIGKILL') }, 20_000)
      await exited
      clearTimeout(timer)
      await new Promise((resolve) => logStream.end(resolve))
    }
  }
  const ready = cluster.waitFor(/^\[cluster\] ready:/)
  const gone = exited.then((code) => { throw new Error(`cluster script exited (${code}) at start: ${lines.slice(-5).map((l) => l.line).join(' | ')}`) })
  await Promise.race([ready, gone])
  await waitForPort(port, 'cluster balancer')
  return cluster
}

/**
 * SIGTERM each instance in turn; the cluster script restarts it. An instance
 * still running `grace` s after its SIGTERM gets SIGKILL (as an orchestrator
 * would), and the step says so. Returns each step's times (ms).
 */
async function rollingDeploy (cluster, names, { before, gap, grace }, log) {
  await sleep(before * 1000)
  const steps = []
  for (const name of names) {
    const pid = cluster.pids.get(name)
    const exited = cluster.waitFor(new RegExp(`^\\[cluster\\] ${name} exited`), 10 * 60_000)
    const t0 = Date.now()
    log(`[rolling] SIGTERM ${name} (pid ${pid})`)
    process.kill(pid, 'SIGTERM')
    let killed = false
    const timer = setTimeout(() => {
      killed = true
      log(`[rolling] ${name} still running ${grace} s after SIGTERM: SIGKILL`)
      try { process.kill(pid, 'SIGKILL') } catch { /* gone meanwhile */ }
    }, grace * 1000)
    const exitAt = await exited
    clearTimeout(timer)
    const back = cluster.waitFor(new RegExp(`^\\[cluster\\] ${name} is back`), 120_000)
    const backAt = await back
    steps.push({ name, pid, drainMs: exitAt - t0, killed, downMs: backAt - exitAt, newPid: cluster.pids.get(name) })
    log(`[rolling] ${name}: ${killed ? `killed after ${grace} s, exited` : 'drained and exited'} in ${exitAt - t0} ms, back ${backAt - exitAt} ms later (pid ${cluster.pids.get(name)})`)
    await sleep(gap * 1000)
  }
  return steps
}

export async function runRolling (options, log = (m) => process.stderr.write(`${m}\n`)) {
  const o = { ...ROLLING_DEFAULTS, ...options }
  const projects = Math.ceil(o.clients / o.members)
  const n = projects * o.members
  log(`[rolling] flow ×2 behind scripts/cluster.mjs: ${n} clients (${projects} × ${o.members}), ${o.rate} ops/s each, ${o.seconds} s; SIGTERM each instance in turn`)
  // This process holds n sockets; the balancer (a child, same limit) 2n.
  ensureFileLimit(2 * n + 1000, log)
  const cluster = await startClusterScript(2, {})
  const url = (index) => socketUrl('flow', cluster.port, index)
  const clients = []
  for (let p = 0; p < projects; p++) {
    for (let m = 0; m < o.members; m++) {
      const index = p * o.members + m
      clients.push({ index, project: `rolling-p${p}`, member: m, url: url(index), urls: [url(index)] })
    }
  }
  const generator = new ChurnGenerator({ target: 'flow', clients, members: o.members, payloadBytes: o.payload })
  let result = null
  try {
    const connect = await generator.connect({ perSecond: o.ramp })
    log(`[rolling] connected ${connect.connected}/${n} in ${(connect.ms / 1000).toFixed(1)} s (${connect.failed} failed, ${connect.retried} retries)`)
    if (connect.connected === 0) throw new Error(`no client could connect: ${JSON.stringify(connect.reasons)}`)
    await sleep(1000)
    if (o.warmup > 0) await generator.phase({ phase: 0, rate: o.rate, seconds: o.warmup, drainMs: 5000 })
    const gen0 = cpuSeconds(process.pid)
    const m0 = machineCpu()
    const load = loadavg()
    const deploy = rollingDeploy(cluster, ['flow-1', 'flow-2'], o, log)
    const phase = generator.phase({ phase: 1, rate: o.rate, seconds: o.seconds, drainMs: o.drain * 1000 })
    const steps = await deploy
    const r = await phase
    const gen1 = cpuSeconds(process.pid)
    const m1 = machineCpu()
    const e = r.episodes
    result = {
      label: 'flow ×2 (cluster script)',
      target: 'flow',
      clients: n,
      projects,
      members: o.members,
      rate: o.rate,
      connect,
      steps,
      clusterLog: cluster.logFile,
      ...r,
      // Never came back: not joined again when the drain ended, or joined but never caught up.
      leftBehind: r.notReady + e.open,
      generator: { cpuSeconds: round(gen1 - gen0, 3) },
      machine: { loadAtStart: round(load, 2), busySeconds: round(m1.busy - m0.busy, 2) }
    }
    log(`[rolling] delivered ${r.deliveredPercent.toFixed(3)} % (lost ${r.lost}), dup ${r.duplicates}, resets ${r.resets}, ${e.count} comebacks, left behind ${result.leftBehind}, back in sync p95 ${e.outOfSync.p95} ms`)
  } finally {
    await generator.close()
    await cluster.stop()
  }
  return { kind: 'rolling', options: o, runs: [result], targets: rollingTargets([result], o) }
}

export function rollingTargets (runs, o = ROLLING_DEFAULTS) {
  const r = runs.find((x) => x?.target === 'flow')
  if (r === undefined) return []
  const p95 = r.episodes.outOfSync.p95
  return [
    { name: 'rolling deploy: 0 clients left behind', ok: r.leftBehind === 0, detail: `${num(r.leftBehind)} of ${num(r.clients)} (${num(r.notReady)} not joined again, ${num(r.episodes.open)} never caught up)` },
    { name: `rolling deploy: p95 back in sync ≤ ${o.syncP95} ms`, ok: p95 !== null && p95 <= o.syncP95, detail: `${ms(p95)} ms over ${num(r.episodes.outOfSync.n)} comebacks (from the close to caught up)` },
    { name: 'rolling deploy: 0 resets (all Redis flags on)', ok: r.resets === 0, detail: `${num(r.resets)} reset(s); ${num(r.lost)} deliveries lost, ${num(r.duplicates)} duplicated` },
    { name: `rolling deploy: every instance exits within ${o.grace} s of SIGTERM (not an issue target)`, ok: r.steps.every((s) => !s.killed), detail: r.steps.map((s) => `${s.name} ${s.killed ? 'SIGKILLed' : `${num(s.drainMs)} ms`}`).join(', ') }
  ]
}

export function rollingMarkdown (res) {
  const o = res.options
  const runs = res.runs.filter((r) => r !== null)
  const lines = [
    `#### Rolling deploy: ${num(runs[0]?.clients ?? o.clients)} clients (projects of ${o.members}) on 2 instances behind scripts/cluster.mjs, ${o.rate} ops/s each, ${o.seconds} s`,
    '',
    table(['run', 'sent', 'delivered', 'lost', 'dup', 'order', 'resets', 'closes by the server', 'comebacks', 'left behind', 'close → caught up p50 / p95 / p99 / max ms', 'reconnect → joined p50 / p99 ms', 'reconnect attempts refused', 'resent'],
      runs.map((r) => {
        const e = r.episodes
        return [r.label, num(r.sent), `${r.deliveredPercent.toFixed(3)} %`, num(r.lost), num(r.duplicates), num(r.orderViolations), num(r.resets), JSON.stringify(e.serverCloses), num(e.count), num(r.leftBehind),
          `${ms(e.outOfSync.p50)} / ${ms(e.outOfSync.p95)} / ${ms(e.outOfSync.p99)} / ${ms(e.outOfSync.max)}`, `${ms(e.connect.p50)} / ${ms(e.connect.p99)}`, num(e.retries), num(r.resent)]
      })),
    '',
    `Deploy steps: ${runs.flatMap((r) => r.steps).map((s) => `${s.name} ${s.killed ? `did not exit within ${o.grace} s of SIGTERM (SIGKILL), exited` : 'drained and exited'} ${num(s.drainMs)} ms after SIGTERM, back ${num(s.downMs)} ms later`).join('; ')}.`
  ]
  if (res.targets.length > 0) lines.push('', table(['target', 'met', 'numbers'], res.targets.map((t) => [t.name, t.ok ? 'yes' : '**no**', t.detail])))
  return lines.join('\n')
}

async function main () {
  const o = parseArgs({ ...ROLLING_DEFAULTS, noWait: false, maxWait: 600 })
  const gate = o.noWait ? { quiet: null, load: loadavg() } : await waitForQuiet({ maxWaitMs: o.maxWait * 1000 })
  const res = await runRolling(o)
  res.quiet = gate
  res.machine = machineInfo()
  const file = writeResult(`rolling-${stamp()}`, res)
  process.stdout.write(`\n${rollingMarkdown(res)}\n\nresults: ${file}\n`)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => { process.stderr.write(`${err.stack}\n`); process.exit(1) })
}
