// Starts the servers under test as child processes on free loopback ports:
// a redis-server of their own (no persistence) when asked, then N instances
// of one target: flow (dist/server.js), socketio (bench/socketio-server.mjs)
// or relay (bench/relay-server.mjs).
import { existsSync, mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { cpuSeconds, freePort, freePorts, memory, resultsDir, root, sleep, startProcess, waitForHttp, waitForPort } from './proc.mjs'

export const TARGETS = ['flow', 'socketio', 'relay']

let runs = 0
/** A name part unique within this process, so a later run does not overwrite an earlier run's logs. */
const runStamp = () => `${process.pid}-${++runs}`

/** Starts a redis-server with persistence off on a free port. */
export async function startRedis (name) {
  const port = await freePort()
  const proc = startProcess(`${name}-redis-${runStamp()}`, 'redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--protected-mode', 'yes', '--dir', resultsDir
  ])
  await waitForPort(port, 'redis-server')
  return { proc, port, url: `redis://127.0.0.1:${port}` }
}

/**
 * The Flow server the bench runs: `dist/server.js`, or another build for
 * an A/B run in one sitting (FLOW_BENCH_SERVER=/tmp/before/dist/server.js).
 */
const flowServer = process.env.FLOW_BENCH_SERVER ?? 'dist/server.js'

