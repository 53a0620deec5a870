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
//   node bench/connections.mjs --memory --clients 50000 --connected-only --gc
//                                                  # 50,000 sockets that never join, memory read after a full GC
//   node bench/connections.mjs --memory --clients 10000 --heap-snapshot bench/results/heap
//                                                  # where the heap goes, per connection and by kind
//   FLOW_BENCH_SERVER=/tmp/before/dist/server.js node bench/connections.mjs ...   # another build, same sitting
//
// Beyond one address's share (`--per-address`, 10,000), the clients are
// spread over several loopback source addresses (127.B.0.1, 127.B.0.2, ...,
// B drawn per run):
// each (source address, server port) pair has one ephemeral port range
// (net.ipv4.ip_local_port_range, about 28,000 ports), and Flow refuses more
// than FLOW_MAX_CONNECTIONS_PER_IP (10,000 by default) connections from one
// address with 429: the limit that is there to stop one script. The bench
// sets that limit explicitly (`--max-per-ip`, 10,000, the default; 0: off),
// so a run with more clients per address than the limit shows the refusals.
// Sockets are file descriptors: the server needs N of them in one process,
// the generator too, unless `--processes` spreads it over several.
import { pathToFileURL } from 'node:url'
import { parseArgs } from './lib/args.mjs'
import { join } from 'node:path'
import { mkdirSync, rmSync } from 'node:fs'
import { Generator } from './lib/generator.mjs'
import { ProcessGenerator } from './lib/generator-process.mjs'
import { perConnection, summarize } from './lib/heapsnapshot.mjs'
import { openInspector } from './lib/inspector.mjs'
import { ensureFileLimit, fileLimit, loadavg, sleep, waitForQuiet } from './lib/proc.mjs'
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
  cpuProf: '',
  /** open the sockets and stop there: no join (Flow), no room (Socket.IO) */
  connectedOnly: false,
  /** loopback source addresses the clients are spread over (127.B.0.1, .2, ...); 0: ceil(clients / perAddress) */
  addresses: 0,
  /** clients per source address when `addresses` is 0 */
  perAddress: 10_000,
  /** Flow's FLOW_MAX_CONNECTIONS_PER_IP for the run, set explicitly (10,000 is its default; 0: no limit) */
  maxPerIp: 10_000,
  /** generator processes; 0: as many as the open-files limit needs (one when it allows all the sockets) */
  processes: 0,
  /** a full garbage collection (through the server's inspector) before each memory reading; heap read by V8 */
  gc: false,
  /** a directory: heap snapshots before and after (implies gc), and what each connection holds, by kind */
  heapSnapshot: '',
  /** keep the .heapsnapshot files (they are large) */
  keepSnapshots: false,
  /** V8's sampling heap profiler over the connect (garbage included): bytes allocated per connection, by function */
  allocations: false
}

/** Open files this run needs in one process: the sockets plus room for everything else. */
export const filesNeeded = (clients) => clients + 2048
/** Files a process holds besides its sockets (logs, pipes, epoll, worker threads, Redis): when scaling down. */
const FILES_BESIDES = 512

/**
 * The loopback source addresses of a run: none (the kernel's choice, 127.0.0.1) when one is enough, else
 * 127.B.0.1, 127.B.0.2, ... with B drawn per run. A socket bound to an address takes a port no other socket
 * on that address holds, whatever the destination: the TIME_WAIT sockets of the runs before (and every
 * other process's sockets on 127.0.0.1) would narrow the range, and connects fail with EADDRINUSE.
 */
export function sourceAddresses (clients, { addresses = 0, perAddress = 10_000 } = {}) {
  const k = addresses > 0 ? addresses : Math.max(1, Math.ceil(clients / perAddress))
  if (k > 254) throw new Error(`${k} source addresses: at most 254 (127.B.0.1 to 127.B.0.254)`)
  if (k === 1 && addresses === 0) return [undefined]
  const b = 1 + Math.floor(Math.random() * 254)
  return Array.from({ length: k }, (_, i) => `127.${b}.0.${i + 1}`)
}

async function heapUsed (cluster) {
  const stats = await cluster.stats()
  return stats?.[0]?.memory?.heapUsed ?? null
}

