// Processes and the machine: free ports, child processes with their logs,
// CPU and RSS from /proc, the quiet-machine gate and the open-files limit.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const resultsDir = join(root, 'bench', 'results')
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
export const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim())

/** A TCP port on 127.0.0.1 that nobody listens on right now. */
export async function freePort () {
  return await new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/** `count` distinct free ports on 127.0.0.1 (all held at once while they are picked). */
export async function freePorts (count) {
  const servers = await Promise.all(Array.from({ length: count }, () => new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => resolve(srv))
  })))
  const ports = servers.map((srv) => srv.address().port)
  await Promise.all(servers.map((srv) => new Promise((resolve) => srv.close(resolve))))
  return ports
}

async function reachable (port) {
  return await new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => { s.end(); resolve(true) })
    s.on('error', () => { resolve(false) })
  })
}

/** Waits until something accepts connections on the port (at most timeoutMs). */
export async function waitForPort (port, what, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await reachable(port))) {
    if (Date.now() > deadline) throw new Error(`${what} did not come up on port ${port}`)
    await sleep(50)
  }
}

/** Waits for an HTTP 200 from the URL (at most timeoutMs). */
export async function waitForHttp (url, what, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      const res = await fetch(url)
      if (res.ok) return await res.json()
    } catch { /* not up yet */ }
    if (Date.now() > deadline) throw new Error(`${what} did not answer 200 on ${url}`)
    await sleep(100)
  }
}

/**
 * A child process whose output goes to bench/results/logs/<name>.log.
 * stop() sends SIGTERM, waits (then SIGKILLs after graceMs) and resolves on exit.
 */
export function startProcess (name, command, args, env = {}) {
  const logDir = join(resultsDir, 'logs')
  mkdirSync(logDir, { recursive: true })
  const logFile = join(logDir, `${name}.log`)
  const log = createWriteStream(logFile)
  const child = spawn(command, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout.pipe(log)
  child.stderr.pipe(log)
  const exited = new Promise((resolve) => { child.once('exit', (code, signal) => resolve({ code, signal })) })
  let stopping = null
  return {
    name,
    child,
    pid: child.pid,
    logFile,
    exited,
    get alive () { return child.exitCode === null && child.signalCode === null },
    stop (graceMs = 8000) {
      stopping ??= (async () => {
        if (this.alive) {
          child.kill('SIGTERM')
          const timer = setTimeout(() => { if (this.alive) child.kill('SIGKILL') }, graceMs)
          await exited
          clearTimeout(timer)
        }
        await new Promise((resolve) => log.end(resolve))
      })()
      return stopping
    }
  }
}

/** utime + stime of a process, in seconds (all its threads). */
export function cpuSeconds (pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
  } catch {
    return null
  }
}

/** VmRSS and VmHWM of a process, in bytes. */
export function memory (pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') }
  } catch {
    return { rss: null, hwm: null }
  }
}

/** Busy and total CPU seconds of the whole machine (all cores), from /proc/stat. */
export function machineCpu () {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]
  const v = line.trim().split(/\s+/).slice(1).map(Number)
  // user nice system idle iowait irq softirq steal
  const idle = v[3] + v[4]
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0)
  return { busy: (total - idle) / CLK_TCK, total: total / CLK_TCK }
}

export function loadavg () {
  return os.loadavg()[0]
}

/**
 * The quiet-machine gate: waits (polling every 20 s, at most maxWaitMs) until
 * the 1-minute load average is below `limit`. Returns what it saw.
 *
 * Our own previous scenario lifts the load average for a minute or more, so
 * between scenarios of one run (`sampleOnly`), the gate also accepts a
 * machine whose cores were at least 80 % idle over a 2-second sample: that
 * is, nobody else is busy now.
 */