function instanceCommand (target, { port, id, redisUrl, cpuProfDir, env, nodeArgs: extraNodeArgs = [] }) {
  const nodeArgs = [...extraNodeArgs, ...(cpuProfDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', cpuProfDir, '--cpu-prof-name', `${id}.cpuprofile`])]
  switch (target) {
    case 'flow': {
      const flags = redisUrl === undefined
        ? {}
        : { REDIS_URL: redisUrl, USE_REDIS_COLLABORATION: 'true', USE_REDIS_WEBSOCKETS: 'true', USE_REDIS_EVENT_ORDERING: 'true' }
      return {
        args: [...nodeArgs, flowServer],
        env: { PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', FLOW_INSTANCE_ID: id, NODE_ENV: 'development', ...flags, ...env }
      }
    }
    case 'socketio':
    case 'relay':
      return {
        args: [...nodeArgs, `bench/${target}-server.mjs`],
        env: { PORT: String(port), HOST: '127.0.0.1', INSTANCE_ID: id, ...(redisUrl === undefined ? {} : { REDIS_URL: redisUrl }), ...env }
      }
    default:
      throw new Error(`unknown target ${target}`)
  }
}

/**
 * A cluster of one target: `instances` processes, sharing one redis-server
 * when `redis` is true (memory-only otherwise, which makes sense on one
 * instance). `cpuProfDir` runs the instances with `node --cpu-prof`;
 * `nodeArgs` are more node options for every instance; `inspect` opens each
 * instance's inspector on a port of its own (its URL goes to the log).
 */
export async function startCluster ({ target, instances = 1, redis = false, name = target, cpuProfDir, env = {}, nodeArgs = [], inspect = false }) {
  if (target === 'flow' && !existsSync(resolve(root, flowServer))) {
    throw new Error(`${flowServer} is missing: run \`npm run build\` first`)
  }
  if (cpuProfDir !== undefined) mkdirSync(cpuProfDir, { recursive: true })
  const db = redis ? await startRedis(name) : null
  const nodes = []
  const cluster = {
    target,
    redis: db,
    nodes,
    /** CPU seconds and memory of every process of the cluster, now. */
    sample () {
      return {
        at: performance.now(),
        instances: nodes.map((n) => ({ id: n.id, cpu: cpuSeconds(n.proc.pid), ...memory(n.proc.pid) })),
        redis: db === null ? null : { cpu: cpuSeconds(db.proc.pid), ...memory(db.proc.pid) }
      }
    },
    /** Flow's /ws/stats of every instance (null for other targets). */
    async stats () {
      if (target !== 'flow') return null
      // Under pressure every route answers 503 for a while: retry for a few seconds.
      return await Promise.all(nodes.map(async (n) => {
        let last = null
        for (let attempt = 0; attempt < 10; attempt++) {
          try {
            const res = await fetch(`http://127.0.0.1:${n.port}/ws/stats`)
            last = await res.json()
            if (res.ok) return last
          } catch { /* retry */ }
          await sleep(500)
        }
        return last
      }))
    },
    alive () { return nodes.every((n) => n.proc.alive) && (db === null || db.proc.alive) },
    async stop () {
      await Promise.all(nodes.map(async (n) => { await n.proc.stop() }))
      if (db !== null) await db.proc.stop()
    }
  }
  try {
    for (let i = 0; i < instances; i++) {
      // The inspector's port apart from the server's (with port 0 it could take the one just freed for the server).
      const [port, inspectPort] = inspect ? await freePorts(2) : [await freePort()]
      const id = `${name}-${i + 1}`
      const extra = inspect ? [...nodeArgs, `--inspect=127.0.0.1:${inspectPort}`] : nodeArgs
      const { args, env: childEnv } = instanceCommand(target, { port, id, redisUrl: db?.url, cpuProfDir, env, nodeArgs: extra })
      const proc = startProcess(`${id}-${runStamp()}`, process.execPath, args, childEnv)
      nodes.push({ id, port, proc })
    }
    for (const n of nodes) {
      if (target === 'flow') {
        // Boot does not wait for Redis (the circuit starts open): wait until /health says ok.
        const deadline = Date.now() + 20_000
        for (;;) {
          const health = await waitForHttp(`http://127.0.0.1:${n.port}/health`, n.id)
          // Another process may have taken the port between freePort() and the listen (our server then
          // exits, or waits for an attached inspector): never load someone else's server.
          if (health.instanceId !== n.id) throw new Error(`port ${n.port} answers as ${health.instanceId}, not ${n.id}: taken by another process; see ${n.proc.logFile}`)
          if (health.status === 'ok') break
          if (Date.now() > deadline) throw new Error(`${n.id} stays ${health.status}: ${JSON.stringify(health.redis)}`)
          await sleep(100)
        }
      } else {
        await waitForPort(n.port, n.id)
      }
      if (!n.proc.alive) throw new Error(`${n.id} exited at start; see ${n.proc.logFile}`)
    }
  } catch (err) {
    await cluster.stop()
    throw err
  }
  return cluster
}

/** The WebSocket URL a client of `target` opens on an instance. */
export function socketUrl (target, port, clientIndex) {
  switch (target) {
    case 'flow': return `ws://127.0.0.1:${port}/ws?userId=u${clientIndex}`
    case 'relay': return `ws://127.0.0.1:${port}/`
    case 'socketio': return `ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`
    case 'socketio-client': return `http://127.0.0.1:${port}`
    default: throw new Error(`unknown target ${target}`)
  }
}

/** Differences between two cluster samples: CPU seconds per process, memory at the end. */
export function usageBetween (before, after) {
  const seconds = (after.at - before.at) / 1000
  const instances = after.instances.map((a, i) => {
    const b = before.instances[i]
    return { id: a.id, cpuSeconds: round(a.cpu - b.cpu, 3), cpuPercent: round(100 * (a.cpu - b.cpu) / seconds, 1), rssMiB: round(a.rss / 2 ** 20, 1), peakRssMiB: round(a.hwm / 2 ** 20, 1) }
  })
  const redis = after.redis === null
    ? null
    : { cpuSeconds: round(after.redis.cpu - before.redis.cpu, 3), cpuPercent: round(100 * (after.redis.cpu - before.redis.cpu) / seconds, 1), rssMiB: round(after.redis.rss / 2 ** 20, 1) }
  return { seconds: round(seconds, 3), instances, redis, serverCpuSeconds: round(instances.reduce((s, x) => s + x.cpuSeconds, 0), 3) }
}

export function round (x, digits = 2) {
  if (x === null || x === undefined || !Number.isFinite(x)) return x ?? null
  const f = 10 ** digits
  return Math.round(x * f) / f
}
