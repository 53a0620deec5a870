import { execFile, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { get } from 'node:http'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import { ChildHandle, ROOT, ensureBuilt, freePort, spawnNode } from '../helpers/process.js'
import { connect, type TestClient } from '../helpers/client.js'
import { waitFor, withDeadline } from '../helpers/wait.js'

t.test('npm run cluster starts Redis, instances and a balancer that carries WebSockets across instances', async (t) => {
  await ensureBuilt()
  const [port, i1, i2, redisPort] = [await freePort(), await freePort(), await freePort(), await freePort()]
  const proc = spawnNode(t, ['scripts/cluster.mjs', '--instance-ports', `${i1},${i2}`, '--port', String(port), '--redis-port', String(redisPort)], { LOG_LEVEL: 'warn' })
  await proc.waitFor(/\[cluster\] ready/, { timeoutMs: 30_000 })
  const a = await connect(t, `ws://127.0.0.1:${port}/ws?userId=a`)
  const b = await connect(t, `ws://127.0.0.1:${port}/ws?userId=b`)
  await a.join('demo')
  await b.join('demo')
  await a.request({ type: 'op', project: 'demo', data: 'hello' })
  t.match(await b.next('op'), { seq: 1, data: 'hello', userId: 'a' })
  const health = await (await fetch(`http://127.0.0.1:${port}/health`)).json() as { ports: { log: { adapter: string } } }
  t.equal(health.ports.log.adapter, 'redis')
  const instances = new Set<string>()
  for (let i = 0; i < 4; i++) {
    const stats = await (await fetch(`http://127.0.0.1:${port}/ws/stats`)).json() as { instanceId: string }
    instances.add(stats.instanceId)
  }
  t.same([...instances].sort(), ['flow-1', 'flow-2'], 'the balancer spreads requests over both instances')
  proc.child.kill('SIGTERM')
  const exit = await proc.exited
  t.equal(exit.code, 0, 'stops cleanly on SIGTERM')
})

// Eight runs of the script in this file, each starting Redis and Node
// processes: more than the default 120 s on a busy machine.
t.setTimeout(300_000)

// The failover tests below find the script's children with `ps` (by parent
// pid, not from the script's log), so they judge what the script does, not
// what it prints.

const run = promisify(execFile)
/** Starting the script: Redis, the instances (each a Node process loading the app) and the balancer. */
const READY_TIMEOUT_MS = 60_000
/** An instance killed with SIGKILL: 250 ms of backoff, then a Node process loading the app, on a busy machine. */
const BACK_TIMEOUT_MS = 30_000
/** The script stopping: the drain of an instance is bound by FLOW_SHUTDOWN_TIMEOUT_MS (5 s) plus the script's margin. */
const STOP_TIMEOUT_MS = 20_000

interface Child {
  readonly pid: number
  readonly command: string
}

interface ClusterRun {
  readonly proc: ChildHandle
  /** the balancer */
  readonly port: number
  readonly instancePorts: readonly number[]
  /** ws://127.0.0.1:PORT/ws through the balancer */
  readonly ws: string
  /** The script's children now (Redis, the instances, a watchdog), and remembers them for the teardown. */
  readonly children: () => Promise<Child[]>
}

/**
 * Whether `pid` is a process that has not exited. `process.kill(pid, 0)`
 * succeeds on a zombie too: the children of a script killed with SIGKILL are
 * reparented, and where the new parent does not reap them (some container
 * inits) they stay zombies after they exited; `ps` tells those apart.
 */
async function running (pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  const { stdout } = await run('ps', ['-o', 'stat=', '-p', String(pid)]).catch(() => ({ stdout: '' }))
  return stdout.trim() !== '' && !stdout.trim().startsWith('Z')
}

async function childrenOf (ppid: number): Promise<Child[]> {
  const { stdout } = await run('ps', ['-A', '-o', 'pid=,ppid=,stat=,args='])
  const children: Child[] = []
  for (const line of stdout.split('\n')) {
    const match = /^\s*(\d+)\s+(\d+)\s+(\S+)\s+(.*)$/.exec(line)
    if (match === null || Number(match[2]) !== ppid || (match[3] as string).startsWith('Z')) continue
    children.push({ pid: Number(match[1]), command: match[4] as string })
  }
  return children
}

const isFlow = (c: Child): boolean => c.command.includes('dist/server.js')
const isRedis = (c: Child): boolean => c.command.includes('redis-server')

/**
 * Runs scripts/cluster.mjs with `instances` instances and `flags`, its stdin
 * a pipe from this test, and resolves once it printed `[cluster] ready`. At
 * the end of `t` the script and every child it was seen with are killed
 * with SIGKILL if still running, and its Redis directory is removed.
 */
async function startScript (t: Test, flags: readonly string[] = [], instances = 2): Promise<ClusterRun> {
  await ensureBuilt()
  const port = await freePort()
  const instancePorts: number[] = []
  for (let i = 0; i < instances; i++) instancePorts.push(await freePort())
  const redisPort = await freePort()
  const argv = ['scripts/cluster.mjs', '--instance-ports', instancePorts.join(','), '--port', String(port), '--redis-port', String(redisPort), ...flags]
  const child = spawn(process.execPath, argv, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LOG_LEVEL: 'warn' },
    stdio: ['pipe', 'pipe', 'pipe']
  })
  const proc = new ChildHandle(child)
  const seen = new Set<number>()
  const children = async (): Promise<Child[]> => {
    const found = await childrenOf(child.pid as number)
    for (const c of found) seen.add(c.pid)
    return found
  }
  t.teardown(async () => {
    if (proc.running) {
      await children()
      child.kill('SIGKILL')
      await proc.exited
    }
    for (const pid of seen) if (await running(pid)) process.kill(pid, 'SIGKILL')
    await rm(join(ROOT, '.cluster', `redis-${redisPort}`), { recursive: true, force: true })
  })
  await proc.waitFor(/\[cluster\] ready/, { timeoutMs: READY_TIMEOUT_MS })
  await children()
  return { proc, port, instancePorts, ws: `ws://127.0.0.1:${port}/ws`, children }
}

