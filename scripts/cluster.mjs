#!/usr/bin/env node
// A local cluster without Docker: one redis-server (AOF on), N Flow instances
// with all three Redis flags on, and a round-robin TCP balancer in front
// (WebSocket upgrades pass through it untouched). It is there to show
// failover: kill an instance and its clients reconnect to another one.
//
//   npm run cluster                       # balancer on :8080, instances on :3001..3003, Redis on :6390
//   node scripts/cluster.mjs --instances 2 --port 8090 --base-port 4001 --redis-port 6391
//   node scripts/cluster.mjs --instance-ports 4001,4007 --port 8090
//   node scripts/cluster.mjs --no-restart             # a process that dies stays down
//   node scripts/cluster.mjs --stop-on-stdin-close    # for a parent process: stop when it goes away
//
// - A process that dies (an instance or Redis; any signal, any exit code) is
//   started again after 250 ms, then 500 ms, 1 s, ... up to 5 s while it keeps
//   dying; a process that ran for 10 s starts again from 250 ms. With
//   --no-restart it stays down (without Redis the instances run on their
//   fallbacks).
// - The balancer hands a connection only to an instance that is up (it
//   answers /health with its instance id): a dead or unreachable one leaves
//   the rotation until it answers again, and a connection it refuses or drops
//   before answering is tried on the next instance. An instance that is up is
//   asked /health every second; two misses in a row (no 200 within 2 s: a
//   frozen process, whose kernel still accepts connections, or one that
//   answers 503) take it out of the rotation until it answers again.
// - SIGINT, SIGTERM and SIGHUP (and the end of stdin with
//   --stop-on-stdin-close) stop the cluster: the instances drain (SIGTERM),
//   the ones still running after FLOW_SHUTDOWN_TIMEOUT_MS + 5 s get SIGKILL,
//   then Redis stops; exit code 0. A second signal does not cut the drain short.
//   The same stop with exit code 1 when Redis or an instance does not come up
//   at start, or when --no-restart has left no instance.
// - With --stop-on-stdin-close a watchdog process (this file with --watchdog)
//   stops the instances and Redis if this script is killed with SIGKILL.
//
// The children run in their own process groups, so Ctrl-C reaches this script
// only and the order above holds (instances drain while Redis is still up).
// Extra environment variables (FLOW_JWT_SECRET, LOG_LEVEL, ...) reach the
// instances.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { dirname, join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

const self = fileURLToPath(import.meta.url)
const root = resolve(dirname(self), '..')
const args = process.argv.slice(2)
const flag = (name) => args.includes(`--${name}`)
const arg = (name, fallback) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && args[i + 1] !== undefined ? Number(args[i + 1]) : fallback
}

const BACKOFF_FIRST_MS = 250
const BACKOFF_MAX_MS = 5000
/** A process that ran at least this long starts again after BACKOFF_FIRST_MS. */
const STABLE_MS = 10_000
/** How long the instances and Redis may take to answer at start. */
const START_TIMEOUT_MS = 60_000
/** How often a process that is not up yet is probed, and how long a probe may take. */
const PROBE_INTERVAL_MS = 100
const PROBE_TIMEOUT_MS = 2000
/** How often an instance in the rotation is asked /health, and how many misses in a row take it out. */
const HEALTH_INTERVAL_MS = 1000
const HEALTH_MISSES = 2
/** Bytes of a request the balancer keeps to send it again to the next instance if the first fails before answering. */
const REPLAY_MAX_BYTES = 64 * 1024
/** The drain of an instance (its own bound, FLOW_SHUTDOWN_TIMEOUT_MS) plus a margin; then SIGKILL. */
const DRAIN_TIMEOUT_MS = (Number(process.env.FLOW_SHUTDOWN_TIMEOUT_MS) || 5000) + 5000
const REDIS_STOP_TIMEOUT_MS = 5000
/** After SIGKILL, how long to wait for the exit (a process in uninterruptible sleep). */
const KILL_TIMEOUT_MS = 2000

// A parent that went away closes our stdout: losing the log must not stop a clean stop.
process.stdout.on('error', () => {})
process.stderr.on('error', () => {})

