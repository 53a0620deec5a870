#!/usr/bin/env node
// Idle connections on one instance: N clients (default 10,000) connect,
// each joins a project (M members per project), then stay idle. Reports the
// connect rate (connect + join, at most `concurrency` in flight per
// generator worker), RSS per connection ((RSS after - RSS before) / N),
// Flow's heap per connection, and the server's CPU while the clients idle.
//
//   node bench/connections.mjs                     # Flow, all three Redis flags on
//   node bench/connections.mjs --memory --clients 5000
//   node bench/connections.mjs --target socketio   # the same against Socket.IO
//   node bench/connections.mjs --members 200 --features member_batch,member_page,resume
//                                                  # a join storm into rooms of 200, the joins of protocol 1.3
//   FLOW_BENCH_SERVER=/tmp/before/dist/server.js node bench/connections.mjs ...   # another build, same sitting
import { pathToFileURL } from 'node:url'
import { parseArgs } from './lib/args.mjs'
import { Generator } from './lib/generator.mjs'
import { ensureFileLimit, loadavg, sleep, waitForQuiet } from './lib/proc.mjs'
import { num, stamp, table, writeResult } from './lib/report.mjs'
import { round, socketUrl, startCluster, usageBetween } from './lib/servers.mjs'

export const CONNECTIONS_DEFAULTS = {
  target: 'flow',
  memory: false,
  clients: 10_000,
  members: 20,
  ramp: 5000,
  concurrency: 100,
  settle: 3,
  idle: 10,
  /** join features (protocol 1.3) the Flow clients ask for, comma-separated; '' for none */
  features: '',
  /** a directory: run the instance with node --cpu-prof (rank with bench/lib/cpuprofile.mjs) */
  cpuProf: ''
}

/** Open files this run needs in one process: the sockets plus room for everything else. */
export const filesNeeded = (clients) => clients + 2048

async function heapUsed (cluster) {
  const stats = await cluster.stats()
  return stats?.[0]?.memory?.heapUsed ?? null
}

export async function runConnections (options, log = (m) => process.stderr.write(`${m}\n`)) {
  const o = { ...CONNECTIONS_DEFAULTS, ...options }
  const available = ensureFileLimit(filesNeeded(o.clients), log)
  const clientCount = Math.min(o.clients, available - 2048)
  if (clientCount < o.clients) log(`[connections] scaled down to ${clientCount} clients by the open-files limit`)
  const redis = !o.memory
  const label = `${o.target}${redis ? '' : ' (memory)'} ×1${o.target === 'flow' && o.features !== '' ? ` [${o.features}]` : ''}`
  // Read by the Flow driver in the generator's workers (bench/lib/drivers.mjs).
  process.env.FLOW_BENCH_JOIN_FEATURES = o.target === 'flow' ? o.features : ''
  log(`[connections] ${label}: ${clientCount} idle clients, ${o.members} per project`)
  const cluster = await startCluster({
    target: o.target, instances: 1, redis, name: `${o.target}-conn${redis ? '' : '-mem'}`, cpuProfDir: o.cpuProf === '' ? undefined : o.cpuProf
  })
  const port = cluster.nodes[0].port
  const clients = Array.from({ length: clientCount }, (_, index) => ({
    index, project: `idle-p${Math.floor(index / o.members)}`, member: index % o.members, url: socketUrl(o.target, port, index)
  }))
  const generator = new Generator({ driver: o.target, clients, members: o.members })
  try {
    await sleep(1000)
    const before = cluster.sample()
    const heapBefore = await heapUsed(cluster)
    const connect = await generator.connect({ perSecond: o.ramp, concurrency: o.concurrency })
    log(`[connections] ${connect.connected} connected and joined in ${(connect.ms / 1000).toFixed(1)} s (${connect.failed} failed, ${connect.retried} retries${Object.keys(connect.reasons).length > 0 ? `: ${JSON.stringify(connect.reasons)}` : ''})`)
    const connected = cluster.sample()
    await sleep(o.settle * 1000)
    const settled = cluster.sample()
    await sleep(o.idle * 1000)
    const after = cluster.sample()
    const heapAfter = await heapUsed(cluster)
    const stats = await cluster.stats()
    const n = connect.connected
    const rssBefore = before.instances[0].rss
    const rssAfter = after.instances[0].rss
    const result = {
      kind: 'connections',
      label,
      options: { ...o, clients: clientCount },
      connect,
      connectedPerSecond: round(n / (connect.ms / 1000), 0),
      connectCpu: usageBetween(before, connected),
      rss: {
        beforeMiB: round(rssBefore / 2 ** 20, 1),
        afterMiB: round(rssAfter / 2 ** 20, 1),
        peakMiB: round(after.instances[0].hwm / 2 ** 20, 1),
        perConnectionKiB: n === 0 ? null : round((rssAfter - rssBefore) / n / 1024, 2),
        peakPerConnectionKiB: n === 0 ? null : round((after.instances[0].hwm - rssBefore) / n / 1024, 2)
      },
      heap: heapBefore === null ? null : { beforeMiB: round(heapBefore / 2 ** 20, 1), afterMiB: round(heapAfter / 2 ** 20, 1), perConnectionKiB: round((heapAfter - heapBefore) / n / 1024, 2) },
      redis: after.redis === null ? null : { rssMiB: round(after.redis.rss / 2 ** 20, 1), perConnectionKiB: round((after.redis.rss - before.redis.rss) / n / 1024, 2) },
      idle: usageBetween(settled, after),
      loadAtStart: round(loadavg(), 2),
      serverStats: stats
    }
    log(`[connections] RSS ${result.rss.beforeMiB} -> ${result.rss.afterMiB} MiB: ${result.rss.perConnectionKiB} KiB per connection; idle CPU ${result.idle.instances[0].cpuPercent} %`)
    return result
  } finally {
    await generator.close()
    await cluster.stop()
  }
}

export function connectionsTable (runs) {
  return table(
    ['server', 'connected', 'failed', 'connect+join/s', 'RSS before MiB', 'RSS after MiB', 'RSS/conn KiB', 'peak RSS/conn KiB', 'heap/conn KiB', 'redis RSS/conn KiB', 'idle CPU %'],
    runs.map((r) => [r.label, num(r.connect.connected), num(r.connect.failed), num(r.connectedPerSecond), num(r.rss.beforeMiB, 1), num(r.rss.afterMiB, 1), num(r.rss.perConnectionKiB, 2), num(r.rss.peakPerConnectionKiB, 2), r.heap === null ? '—' : num(r.heap.perConnectionKiB, 2), r.redis === null ? '—' : num(r.redis.perConnectionKiB, 2), num(r.idle.instances[0].cpuPercent, 1)])
  )
}

async function main () {
  const o = parseArgs({ ...CONNECTIONS_DEFAULTS, noWait: false })
  ensureFileLimit(filesNeeded(o.clients))
  const gate = o.noWait ? { quiet: null, load: loadavg() } : await waitForQuiet()
  const result = await runConnections(o)
  result.quiet = gate
  const file = writeResult(`connections-${o.target}${o.memory ? '-memory' : ''}-${stamp()}`, result)
  process.stdout.write(`\n${connectionsTable([result])}\n\nresults: ${file}\n`)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => { process.stderr.write(`${err.stack}\n`); process.exit(1) })
}