/** GET on a new connection each time (no keep-alive), so the balancer picks an instance for each request. */
async function getJson<T> (url: string): Promise<T> {
  return await new Promise<T>((resolve, reject) => {
    get(url, { agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => {
        if (res.statusCode === 200) resolve(JSON.parse(body) as T)
        else reject(new Error(`GET ${url}: ${res.statusCode ?? '?'} ${body}`))
      })
      res.on('error', reject)
    }).on('error', reject)
  })
}

interface Stats { instanceId: string, connections: number }

async function stats (port: number): Promise<Stats> {
  return await getJson<Stats>(`http://127.0.0.1:${port}/ws/stats`)
}

/** The instance ids `count` requests through the balancer were answered by. */
async function instanceIds (port: number, count: number): Promise<string[]> {
  const ids = new Set<string>()
  for (let i = 0; i < count; i++) ids.add((await stats(port)).instanceId)
  return [...ids].sort()
}

/** The instance port (of `ports`) whose WebSocket connection count reached `count`. */
async function portWithConnections (ports: readonly number[], count: number, what: string): Promise<number> {
  return await waitFor(async () => {
    for (const p of ports) if ((await stats(p)).connections === count) return p
    return undefined
  }, { what, timeoutMs: 5000 })
}

/** `from` sends an op; `to` receives it. */
async function opReaches (t: Test, from: TestClient, to: TestClient, project: string, data: string): Promise<void> {
  t.match(await from.request({ type: 'op', project, data }), { type: 'ack', project }, `${data}: acked`)
  t.match(await to.next((f) => f.type === 'op' && f.data === data), { project, data }, `${data}: delivered`)
}

/** Resolves when `probe` held at every check for `ms`; rejects at the first check where it did not. */
async function holdsFor (probe: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (!await probe()) throw new Error(`no longer true: ${what}`)
    await delay(50)
  }
}