function log (msg) { process.stdout.write(`[cluster] ${msg}\n`) }

/**
 * Whether `pid` is a process that has not exited. A zombie (exited, not yet
 * reaped: the orphans of a killed parent, until init reaps them) has exited.
 */
function alive (pid) {
  try {
    process.kill(pid, 0)
  } catch (err) {
    return err.code === 'EPERM'
  }
  if (!existsSync('/proc/self/stat')) return true
  try {
    // "pid (comm) S ...": the state follows the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}

/** Sends `signal` to each pid still alive, waits up to `timeoutMs` for them to go, then SIGKILLs the rest. */
async function terminatePids (pids, signal, timeoutMs) {
  for (const pid of pids) if (alive(pid)) try { process.kill(pid, signal) } catch {}
  const deadline = Date.now() + timeoutMs
  while (pids.some(alive) && Date.now() < deadline) await delay(50)
  for (const pid of pids) if (alive(pid)) try { process.kill(pid, 'SIGKILL') } catch {}
}

// --watchdog: started by the script with --stop-on-stdin-close. Its stdin is
// a pipe only the script writes to ("flow <pid>", "redis <pid>", "gone
// <pid>"); when the script dies, even with SIGKILL, the pipe ends and the
// watchdog stops what is left: the instances first (they drain), then Redis.
if (flag('watchdog')) {
  const pids = new Map()
  const lines = createInterface({ input: process.stdin })
  lines.on('line', (line) => {
    const [what, pid] = line.split(' ')
    if (what === 'gone') pids.delete(Number(pid))
    else pids.set(Number(pid), what)
  })
  await once(lines, 'close')
  const of = (role) => [...pids].filter(([, r]) => r === role).map(([pid]) => pid)
  if (pids.size > 0) process.stderr.write(`[cluster] watchdog: the script is gone; stopping ${[...pids.keys()].join(', ')}\n`)
  await terminatePids(of('flow'), 'SIGTERM', DRAIN_TIMEOUT_MS)
  await terminatePids(of('redis'), 'SIGTERM', REDIS_STOP_TIMEOUT_MS)
  process.exit(0)
}

const instances = arg('instances', 3)
const port = arg('port', 8080)
const basePort = arg('base-port', 3001)
const redisPort = arg('redis-port', 6390)
const restart = !flag('no-restart')
const stopOnStdinClose = flag('stop-on-stdin-close')
let stopping = false
let balancer = null
/** The balancer's client sockets, destroyed once the instances have drained. */
const sockets = new Set()
let watchdog = null

function tellWatchdog (line) {
  if (watchdog !== null && watchdog.exitCode === null && watchdog.signalCode === null) watchdog.stdin.write(`${line}\n`)
}

function startWatchdog () {
  const child = spawn(process.execPath, [self, '--watchdog'], { cwd: root, stdio: ['pipe', 'ignore', 'inherit'], detached: true })
  child.stdin.on('error', () => {})
  child.on('exit', (code, signal) => {
    if (stopping) return
    log(`watchdog exited (${signal ?? `code ${code}`}); starting it again`)
    setTimeout(() => {
      if (stopping) return
      startWatchdog()
      for (const p of processes) if (p.running) tellWatchdog(`${p.role} ${p.child.pid}`)
    }, 1000)
  })
  watchdog = child
  log(`watchdog started (pid ${child.pid})`)
}

function forward (stream, out, name) {
  createInterface({ input: stream }).on('line', (line) => { out.write(`[${name}] ${line}\n`) })
}

/**
 * One supervised child: started again with a backoff when it dies, "up"
 * once it answers on its port. The balancer hands connections only to
 * instances that are up.
 */
class Supervised {
  constructor (name, role, port, command, argv, env = {}) {
    this.name = name
    /** 'flow' or 'redis' (what the watchdog stops first) */
    this.role = role
    this.port = port
    this.command = command
    this.argv = argv
    this.env = env
    this.child = null
    this.up = false
    this.everUp = false
    this.dropped = false
    this.backoffMs = BACKOFF_FIRST_MS
    this.timer = null
    this.startedAt = 0
    /** the health check loop that may run (a newer one ends an older one) */
    this.watching = null
  }

  get running () {
    return this.child !== null
  }

  start () {
    this.timer = null
    if (stopping) return
    const child = spawn(this.command, this.argv, {
      cwd: root,
      env: { ...process.env, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: Ctrl-C in a terminal reaches this script only.
      detached: true
    })
    this.child = child
    this.startedAt = Date.now()
    forward(child.stdout, process.stdout, this.name)
    forward(child.stderr, process.stderr, this.name)
    child.on('error', (err) => {
      // Only a failed spawn gets here without 'exit' (ENOENT, EACCES).
      if (child.pid !== undefined) return
      this.child = null
      log(`cannot start ${this.name}: ${err.message}${this.role === 'redis' ? ' (is redis-server installed? apt-get install redis-server, brew install redis)' : ''}`)
      void stop(1, `${this.name} cannot start`)
    })
    child.on('exit', (code, signal) => { this.#exited(child, code, signal) })
    if (child.pid === undefined) return
    log(`${this.name} started (pid ${child.pid}, port ${this.port})`)
    tellWatchdog(`${this.role} ${child.pid}`)
    void this.probe(child)
  }

  /** Probes until this very process answers on its port (or it is gone); then it is up. */
  async probe (child) {
    while (this.child === child && !this.up && !stopping) {
      if (await this.answers(child)) {
        if (this.child !== child || stopping) return
        this.up = true
        if (this.everUp) log(`${this.name} is back`)
        this.everUp = true
        if (this.role === 'flow') void this.watch(child)
        return
      }
      await delay(PROBE_INTERVAL_MS)
    }
  }

  /**
   * While `child` is up, asks it /health every HEALTH_INTERVAL_MS; after
   * HEALTH_MISSES misses in a row it leaves the rotation and is probed until
   * it answers again. A process that is alive but does not answer (SIGSTOP,
   * a blocked event loop, 503) would otherwise keep being handed connections.
   */
  async watch (child) {
    const token = Symbol('watch')
    this.watching = token
    let misses = 0
    for (;;) {
      await delay(HEALTH_INTERVAL_MS)
      if (this.watching !== token || this.child !== child || !this.up || stopping) return
      if (await this.answers(child)) {
        misses = 0
        continue
      }
      if (this.watching !== token || this.child !== child || !this.up || stopping) return
      if (++misses < HEALTH_MISSES) continue
      this.up = false
      log(`${this.name} did not answer /health ${HEALTH_MISSES} times in a row; out of the rotation until it answers again`)
      void this.probe(child)
      return
    }
  }

  /**
   * Whether `child` itself answers on the port, not merely something: a
   * TCP connect can reach another program that took the port, or the
   * probe's own socket (a loopback connect to a free port in the ephemeral
   * range may connect to itself). An instance must answer `/health` with its
   * instance id (200), Redis `INFO server` with its pid.
   */
  async answers (child) {
    return this.role === 'redis'
      ? await redisAnswers(this.port, child.pid)
      : await flowAnswers(this.port, this.env.FLOW_INSTANCE_ID)
  }

  /** The balancer could not connect: out of the rotation until the port answers again. */
  unreachable () {
    if (!this.up) return
    this.up = false
    log(`${this.name} refused a connection; out of the rotation until it answers again`)
    if (this.child !== null) void this.probe(this.child)
  }

  #exited (child, code, signal) {
    if (this.child !== child) return
    this.child = null
    this.up = false
    tellWatchdog(`gone ${child.pid}`)
    if (stopping) return
    const how = signal ?? `code ${code}`
    if (!restart) {
      this.dropped = true
      log(`${this.name} exited (${how}); not restarting (--no-restart)${this.role === 'flow' ? ': out of the rotation' : ''}`)
      if (flows.every((f) => f.dropped)) void stop(1, 'no instance left (--no-restart)')
      return
    }
    if (Date.now() - this.startedAt >= STABLE_MS) this.backoffMs = BACKOFF_FIRST_MS
    const wait = this.backoffMs
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS)
    log(`${this.name} exited (${how}); restarting in ${wait} ms`)
    this.timer = setTimeout(() => { this.start() }, wait)
  }

  /** Sends `signal`, waits up to `timeoutMs` for the exit, then SIGKILL. Resolves once the process is gone. */
  async terminate (signal, timeoutMs) {
    clearTimeout(this.timer)
    this.timer = null
    const child = this.child
    if (child === null) return
    const exited = once(child, 'exit')
    child.kill(signal)
    let timer
    const timedOut = new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs, 'timeout') })
    if (await Promise.race([exited, timedOut]) === 'timeout') {
      log(`${this.name} did not stop within ${timeoutMs} ms; SIGKILL`)
      child.kill('SIGKILL')
      await Promise.race([exited, delay(KILL_TIMEOUT_MS)])
    }
    clearTimeout(timer)
  }
}

