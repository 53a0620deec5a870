#!/usr/bin/env node
// A local cluster without Docker: one redis-server (AOF on), N Flow instances
// with all three Redis flags on, and a round-robin TCP balancer in front
// (WebSocket upgrades pass through it untouched).
//
//   npm run cluster                       # balancer on :8080, instances on :3001..3003, Redis on :6390
//   node scripts/cluster.mjs --instances 2 --port 8090 --base-port 4001 --redis-port 6391
//   node scripts/cluster.mjs --instance-ports 4001,4007 --port 8090
//
// Ctrl-C (or SIGTERM) drains the instances and stops everything. Extra
// environment variables (FLOW_JWT_SECRET, LOG_LEVEL, ...) reach the instances.
import { spawn } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import net from 'node:net'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const arg = (name, fallback) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && args[i + 1] !== undefined ? Number(args[i + 1]) : fallback
}
const instances = arg('instances', 3)
const port = arg('port', 8080)
const basePort = arg('base-port', 3001)
const redisPort = arg('redis-port', 6390)
const children = []
let stopping = false

function log (msg) { process.stdout.write(`[cluster] ${msg}\n`) }

function start (name, command, argv, env = {}) {
  const child = spawn(command, argv, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout.on('data', (d) => { for (const line of String(d).trimEnd().split('\n')) process.stdout.write(`[${name}] ${line}\n`) })
  child.stderr.on('data', (d) => { for (const line of String(d).trimEnd().split('\n')) process.stderr.write(`[${name}] ${line}\n`) })
  child.on('exit', (code, signal) => {
    if (!stopping) { log(`${name} exited (${code ?? signal}); stopping`); stop(1) }
  })
  children.push(child)
  return child
}

async function reachable (p) {
  return await new Promise((resolve) => {
    const s = net.connect(p, '127.0.0.1', () => { s.end(); resolve(true) })
    s.on('error', () => { resolve(false) })
  })
}

async function waitFor (p, what) {
  const deadline = Date.now() + 15_000
  while (!(await reachable(p))) {
    if (Date.now() > deadline) throw new Error(`${what} did not come up on port ${p}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

function stop (code = 0) {
  if (stopping) return
  stopping = true
  log('stopping')
  balancer.close()
  const flow = children.slice(1)
  for (const c of flow) c.kill('SIGTERM')
  Promise.all(flow.map((c) => new Promise((resolve) => { if (c.exitCode !== null) resolve(); else c.once('exit', resolve) })))
    .then(() => { children[0]?.kill('SIGTERM'); setTimeout(() => process.exit(code), 200) })
}

const dataDir = join(root, '.cluster', `redis-${redisPort}`)
mkdirSync(dataDir, { recursive: true })
start('redis', 'redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--appendonly', 'yes', '--appendfsync', 'everysec', '--dir', dataDir, '--save', ''])
await waitFor(redisPort, 'redis-server')

// --instance-ports 4001,4002 names the ports; else base-port, base-port + 1, ...
const listed = args.includes('--instance-ports') ? String(args[args.indexOf('--instance-ports') + 1]).split(',').map(Number) : null
const ports = []
for (let i = 0; i < (listed?.length ?? instances); i++) {
  const p = listed?.[i] ?? basePort + i
  ports.push(p)
  start(`flow-${i + 1}`, process.execPath, ['dist/server.js'], {
    PORT: String(p),
    HOST: '127.0.0.1',
    FLOW_INSTANCE_ID: `flow-${i + 1}`,
    REDIS_URL: `redis://127.0.0.1:${redisPort}`,
    USE_REDIS_COLLABORATION: 'true',
    USE_REDIS_WEBSOCKETS: 'true',
    USE_REDIS_EVENT_ORDERING: 'true'
  })
}
for (const p of ports) await waitFor(p, `instance on ${p}`)

// Round robin over the instances; a connection to a dead one is retried on the next.
let next = 0
const balancer = net.createServer((client) => {
  const tryConnect = (attempt) => {
    const target = ports[next++ % ports.length]
    const upstream = net.connect(target, '127.0.0.1')
    upstream.once('connect', () => {
      client.pipe(upstream).pipe(client)
    })
    upstream.once('error', () => {
      if (attempt + 1 < ports.length) tryConnect(attempt + 1)
      else client.destroy()
    })
    client.once('error', () => { upstream.destroy() })
    client.once('close', () => { upstream.destroy() })
  }
  tryConnect(0)
})
balancer.listen(port, '127.0.0.1', () => {
  log(`ready: http://127.0.0.1:${port} (ws://127.0.0.1:${port}/ws) -> instances on ${ports.join(', ')}, Redis on ${redisPort}`)
})

process.on('SIGINT', () => { stop(0) })
process.on('SIGTERM', () => { stop(0) })
