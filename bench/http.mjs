#!/usr/bin/env node
// HTTP load on one Flow instance with autocannon (programmatic API):
// `POST /projects/:p/ops` over P projects, each with L WebSocket members
// listening (every accepted op is delivered to each of them), then
// `GET /health`. Reports req/s, latency percentiles, non-2xx, errors, the
// server's CPU per request and the deliveries the listeners counted.
//
//   node bench/http.mjs                      # all three Redis flags on
//   node bench/http.mjs --memory --seconds 10 --connections 64
import autocannon from 'autocannon'
import { pathToFileURL } from 'node:url'
import WebSocket from 'ws'
import { parseArgs } from './lib/args.mjs'
import { loadavg, machineCpu, sleep, waitForQuiet } from './lib/proc.mjs'
import { ms, num, stamp, table, writeResult } from './lib/report.mjs'
import { round, startCluster, usageBetween } from './lib/servers.mjs'

export const HTTP_DEFAULTS = {
  memory: false,
  seconds: 10,
  connections: 32,
  pipelining: 1,
  projects: 10,
  listeners: 5,
  payload: 64
}

/** WebSocket members that only count the ops they receive. */
async function listen (port, projects, perProject) {
  const sockets = []
  const counter = { ops: 0 }
  await Promise.all(projects.flatMap((project) => Array.from({ length: perProject }, (_, i) => new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?userId=listener-${project}-${i}`, { perMessageDeflate: false })
    sockets.push(ws)
    ws.on('error', reject)
    ws.on('open', () => { ws.send(JSON.stringify({ type: 'join', project })) })
    ws.on('message', (raw) => {
      // Cheap enough not to slow autocannon, which shares this thread.
      if (raw.includes('"type":"op"')) counter.ops++
      else if (raw.includes('"type":"joined"')) resolve()
    })
  }))))
  return { counter, close: () => { for (const ws of sockets) ws.terminate() } }
}

function summarise (name, r, usage) {
  const lat = r.latency
  const ok = r['2xx']
  return {
    name,
    requestsPerSecond: round(r.requests.average, 0),
    total: r.requests.total,
    ok,
    non2xx: r.non2xx,
    statusCodes: Object.fromEntries(Object.entries(r.statusCodeStats ?? {}).map(([code, v]) => [code, v.count])),
    errors: r.errors,
    timeouts: r.timeouts,
    latency: { mean: lat.mean, p50: lat.p50, p90: lat.p90, p99: lat.p99, p999: lat.p99_9, max: lat.max },
    server: { ...usage, usPerRequest: ok + r.non2xx === 0 ? null : round((usage.serverCpuSeconds * 1e6) / (ok + r.non2xx), 1), usPerRequestWithRedis: usage.redis === null ? null : round(((usage.serverCpuSeconds + usage.redis.cpuSeconds) * 1e6) / Math.max(1, ok + r.non2xx), 1) }
  }
}

async function cannon (cluster, options) {
  const before = cluster.sample()
  const result = await autocannon(options)
  const after = cluster.sample()
  return { result, usage: usageBetween(before, after) }
}

export async function runHttp (options, log = (m) => process.stderr.write(`${m}\n`)) {
  const o = { ...HTTP_DEFAULTS, ...options }
  const redis = !o.memory
  const label = `flow${redis ? '' : ' (memory)'} ×1`
  log(`[http] ${label}: ${o.connections} connections, ${o.seconds} s per route, ${o.projects} projects × ${o.listeners} listening members`)
  const cluster = await startCluster({ target: 'flow', instances: 1, redis, name: `flow-http${redis ? '' : '-mem'}` })
  const port = cluster.nodes[0].port
  const projects = Array.from({ length: o.projects }, (_, i) => `http-p${i}`)
  const listeners = await listen(port, projects, o.listeners)
  const m0 = machineCpu()
  const load = loadavg()
  try {
    await sleep(500)
    const body = JSON.stringify({ data: { pad: 'x'.repeat(o.payload) } })
    const common = { url: `http://127.0.0.1:${port}`, connections: o.connections, pipelining: o.pipelining, duration: o.seconds }
    // Warm-up, not reported.
    await autocannon({ ...common, duration: 1, method: 'POST', path: `/projects/${projects[0]}/ops`, headers: { 'content-type': 'application/json' }, body })
    await sleep(500)
    const delivered0 = listeners.counter.ops
    const posts = await cannon(cluster, {
      ...common,
      requests: projects.map((p) => ({ method: 'POST', path: `/projects/${p}/ops`, headers: { 'content-type': 'application/json' }, body }))
    })
    // Deliveries still on their way when autocannon stops. Requests in flight
    // at the stop are not counted by autocannon but may be delivered: up to
    // connections x listeners more than expected.
    const expected = posts.result['2xx'] * o.listeners
    const deadline = Date.now() + 5000
    while (listeners.counter.ops - delivered0 < expected && Date.now() < deadline) await sleep(50)
    const delivered = listeners.counter.ops - delivered0
    const health = await cannon(cluster, { ...common, url: `http://127.0.0.1:${port}/health` })
    const m1 = machineCpu()
    const stats = await cluster.stats()
    const results = {
      kind: 'http',
      label,
      options: o,
      post: { ...summarise('POST /projects/:p/ops', posts.result, posts.usage), deliveries: { expected, delivered } },
      health: summarise('GET /health', health.result, health.usage),
      machine: { loadAtStart: round(load, 2), busySeconds: round(m1.busy - m0.busy, 2) },
      serverStats: stats
    }
    log(`[http] POST ops: ${results.post.requestsPerSecond} req/s, p99 ${results.post.latency.p99} ms, non-2xx ${results.post.non2xx}, deliveries ${delivered}/${expected}; /health: ${results.health.requestsPerSecond} req/s, p99 ${results.health.latency.p99} ms`)
    return results
  } finally {
    listeners.close()
    await cluster.stop()
  }
}

export function httpTable (runs) {
  const rows = []
  for (const r of runs) {
    for (const x of [r.post, r.health]) {
      rows.push([`${r.label} ${x.name}`, num(x.requestsPerSecond), ms(x.latency.p50), ms(x.latency.p90), ms(x.latency.p99), ms(x.latency.p999), ms(x.latency.max), num(x.non2xx), num(x.errors + x.timeouts), num(x.server.usPerRequest, 1), x.server.usPerRequestWithRedis === null ? '—' : num(x.server.usPerRequestWithRedis, 1), x.deliveries === undefined ? '—' : `${num(x.deliveries.delivered)} / ${num(x.deliveries.expected)}`])
    }
  }
  return table(['route', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'non-2xx', 'errors', 'µs server CPU/req', '+ redis', 'ws deliveries / expected'], rows)
}

async function main () {
  const o = parseArgs({ ...HTTP_DEFAULTS, noWait: false })
  const gate = o.noWait ? { quiet: null, load: loadavg() } : await waitForQuiet()
  const result = await runHttp(o)
  result.quiet = gate
  const file = writeResult(`http-${o.memory ? 'memory-' : ''}${stamp()}`, result)
  process.stdout.write(`\n${httpTable([result])}\n\nresults: ${file}\n`)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => { process.stderr.write(`${err.stack}\n`); process.exit(1) })
}