t.test('an instance killed with SIGKILL is started again while the balancer serves from the other one', async (t) => {
  const cluster = await startScript(t)
  const [i1, i2] = cluster.instancePorts as [number, number]
  const project = `failover-${randomUUID()}`
  const a = await connect(t, `${cluster.ws}?userId=a`)
  const aPort = await portWithConnections([i1, i2], 1, 'a counted by an instance')
  const b = await connect(t, `${cluster.ws}?userId=b`)
  const bPort = aPort === i1 ? i2 : i1
  await portWithConnections([bPort], 1, 'b counted by the other instance')
  await a.join(project)
  await b.join(project)
  await opReaches(t, a, b, project, 'a before')
  await opReaches(t, b, a, project, 'b before')

  const flows = (await cluster.children()).filter(isFlow)
  t.equal(flows.length, 2, 'two instances run')
  const killed = flows[0] as Child
  process.kill(killed.pid, 'SIGKILL')
  const victim = await withDeadline(Promise.race([a.closed.then(() => 'a' as const), b.closed.then(() => 'b' as const)]),
    'the client of the killed instance to be cut off', 5000)
  const [survivor, victimPort] = victim === 'a' ? [b, aPort] : [a, bPort]

  // The client whose instance died reconnects through the balancer: it is handed a live instance.
  const again = await connect(t, `${cluster.ws}?userId=${victim}`)
  await again.join(project)
  await opReaches(t, survivor, again, project, 'to the reconnected client')
  await opReaches(t, again, survivor, project, 'from the reconnected client')

  // The killed instance comes back, and the balancer hands it requests again.
  const back = await waitFor(async () => (await cluster.children()).filter(isFlow).find((c) => c.pid !== flows[0]?.pid && c.pid !== flows[1]?.pid),
    { what: 'a new instance process', timeoutMs: BACK_TIMEOUT_MS, intervalMs: 50 })
  t.ok(back, 'a new instance process was started')
  t.notOk(await running(killed.pid), 'the killed one is gone')
  await waitFor(async () => {
    const health = await getJson<{ status: string }>(`http://127.0.0.1:${victimPort}/health`).catch(() => null)
    return health?.status === 'ok'
  }, { what: 'the restarted instance on Redis', timeoutMs: BACK_TIMEOUT_MS, intervalMs: 100 })
  t.same(await waitFor(async () => {
    const ids = await instanceIds(cluster.port, 4)
    return ids.length === 2 ? ids : undefined
  }, { what: 'both instance ids through the balancer', timeoutMs: 5000 }), ['flow-1', 'flow-2'], '/ws/stats through the balancer shows both instances again')

  // Ops flow both ways between the instance that stayed and the one that came back.
  const survivorPort = victimPort === i1 ? i2 : i1
  const counts = async (): Promise<[number, number]> => [(await stats(survivorPort)).connections, (await stats(victimPort)).connections]
  let onRestarted: TestClient | null = null
  for (let i = 0; i < 3 && onRestarted === null; i++) {
    const [s0, r0] = await counts()
    const c = await connect(t, `${cluster.ws}?userId=c${i}`)
    const [, r1] = await waitFor(async () => {
      const [s1, r1] = await counts()
      return s1 + r1 === s0 + r0 + 1 ? [s1, r1] : undefined
    }, { what: `c${i} counted by an instance`, timeoutMs: 5000 })
    if (r1 > r0) onRestarted = c
  }
  if (onRestarted === null) throw new Error('the balancer never handed a connection to the restarted instance')
  await onRestarted.join(project)
  await opReaches(t, survivor, onRestarted, project, 'to the restarted instance')
  await opReaches(t, onRestarted, survivor, project, 'from the restarted instance')

  t.match(cluster.proc.stdout, /\[cluster\] flow-\d exited \(SIGKILL\); restarting in 250 ms\n/, 'the log says when it restarts')
  t.match(cluster.proc.stdout, /\[cluster\] flow-\d is back\n/, 'the log says it is back')
  cluster.proc.kill('SIGTERM')
  t.equal((await withDeadline(cluster.proc.exited, 'the script to exit', STOP_TIMEOUT_MS)).code, 0, 'stops cleanly afterwards')
})

t.test('with --no-restart a killed instance stays down and the balancer serves from the others', async (t) => {
  const cluster = await startScript(t, ['--no-restart'])
  const flows = (await cluster.children()).filter(isFlow)
  t.equal(flows.length, 2, 'two instances run')
  const killed = flows[0] as Child
  process.kill(killed.pid, 'SIGKILL')
  await waitFor(async () => !await running(killed.pid), { what: 'the killed instance to exit', timeoutMs: 5000 })

  const ids = await instanceIds(cluster.port, 6)
  t.equal(ids.length, 1, `six requests through the balancer are all answered by one instance (${ids.join(', ')})`)
  const project = `no-restart-${randomUUID()}`
  const a = await connect(t, `${cluster.ws}?userId=a`)
  const b = await connect(t, `${cluster.ws}?userId=b`)
  await a.join(project)
  await b.join(project)
  await opReaches(t, a, b, project, 'served by the instance left')
  // Restarting would start a process within the first backoff (250 ms): none comes in four times that.
  await holdsFor(async () => (await cluster.children()).filter(isFlow).length === 1, 1000, 'one instance process')
  t.pass('no instance process was started again')
  t.match(cluster.proc.stdout, /\[cluster\] flow-\d exited \(SIGKILL\); not restarting/, 'the log says it stays down')

  cluster.proc.kill('SIGTERM')
  t.equal((await withDeadline(cluster.proc.exited, 'the script to exit', STOP_TIMEOUT_MS)).code, 0, 'stops cleanly afterwards')
})

