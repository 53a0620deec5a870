#!/usr/bin/env node
// What the Redis op log costs per op when ops of one project come in bursts:
// RedisOperationLog.append() straight on a redis-server of its own, no
// WebSocket, no fan-out. Each burst is k appends of one project started in
// one turn (k = 1: one op per turn, as the fan-out's sockets bring them;
// larger k: a busy project, a socket read holding several frames, a re-sync
// of the outage buffer). For two builds (A: another checkout's dist, e.g. the
// commit before a change; B: this one's), interleaved A B B A per k, it
// reports redis-server's CPU per op (/proc, utime + stime), the time Redis
// spent in the append scripts per op (INFO commandstats), the script calls
// per op, and the wall time per op.
//
//   node bench/append-burst.mjs --a /tmp/flow-before/dist --bursts 1,4,16,64 --ops 20000
//
// `npm run build` first (both checkouts). With publishing on (as with all
// Redis flags): the script PUBLISHes to a channel nobody listens to.
import { pathToFileURL } from 'node:url'
import { resolve } from 'node:path'
import { createClient } from 'redis'
import { parseArgs } from './lib/args.mjs'
import { cpuSeconds, loadavg, root, waitForQuiet } from './lib/proc.mjs'
import { startRedis } from './lib/servers.mjs'
import { stamp, writeResult } from './lib/report.mjs'

const DEFAULTS = { a: '', b: 'dist', bursts: [1, 4, 16, 64], ops: 20000, projects: 50, payload: 64, noWait: false }

/** INFO commandstats: calls and µs per command. */
async function commandStats (client) {
  const stats = new Map()
  for (const m of (await client.info('commandstats')).matchAll(/^cmdstat_([a-z|]+):calls=(\d+),usec=(\d+)/gm)) {
    stats.set(m[1], { calls: Number(m[2]), usec: Number(m[3]) })
  }
  return stats
}

function delta (before, after, name, field) {
  return (after.get(name)?.[field] ?? 0) - (before.get(name)?.[field] ?? 0)
}

async function run (o) {
  if (o.a === '') throw new Error('--a: the dist folder of the build to compare with (e.g. /tmp/flow-before/dist)')
  const builds = { A: resolve(o.a), B: resolve(root, o.b) }
  const logs = {}
  for (const [v, dir] of Object.entries(builds)) logs[v] = (await import(pathToFileURL(`${dir}/adapters/redis/operation-log.js`).href)).createRedisOperationLog
  const redis = await startRedis('append-burst')
  const client = createClient({ url: redis.url })
  client.on('error', () => {})
  await client.connect()
  const data = { m: 1, k: 2, ph: 1, t: 1_700_000_000_000.5, pad: 'x'.repeat(o.payload) }
  const runs = []
  try {
    for (const k of o.bursts) {
      for (const v of ['A', 'B', 'B', 'A']) {
        const log = logs[v]({ client, keyPrefix: `burst${v}${k}x${runs.length}`, publishOrigin: 'bench' })
        const s0 = await commandStats(client)
        const c0 = cpuSeconds(redis.proc.pid)
        const w0 = performance.now()
        let n = 0
        while (n < o.ops) {
          const project = `p${(n / k) % o.projects}`
          const burst = []
          for (let i = 0; i < k; i++) burst.push(log.append({ project, id: `o${n + i}`, userId: 'u', sessionId: 's', data, ts: Date.now() }))
          n += k
          await Promise.all(burst)
        }
        const wall = performance.now() - w0
        const cpu = cpuSeconds(redis.proc.pid) - c0
        const s1 = await commandStats(client)
        const calls = delta(s0, s1, 'evalsha', 'calls') + delta(s0, s1, 'eval', 'calls')
        const usec = delta(s0, s1, 'evalsha', 'usec') + delta(s0, s1, 'eval', 'usec')
        const r = { k, build: v, ops: n, redisCpuUsPerOp: (cpu * 1e6) / n, scriptUsPerOp: usec / n, callsPerOp: calls / n, wallUsPerOp: (wall * 1000) / n }
        runs.push(r)
        process.stderr.write(`[append-burst] k=${k} ${v}: redis CPU ${r.redisCpuUsPerOp.toFixed(1)} µs/op, scripts ${r.scriptUsPerOp.toFixed(1)} µs/op, ${r.callsPerOp.toFixed(3)} calls/op, wall ${r.wallUsPerOp.toFixed(1)} µs/op\n`)
        await log.close()
      }
    }
  } finally {
    await client.quit().catch(() => {})
    await redis.proc.stop()
  }
  return runs
}

function table (runs, bursts) {
  const mean = (k, v, f) => { const r = runs.filter((x) => x.k === k && x.build === v); return r.reduce((s, x) => s + x[f], 0) / r.length }
  const lines = [
    '| burst (ops per turn) | Redis CPU µs/op A | B | B/A | script µs/op A | B | B/A | calls/op B | wall µs/op B/A |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |'
  ]
  for (const k of bursts) {
    const f = (x) => x.toFixed(1)
    lines.push(`| ${k} | ${f(mean(k, 'A', 'redisCpuUsPerOp'))} | ${f(mean(k, 'B', 'redisCpuUsPerOp'))} | ${(mean(k, 'B', 'redisCpuUsPerOp') / mean(k, 'A', 'redisCpuUsPerOp')).toFixed(2)} | ` +
      `${f(mean(k, 'A', 'scriptUsPerOp'))} | ${f(mean(k, 'B', 'scriptUsPerOp'))} | ${(mean(k, 'B', 'scriptUsPerOp') / mean(k, 'A', 'scriptUsPerOp')).toFixed(2)} | ` +
      `${mean(k, 'B', 'callsPerOp').toFixed(3)} | ${(mean(k, 'B', 'wallUsPerOp') / mean(k, 'A', 'wallUsPerOp')).toFixed(2)} |`)
  }
  return lines.join('\n')
}

async function main () {
  const o = parseArgs(DEFAULTS)
  const gate = o.noWait ? { quiet: null, load: loadavg() } : await waitForQuiet()
  const runs = await run(o)
  const file = writeResult(`append-burst-${stamp()}`, { kind: 'append-burst', options: o, quiet: gate, runs })
  process.stdout.write(`\n${table(runs, o.bursts)}\n\nresults: ${file}\n`)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => { process.stderr.write(`${err.stack}\n`); process.exit(1) })
}