/** Whether GET /health on `p` answers 200 with `instanceId`. */
async function flowAnswers (p, instanceId) {
  return await new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: p, path: '/health', agent: false, timeout: PROBE_TIMEOUT_MS }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk) => { body += chunk })
      res.on('end', () => {
        try {
          resolve(res.statusCode === 200 && JSON.parse(body).instanceId === instanceId)
        } catch {
          resolve(false)
        }
      })
      res.on('error', () => { resolve(false) })
    })
    req.on('timeout', () => { req.destroy() })
    req.on('error', () => { resolve(false) })
  })
}

/** Whether the Redis on `p` is the process `pid` (INFO server, inline command). */
async function redisAnswers (p, pid) {
  return await new Promise((resolve) => {
    let reply = ''
    const s = net.connect(p, '127.0.0.1', () => { s.write('INFO server\r\n') })
    s.setEncoding('utf8')
    s.setTimeout(PROBE_TIMEOUT_MS, () => { s.destroy(); resolve(false) })
    s.on('data', (chunk) => {
      reply += chunk
      const found = /process_id:(\d+)/.exec(reply)
      if (found !== null || reply.length > 64 * 1024) {
        s.destroy()
        resolve(found !== null && Number(found[1]) === pid)
      }
    })
    s.on('error', () => { resolve(false) })
    s.on('close', () => { resolve(false) })
  })
}

