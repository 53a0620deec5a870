#!/usr/bin/env node
// What durable acks cost (FLOW_ACK_DURABILITY=replica): RedisOperationLog.append()
// straight on a redis-server primary with one replica (both on this machine,
// loopback), no WebSocket. For each burst size k (k appends of one project
// started in one turn, awaited before the next burst), the two modes run
// interleaved A B B A (A: acks when the primary has the op, B: after one WAIT
// for the replica per turn). Reports the ack latency of a burst (from its
// first append to its last ack) p50/p99, appends per second, and the WAITs
// per op. On loopback the replica's round trip is a fraction of a
// millisecond; across hosts add the network's.
//
//   node bench/durable-acks.mjs --bursts 1,16 --ops 5000
//
// `npm run build` first.
import { pathToFileURL } from 'node:url'
import { join } from 'node:path'
import { createClient } from 'redis'
import { parseArgs } from './lib/args.mjs'
import { freePort, loadavg, resultsDir, root, startProcess, waitForPort, waitForQuiet, sleep } from './lib/proc.mjs'
import { startRedis } from './lib/servers.mjs'
import { stamp, writeResult } from './lib/report.mjs'

const DEFAULTS = { bursts: [1, 16], ops: 5000, payload: 64, noWait: false }

function quantile (sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

async function run (o) {
  const { createRedisOperationLog } = await import(pathToFileURL(join(root, 'dist/adapters/redis/operation-log.js')).href)
  const primary = await startRedis('durable-acks')
  const replicaPort = await freePort()
  const replica = startProcess(`durable-acks-replica-${process.pid}`, 'redis-server', [
    '--port', String(replicaPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', resultsDir,
    '--replicaof', '127.0.0.1', String(primary.port)
  ])
  await waitForPort(replicaPort, 'redis-server replica')
  const client = createClient({ url: primary.url })
  client.on('error', () => {})
  await client.connect()
  for (let i = 0; !/slave0:.*state=online/.test(await client.info('replication')); i++) {
    if (i > 200) throw new Error('the replica did not connect')
    await sleep(50)
  }
  let waits = 0
  const counting = { sendCommand: async (args) => { if (args[0] === 'WAIT') waits++; return await client.sendCommand(args) } }
  const data = { m: 1, k: 2, ph: 1, t: 1_700_000_000_000.5, pad: 'x'.repeat(o.payload) }
  const runs = []
  try {
    for (const k of o.bursts) {
      for (const mode of ['memory', 'replica', 'replica', 'memory']) {
        const log = createRedisOperationLog({
          client: counting, keyPrefix: `durable${k}x${runs.length}`, publishOrigin: 'bench',
          durability: mode === 'replica' ? { replicas: 1, timeoutMs: 500 } : undefined
        })
        waits = 0
        const latencies = []
        const w0 = performance.now()
        let n = 0
        while (n < o.ops) {
          const project = `p${(n / k) % 20}`
          const t0 = performance.now()
          const burst = []
          for (let i = 0; i < k; i++) burst.push(log.append({ project, id: `o${n + i}`, userId: 'u', sessionId: 's', data, ts: Date.now() }))
          await Promise.all(burst)
          latencies.push(performance.now() - t0)
          n += k
        }
        const wall = performance.now() - w0
        latencies.sort((a, b) => a - b)
        const r = { k, mode, ops: n, p50Ms: quantile(latencies, 0.5), p99Ms: quantile(latencies, 0.99), opsPerSecond: n / (wall / 1000), waitsPerOp: waits / n }
        runs.push(r)
        process.stderr.write(`[durable-acks] k=${k} ${mode}: ack p50 ${r.p50Ms.toFixed(3)} ms, p99 ${r.p99Ms.toFixed(3)} ms, ${r.opsPerSecond.toFixed(0)} ops/s, ${r.waitsPerOp.toFixed(3)} WAIT/op\n`)
        await log.close()
      }
    }
  } finally {
    await client.quit().catch(() => {})
    await replica.stop()
    await primary.proc.stop()
  }
  return runs
}

function table (runs, bursts) {
  const mean = (k, m, f) => { const r = runs.filter((x) => x.k === k && x.mode === m); return r.reduce((s, x) => s + x[f], 0) / r.length }
  const lines = [
    '| ops per turn | ack p50 ms memory | replica | ratio | ack p99 ms memory | replica | ratio | ops/s replica/memory | WAIT per op |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |'
  ]
  for (const k of bursts) {
    const f = (x) => x.toFixed(3)
    const ratio = (field) => (mean(k, 'replica', field) / mean(k, 'memory', field)).toFixed(2)
    lines.push(`| ${k} | ${f(mean(k, 'memory', 'p50Ms'))} | ${f(mean(k, 'replica', 'p50Ms'))} | ${ratio('p50Ms')} | ` +
      `${f(mean(k, 'memory', 'p99Ms'))} | ${f(mean(k, 'replica', 'p99Ms'))} | ${ratio('p99Ms')} | ${ratio('opsPerSecond')} | ${mean(k, 'replica', 'waitsPerOp').toFixed(3)} |`)
  }
  return lines.join('\n')
}

async function main () {
  const o = parseArgs(DEFAULTS)
  const gate = o.noWait ? { quiet: null, load: loadavg() } : await waitForQuiet()
  const runs = await run(o)
  const file = writeResult(`durable-acks-${stamp()}`, { kind: 'durable-acks', options: o, quiet: gate, runs })
  process.stdout.write(`\n${table(runs, o.bursts)}\n\nresults: ${file}\n`)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => { process.stderr.write(`${err.stack}\n`); process.exit(1) })
}