export async function waitForQuiet ({ limit = 1.0, maxWaitMs = 600_000, pollMs = 20_000, log = console.error, allowIdleSample = false } = {}) {
  const start = Date.now()
  for (;;) {
    const load = loadavg()
    let idle = null
    if (allowIdleSample) {
      const a = machineCpu()
      await sleep(2000)
      const b = machineCpu()
      idle = 1 - (b.busy - a.busy) / Math.max(1e-9, b.total - a.total)
    }
    const quiet = load < limit || (idle !== null && idle >= 0.8)
    if (quiet) return { quiet: true, load, idle, waitedMs: Date.now() - start }
    if (Date.now() - start + pollMs > maxWaitMs) {
      log(`[bench] machine still busy after ${Math.round((Date.now() - start) / 1000)} s (1-min load ${load.toFixed(2)}${idle === null ? '' : `, idle ${(idle * 100).toFixed(0)} %`}): measuring anyway, results are marked not quiet`)
      return { quiet: false, load, idle, waitedMs: Date.now() - start }
    }
    log(`[bench] waiting for a quiet machine: 1-min load ${load.toFixed(2)} >= ${limit}${idle === null ? '' : `, idle ${(idle * 100).toFixed(0)} %`}`)
    await sleep(pollMs)
  }
}

/** Soft and hard limit of open files of this process. */
export function fileLimit () {
  const limits = readFileSync('/proc/self/limits', 'utf8')
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limits)
  const n = (x) => (x === 'unlimited' ? Infinity : Number(x))
  return { soft: n(m[1]), hard: n(m[2]) }
}

let fileLimitChecked = null

/**
 * Makes sure this process (and the servers it starts) may open `need` files.
 * Node raises its own soft limit to the hard one at start-up, so only the
 * hard limit can be short; Node cannot raise it, so when it is too low and a
 * shell may raise it (root, outside a locked-down container), the script
 * re-runs itself under `ulimit -n` (once).
 * Returns the number of files available; the caller scales down when it is
 * below `need` and says so.
 */
export function ensureFileLimit (need, log = console.error) {
  if (fileLimitChecked !== null && fileLimitChecked.need >= need) return fileLimitChecked.available
  const { soft, hard } = fileLimit()
  let available = soft
  if (soft < need) {
    // Raising the hard limit needs privileges a container may not grant even to root: try it first.
    const mayRaise = spawnSync('/bin/sh', ['-c', `ulimit -n ${need}`], { stdio: 'ignore' }).status === 0
    if (mayRaise && process.env.FLOW_BENCH_ULIMIT_RAISED !== '1') {
      log(`[bench] open-files limit is ${soft} (hard ${hard}), below the ${need} needed: raising it with \`ulimit -n ${need}\` and re-running`)
      const r = spawnSync('/bin/sh', ['-c', `ulimit -n ${need} && exec "$0" "$@"`, process.execPath, ...process.execArgv, ...process.argv.slice(1)],
        { stdio: 'inherit', env: { ...process.env, FLOW_BENCH_ULIMIT_RAISED: '1' } })
      process.exit(r.status ?? 1)
    }
    log(`[bench] open-files limit is ${soft} (hard ${hard}), below the ${need} needed, and it cannot be raised from here: raise it (as root: \`ulimit -Hn ${need}; ulimit -n ${need}\`, LimitNOFILE= in a systemd unit, or nofile in /etc/security/limits.conf) to run at full size; scaling down`)
    available = soft
  }
  fileLimitChecked = { need, available }
  return available
}

/** What machine this is, for the report. */
export function machineInfo () {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? 'unknown'
  let git = null
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root }).toString().trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: root }).toString().trim() !== ''
    git = `${head}${dirty ? ' (with uncommitted changes)' : ''}`
  } catch { /* not a repo */ }
  return {
    nproc: os.availableParallelism?.() ?? os.cpus().length,
    cpuModel: model,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    redis: (() => { try { return execFileSync('redis-server', ['--version']).toString().trim() } catch { return null } })(),
    kernel: os.release(),
    clkTck: CLK_TCK,
    git,
    date: new Date().toISOString()
  }
}