async function stop (code, why) {
  if (stopping) {
    log(`${why}: already stopping; the drain goes on`)
    return
  }
  stopping = true
  log(`stopping (${why})`)
  balancer?.close()
  await Promise.all(flows.map(async (f) => { await f.terminate('SIGTERM', DRAIN_TIMEOUT_MS) }))
  for (const s of sockets) s.destroy()
  await redis.terminate('SIGTERM', REDIS_STOP_TIMEOUT_MS)
  if (watchdog !== null && watchdog.exitCode === null && watchdog.signalCode === null) {
    const exited = once(watchdog, 'exit')
    watchdog.stdin.end()
    await Promise.race([exited, delay(KILL_TIMEOUT_MS)])
  }
  log('stopped')
  process.exit(code)
}

const dataDir = join(root, '.cluster', `redis-${redisPort}`)
mkdirSync(dataDir, { recursive: true })
const redis = new Supervised('redis', 'redis', redisPort, 'redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--appendonly', 'yes', '--appendfsync', 'everysec', '--dir', dataDir, '--save', ''])

// --instance-ports 4001,4002 names the ports; else base-port, base-port + 1, ...
const listed = flag('instance-ports') ? String(args[args.indexOf('--instance-ports') + 1]).split(',').map(Number) : null
const flows = []
for (let i = 0; i < (listed?.length ?? instances); i++) {
  const p = listed?.[i] ?? basePort + i
  flows.push(new Supervised(`flow-${i + 1}`, 'flow', p, process.execPath, ['dist/server.js'], {
    PORT: String(p),
    HOST: '127.0.0.1',
    FLOW_INSTANCE_ID: `flow-${i + 1}`,
    REDIS_URL: `redis://127.0.0.1:${redisPort}`,
    USE_REDIS_COLLABORATION: 'true',
    USE_REDIS_WEBSOCKETS: 'true',
    USE_REDIS_EVENT_ORDERING: 'true'
  }))
}
const processes = [redis, ...flows]

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => { void stop(0, signal) })
if (stopOnStdinClose) {
  process.stdin.on('end', () => { void stop(0, 'stdin closed') })
  process.stdin.on('error', () => { void stop(0, 'stdin closed') })
  process.stdin.resume()
}