export async function runConnections (options, log = (m) => process.stderr.write(`${m}\n`)) {
  const o = { ...CONNECTIONS_DEFAULTS, ...options }
  const inspect = o.gc || o.heapSnapshot !== '' || o.allocations
  // The server holds every socket in one process: its open-files limit caps the run.
  const available = ensureFileLimit(filesNeeded(o.clients), log)
  const clientCount = Math.min(o.clients, available - FILES_BESIDES)
  if (clientCount < o.clients) log(`[connections] scaled down to ${clientCount} clients by the open-files limit (${available}): the server holds every socket in one process`)
  // The generator's sockets may spread over processes, each under the same limit.
  const processes = o.processes > 0 ? o.processes : (clientCount + FILES_BESIDES <= available ? 1 : Math.ceil(clientCount / (available - FILES_BESIDES)))
  const addresses = sourceAddresses(clientCount, o)
  const share = Math.ceil(clientCount / addresses.length)
  if (o.target === 'flow' && o.maxPerIp > 0 && share > o.maxPerIp) {
    log(`[connections] ${share} clients per source address against FLOW_MAX_CONNECTIONS_PER_IP=${o.maxPerIp}: the rest are refused with 429 (more --addresses, or --max-per-ip)`)
  }
  const redis = !o.memory
  const variant = o.connectedOnly ? ' connected-only' : ''
  const label = `${o.target}${redis ? '' : ' (memory)'} ×1${variant}${o.target === 'flow' && o.features !== '' && !o.connectedOnly ? ` [${o.features}]` : ''}`
  // Read by the Flow driver in the generator's workers (bench/lib/drivers.mjs).
  process.env.FLOW_BENCH_JOIN_FEATURES = o.target === 'flow' ? o.features : ''
  log(`[connections] ${label}: ${clientCount} idle clients${o.connectedOnly ? '' : `, ${o.members} per project`}, from ${addresses.length} source address${addresses.length === 1 ? '' : 'es'}${processes > 1 ? `, generator in ${processes} processes` : ''}`)
  const env = o.target === 'flow' ? { FLOW_MAX_CONNECTIONS_PER_IP: String(o.maxPerIp) } : {}
  const cluster = await startCluster({
    target: o.target,
    instances: 1,
    redis,
    name: `${o.target}-conn${redis ? '' : '-mem'}`,
    cpuProfDir: o.cpuProf === '' ? undefined : o.cpuProf,
    env,
    inspect
  })
  const port = cluster.nodes[0].port
  const clients = Array.from({ length: clientCount }, (_, index) => ({
    index,
    project: `idle-p${Math.floor(index / o.members)}`,
    member: index % o.members,
    url: socketUrl(o.target, port, index),
    join: !o.connectedOnly,
    localAddress: addresses[index % addresses.length]
  }))
  const generator = processes > 1
    ? new ProcessGenerator({ driver: o.target, clients, members: o.members, processes })
    : new Generator({ driver: o.target, clients, members: o.members })
  let inspector = null
  let snapshotDir = null
  try {
    if (inspect) inspector = await openInspector(cluster.nodes[0].proc.logFile)
    if (o.heapSnapshot !== '') {
      snapshotDir = join(o.heapSnapshot, `${o.target}${redis ? '' : '-mem'}-${o.connectedOnly ? 'connected' : 'joined'}-${clientCount}-${process.pid}-${Date.now()}`)
      mkdirSync(snapshotDir, { recursive: true })
    }
    /** Heap in use (after a full GC with the inspector), or Flow's own reading without it. */
    const heap = async () => {
      if (inspector === null) return await heapUsed(cluster)
      await inspector.collectGarbage()
      return (await inspector.heapUsage()).usedSize
    }
    await sleep(1000)
    // RSS before and after, without a forced GC (the issue's reading), and, with the inspector, both after one.
    const before = cluster.sample()
    const heapBefore = await heap()
    const beforeGc = inspector === null ? null : cluster.sample()
    // The snapshot's memory is reused by the connections: with --heap-snapshot, RSS per connection is too
    // low, read it from a run without.
    const snapBefore = snapshotDir === null ? null : summarize(await inspector.heapSnapshot(join(snapshotDir, 'before.heapsnapshot')))
    // Never load a port someone else holds: the server must still be ours and alive.
    if (!cluster.alive()) throw new Error(`the server exited before the clients connected; see ${cluster.nodes[0].proc.logFile}`)
    if (o.allocations) await inspector.startAllocationSampling()
    const connect = await generator.connect({ perSecond: o.ramp, concurrency: o.concurrency })
    const allocations = o.allocations ? await inspector.stopAllocationSampling() : null
    log(`[connections] ${connect.connected} ${o.connectedOnly ? 'connected' : 'connected and joined'} in ${(connect.ms / 1000).toFixed(1)} s (${connect.failed} failed, ${connect.retried} retries${Object.keys(connect.reasons).length > 0 ? `: ${JSON.stringify(connect.reasons)}` : ''})`)
    const connected = cluster.sample()
    await sleep(o.settle * 1000)
    const settled = cluster.sample()
    await sleep(o.idle * 1000)
    const after = cluster.sample()
    const heapAfterNoGc = inspector === null ? null : (await inspector.heapUsage()).usedSize
    const heapAfter = await heap()
    const afterGc = inspector === null ? null : cluster.sample()
    const snapAfter = snapshotDir === null ? null : summarize(await inspector.heapSnapshot(join(snapshotDir, 'after.heapsnapshot')))
    const stats = await cluster.stats()
    const n = connect.connected
    const rssBefore = before.instances[0].rss
    const rssAfter = after.instances[0].rss
    const perConn = (bytes) => n === 0 ? null : round(bytes / n / 1024, 2)
    const result = {
      kind: 'connections',
      label,
      options: { ...o, clients: clientCount, requestedClients: o.clients },
      variant: o.connectedOnly ? 'connected' : 'joined',
      fileLimit: fileLimit(),
      sourceAddresses: addresses.map((a) => a ?? '127.0.0.1 (kernel\'s choice)'),
      generatorProcesses: processes,
      serverEnv: env,
      connect,
      connectedPerSecond: round(n / (connect.ms / 1000), 0),
      connectCpu: usageBetween(beforeGc ?? before, connected),
      rss: {
        beforeMiB: round(rssBefore / 2 ** 20, 1),
        afterMiB: round(rssAfter / 2 ** 20, 1),
        peakMiB: round(after.instances[0].hwm / 2 ** 20, 1),
        perConnectionKiB: perConn(rssAfter - rssBefore),
        peakPerConnectionKiB: perConn(after.instances[0].hwm - rssBefore),
        afterGcMiB: afterGc === null ? null : round(afterGc.instances[0].rss / 2 ** 20, 1),
        beforeGcMiB: beforeGc === null ? null : round(beforeGc.instances[0].rss / 2 ** 20, 1),
        afterGcPerConnectionKiB: afterGc === null ? null : perConn(afterGc.instances[0].rss - beforeGc.instances[0].rss)
      },
      heap: heapBefore === null
        ? null
        : {
            gc: inspector !== null,
            beforeMiB: round(heapBefore / 2 ** 20, 1),
            afterMiB: round(heapAfter / 2 ** 20, 1),
            perConnectionKiB: perConn(heapAfter - heapBefore),
            noGcPerConnectionKiB: heapAfterNoGc === null ? null : perConn(heapAfterNoGc - heapBefore)
          },
      heapByKind: snapAfter === null ? null : perConnection(snapBefore, snapAfter, n),
      allocations: allocations === null || n === 0
        ? null
        : { bytesPerConnection: Math.round(allocations.total / n), top: allocations.top.map((a) => ({ fn: a.fn, bytesPerConnection: Math.round(a.bytes / n) })) },
      redis: after.redis === null ? null : { rssMiB: round(after.redis.rss / 2 ** 20, 1), perConnectionKiB: perConn(after.redis.rss - before.redis.rss) },
      idle: usageBetween(settled, after),
      loadAtStart: round(loadavg(), 2),
      serverStats: stats
    }
    log(`[connections] RSS ${result.rss.beforeMiB} -> ${result.rss.afterMiB} MiB: ${result.rss.perConnectionKiB} KiB per connection${result.heap === null ? '' : `, heap ${result.heap.perConnectionKiB} KiB${result.heap.gc ? ' (after GC)' : ''}`}; idle CPU ${result.idle.instances[0].cpuPercent} %`)
    if (result.allocations !== null) {
      log(`[connections] allocated during the connect (sampled, garbage included): ${result.allocations.bytesPerConnection} bytes per connection; by function:`)
      for (const a of result.allocations.top.slice(0, 20)) log(`  ${String(a.bytesPerConnection).padStart(6)} B  ${a.fn}`)
    }
    if (result.heapByKind !== null) {
      log(`[connections] heap per connection by kind (snapshots after a full GC): ${round(result.heapByKind.bytesPerConnection, 0)} bytes, ${round(result.heapByKind.nodesPerConnection, 1)} nodes`)
      for (const k of result.heapByKind.top.slice(0, 15)) log(`  ${String(k.bytesPerConnection).padStart(6)} B  ${String(k.countPerConnection).padStart(6)} ×  ${k.kind}`)
    }
    return result
  } finally {
    inspector?.close()
    await generator.close()
    await cluster.stop()
    if (snapshotDir !== null && !o.keepSnapshots) rmSync(snapshotDir, { recursive: true, force: true })
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