t.test('a frozen instance (SIGSTOP) leaves the rotation after two missed health checks, and comes back after SIGCONT', async (t) => {
  const cluster = await startScript(t)
  const flows = (await cluster.children()).filter(isFlow)
  t.equal(flows.length, 2, 'two instances run')
  t.same(await waitFor(async () => {
    const ids = await instanceIds(cluster.port, 4)
    return ids.length === 2 ? ids : undefined
  }, { what: 'both instances in the rotation', timeoutMs: 5000 }), ['flow-1', 'flow-2'])
  const frozen = flows[0] as Child
  process.kill(frozen.pid, 'SIGSTOP')
  t.teardown(() => { try { process.kill(frozen.pid, 'SIGCONT') } catch {} })
  // Its kernel still accepts connections: only the health check can tell.
  await cluster.proc.waitFor(/\[cluster\] flow-\d did not answer \/health 2 times in a row; out of the rotation/, { timeoutMs: 15_000 })
  const ids = await instanceIds(cluster.port, 6)
  t.equal(ids.length, 1, `six requests through the balancer are all answered by the instance left (${ids.join(', ')})`)
  const project = `frozen-${randomUUID()}`
  const a = await connect(t, `${cluster.ws}?userId=a`)
  const b = await connect(t, `${cluster.ws}?userId=b`)
  await a.join(project)
  await b.join(project)
  await opReaches(t, a, b, project, 'new clients are served while one instance is frozen')

  process.kill(frozen.pid, 'SIGCONT')
  await cluster.proc.waitFor(/\[cluster\] flow-\d is back/, { timeoutMs: 15_000 })
  t.same(await waitFor(async () => {
    const back = await instanceIds(cluster.port, 4)
    return back.length === 2 ? back : undefined
  }, { what: 'both instances in the rotation again', timeoutMs: 5000 }), ['flow-1', 'flow-2'], 'the thawed instance is handed requests again')
  cluster.proc.kill('SIGTERM')
  t.equal((await withDeadline(cluster.proc.exited, 'the script to exit', STOP_TIMEOUT_MS)).code, 0, 'stops cleanly afterwards')
})

t.test('SIGINT, SIGTERM, SIGHUP and the end of stdin stop the script with code 0 and nothing left running', async (t) => {
  const cases: ReadonlyArray<readonly [string, readonly string[], (c: ClusterRun) => void]> = [
    ['SIGINT', [], (c) => { c.proc.kill('SIGINT') }],
    ['SIGTERM', [], (c) => { c.proc.kill('SIGTERM') }],
    ['SIGHUP', [], (c) => { c.proc.kill('SIGHUP') }],
    ['stdin closing with --stop-on-stdin-close', ['--stop-on-stdin-close'], (c) => { c.proc.child.stdin?.end() }]
  ]
  for (const [name, flags, stopIt] of cases) {
    await t.test(name, async (t) => {
      const cluster = await startScript(t, flags, 1)
      const client = await connect(t, `${cluster.ws}?userId=a`)
      const children = await cluster.children()
      t.ok(children.some(isFlow) && children.some(isRedis), 'an instance and Redis run')
      stopIt(cluster)
      const exit = await withDeadline(cluster.proc.exited, 'the script to exit', STOP_TIMEOUT_MS)
      t.same(exit, { code: 0, signal: null }, 'exit code 0')
      t.equal((await withDeadline(client.closed, 'the client to be closed', 5000)).code, 1001, 'the instance drained its client (1001)')
      for (const c of children) t.notOk(await running(c.pid), `${c.command} (pid ${c.pid}) is not running`)
    })
  }
})

t.test('with --stop-on-stdin-close the children do not outlive the script killed with SIGKILL', async (t) => {
  const cluster = await startScript(t, ['--stop-on-stdin-close'])
  const children = await cluster.children()
  t.ok(children.filter(isFlow).length === 2 && children.some(isRedis), 'the instances and Redis run')
  cluster.proc.kill('SIGKILL')
  await withDeadline(cluster.proc.exited, 'the script to die', 5000)
  const killedAt = Date.now()
  await waitFor(async () => {
    for (const c of children) if (await running(c.pid)) return false
    return true
  }, { what: 'every child of the killed script to exit', timeoutMs: 10_000, intervalMs: 50 })
  t.pass(`every child (${children.length}) exited within ${Date.now() - killedAt} ms of the script`)
})