/** Resolves true once every process of `group` is up; false (and stops the script) when it is stopping or they are late. */
async function allUp (group, what) {
  const deadline = Date.now() + START_TIMEOUT_MS
  while (!group.every((p) => p.up)) {
    if (stopping) return false
    if (Date.now() > deadline) {
      const late = group.filter((p) => !p.up).map((p) => `${p.name} (port ${p.port})`)
      log(`${late.join(', ')} did not answer within ${START_TIMEOUT_MS / 1000} s`)
      void stop(1, `${what} did not come up`)
      return false
    }
    await delay(PROBE_INTERVAL_MS)
  }
  return true
}

/**
 * Round robin over the instances that are up. A connection an instance
 * refuses takes that instance out of the rotation and is tried on the next
 * one. So is a connection an instance drops before answering anything (an
 * instance dying while the kernel still accepted for it): what the client sent
 * so far (up to REPLAY_MAX_BYTES) is sent again to the next instance. Once an
 * instance has answered, the two sockets are piped; half-closes pass through.
 */
function createBalancer () {
  let next = 0
  return net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (client) => {
    sockets.add(client)
    const tried = new Set()
    /** the instance's socket of the current attempt, and whether it is connected */
    let upstream = null
    let connected = false
    let answered = false
    let clientEnded = false
    let replay = []
    let replayBytes = 0
    client.on('data', (chunk) => {
      if (answered || replay === null) return
      replayBytes += chunk.length
      if (replayBytes > REPLAY_MAX_BYTES) replay = null
      else replay.push(chunk)
    })
    client.on('end', () => {
      clientEnded = true
      // Not connected yet: the 'connect' handler ends it after the replay.
      if (upstream !== null && connected) upstream.end()
    })
    client.on('error', () => {})
    client.on('close', () => {
      sockets.delete(client)
      upstream?.destroy()
    })

    const tryNext = () => {
      const live = flows.filter((f) => f.up && !tried.has(f))
      if (live.length === 0 || replay === null || client.destroyed || stopping) {
        client.destroy()
        return
      }
      const target = live[next++ % live.length]
      tried.add(target)
      const u = net.connect({ port: target.port, host: '127.0.0.1', allowHalfOpen: true })
      upstream = u
      connected = false
      // Before the first byte back: a failure sends the request to the next instance.
      const failed = () => {
        if (upstream !== u || answered) return
        const refused = !connected
        upstream = null
        client.unpipe(u)
        client.pause()
        u.destroy()
        if (refused) target.unreachable()
        tryNext()
      }
      u.on('error', failed)
      u.on('end', failed)
      u.on('close', failed)
      u.once('connect', () => {
        connected = true
        for (const chunk of replay ?? []) u.write(chunk)
        if (clientEnded) u.end()
        else client.pipe(u, { end: false })
        client.resume()
      })
      u.once('data', (first) => {
        if (upstream !== u) return
        answered = true
        replay = null
        u.off('error', failed)
        u.off('end', failed)
        u.off('close', failed)
        client.write(first)
        u.pipe(client)
        u.on('error', () => { client.destroy() })
        u.on('close', () => { if (!client.writableEnded) client.destroy() })
      })
    }
    tryNext()
  })
}

async function main () {
  if (stopOnStdinClose) startWatchdog()
  redis.start()
  if (!await allUp([redis], 'redis-server')) return
  for (const f of flows) f.start()
  if (!await allUp(flows, 'the instances')) return
  balancer = createBalancer()
  balancer.on('error', (err) => { void stop(1, `balancer: ${err.message}`) })
  balancer.listen(port, '127.0.0.1', () => {
    const policy = restart
      ? `a process that dies restarts after ${BACKOFF_FIRST_MS} ms, doubling to ${BACKOFF_MAX_MS / 1000} s`
      : 'a process that dies stays down (--no-restart)'
    log(`ready: http://127.0.0.1:${port} (ws://127.0.0.1:${port}/ws) -> instances on ${flows.map((f) => f.port).join(', ')}, Redis on ${redisPort}; ${policy}`)
  })
}

void main()
