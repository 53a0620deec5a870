#!/usr/bin/env node
// Snapshots: how long a new joiner takes to be live on a long project, and
// how many bytes it is sent, (a) replaying the whole history (`join` with
// `since: 0`) against (b) taking state (`join` with `snapshot: true`: the
// host reducer's newest snapshot and the ops after it).
//
//   node bench/snapshot.mjs                        # memory adapters, 25,000 ops, a snapshot every 1,000
//   node bench/snapshot.mjs --redis                # all three Redis flags on (a redis-server of its own)
//   node bench/snapshot.mjs --both --repeat 11     # memory, then Redis, in one run
//   node bench/snapshot.mjs --repeat 21 --ops 25000 --every 1000 --no-wait
//
// One Flow instance (bench/snapshot-server.mjs: dist/server.js with a host
// reducer) and two projects: `full` with --ops ops (its newest snapshot is
// at the head: the tail is empty, the best case) and `tail` with --ops - 1
// (the newest snapshot --every ops behind minus one: the longest tail, the
// worst case). A writer fills both (ops of ~70 bytes: { cell, color, pad }),
// then the tool waits until the reducer's snapshots are stored. Then, for
// each repetition and project, a fresh connection runs (a) then (b) (the
// order alternates between repetitions: a b, b a, ...) and each is timed
// from sending `join` to "live": every op up to the head `joined` gave has
// arrived (for (b): the snapshot and the ops after it). Bytes are the
// WebSocket payloads received, `joined` included. Each result is checked:
// (a) gets ops 1..head in order; (b) gets one snapshot whose state counts
// its seq, then the ops after it in order, and its fold has head ops.
import { pathToFileURL } from 'node:url'
import WebSocket from 'ws'
import { parseArgs } from './lib/args.mjs'
import { freePort, loadavg, machineInfo, sleep, startProcess, waitForHttp, waitForQuiet } from './lib/proc.mjs'
import { num, ratio, stamp, table, writeResult } from './lib/report.mjs'
import { startRedis } from './lib/servers.mjs'

export const SNAPSHOT_DEFAULTS = {
  redis: false,
  ops: 25_000,
  every: 1000,
  repeat: 11,
  cells: 256,
  inFlight: 100, // the writer's ops in flight while filling
  timeout: 60 // seconds one join may take
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length === 0 ? null : s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

async function open (url) {
  const ws = new WebSocket(url, { perMessageDeflate: false })
  await new Promise((resolve, reject) => {
    ws.once('open', resolve)
    ws.once('error', reject)
  })
  return ws
}

/** Sends `count` ops to `project`, `inFlight` at a time; resolves when all are acked. */
async function fill (url, project, count, o) {
  const ws = await open(url)
  ws.send(JSON.stringify({ type: 'join', project, ref: 'j' }))
  let sent = 0
  let acked = 0
  await new Promise((resolve, reject) => {
    const send = () => {
      while (sent < count && sent - acked < o.inFlight) {
        const n = sent++
        ws.send(JSON.stringify({ type: 'op', project, id: `${project}-${n}`, data: { cell: n % o.cells, color: `#${(n * 2654435761 >>> 8).toString(16).padStart(6, '0').slice(0, 6)}`, pad: 'x'.repeat(16) } }))
      }
    }
    ws.on('message', (raw) => {
      const f = JSON.parse(raw.toString())
      if (f.type === 'joined') send()
      else if (f.type === 'ack') {
        acked++
        if (acked === count) resolve()
        else send()
      } else if (f.type === 'error') reject(new Error(`filling ${project}: ${JSON.stringify(f)}`))
    })
    ws.once('close', () => { if (acked < count) reject(new Error(`filling ${project}: closed after ${acked} acks`)) })
  })
  ws.close()
}

/**
 * One joiner on a fresh, already open connection: `replay` joins with
 * `since: 0`, `snapshot` with `snapshot: true`. Resolves with the time from
 * sending join to live, the bytes and frames received, and what was wrong.
 */
async function joiner (url, project, epoch, mode, timeoutMs) {
  const ws = await open(url)
  let bytes = 0
  let frames = 0
  let head = null
  let next = null // the next seq due
  let snapshot = null
  let ops = 0
  const problems = []
  const started = performance.now()
  const live = new Promise((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`${mode} join on ${project} not live after ${timeoutMs} ms (next ${next}, head ${head})`)) }, timeoutMs)
    ws.on('message', (raw) => {
      bytes += raw.length
      frames++
      const f = JSON.parse(raw.toString())
      if (f.type === 'joined') {
        head = f.seq
        if (mode === 'replay') next = 1
      } else if (f.type === 'snapshot') {
        if (snapshot !== null) problems.push('a second snapshot')
        snapshot = f
        if (f.state?.n !== f.seq) problems.push(`snapshot at ${f.seq} counts ${f.state?.n} ops`)
        next = f.seq + 1
      } else if (f.type === 'op') {
        if (f.seq !== next) problems.push(`op ${f.seq} where ${next} was due`)
        next = f.seq + 1
        ops++
      } else if (f.type === 'reset' || f.type === 'error') {
        problems.push(JSON.stringify(f))
      }
      if (head !== null && next !== null && next > head) {
        clearTimeout(timer)
        resolve(performance.now() - started)
      }
    })
  })
  const join = mode === 'replay' ? { since: 0, epoch } : { snapshot: true }
  ws.send(JSON.stringify({ type: 'join', project, ...join, ref: 'j' }))
  try {
    const ms = await live
    if (mode === 'snapshot' && snapshot === null) problems.push('no snapshot')
    if (mode === 'replay' && ops !== head) problems.push(`${ops} ops for a head of ${head}`)
    return { mode, project, ms, bytes, frames, ops, head, snapshotSeq: snapshot?.seq ?? null, problems }
  } finally {
    ws.terminate()
  }
}

/** Starts the instance (and Redis), fills the projects, measures; returns every sample and the medians. */
export async function runSnapshot (options, log = (m) => process.stderr.write(`${m}\n`)) {
  const o = { ...SNAPSHOT_DEFAULTS, ...options }
  const label = `flow ×1 (${o.redis ? 'Redis' : 'memory'})`
  log(`[snapshot] ${label}: projects of ${num(o.ops)} and ${num(o.ops - 1)} ops, a snapshot every ${num(o.every)}, ${o.repeat} repetitions`)
  const db = o.redis ? await startRedis('snapshot') : null
  const port = await freePort()
  const history = String(Math.max(o.ops + 5000, 10_000))
  const env = {
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    NODE_ENV: 'development',
    FLOW_INSTANCE_ID: 'snapshot-1',
    FLOW_SNAPSHOT_EVERY: String(o.every),
    // The history holds every op, so (a) is a full replay, not a reset.
    FLOW_HISTORY_MEMORY: history,
    FLOW_HISTORY_REDIS: history,
    FLOW_HISTORY_BYTES: String(256 * 1024 * 1024),
    // Filling is not what is measured: one writer may go fast.
    FLOW_RATE_LIMIT: '1000000',
    FLOW_RATE_BURST: '1000000',
    ...(db === null ? {} : { REDIS_URL: db.url, USE_REDIS_COLLABORATION: 'true', USE_REDIS_WEBSOCKETS: 'true', USE_REDIS_EVENT_ORDERING: 'true' })
  }
  const proc = startProcess(`snapshot-${o.redis ? 'redis' : 'memory'}-${process.pid}`, process.execPath, ['bench/snapshot-server.mjs'], env)
  const base = `http://127.0.0.1:${port}`
  const url = `ws://127.0.0.1:${port}/ws?userId=bench`
  const samples = []
  try {
    const deadline = Date.now() + 20_000
    while ((await waitForHttp(`${base}/health`, 'flow')).status !== 'ok') {
      if (Date.now() > deadline) throw new Error('flow stays degraded')
      await sleep(100)
    }
    const projects = [{ name: 'full', ops: o.ops }, { name: 'tail', ops: o.ops - 1 }]
    const fillStart = performance.now()
    for (const p of projects) await fill(url, p.name, p.ops, o)
    log(`[snapshot] filled ${num(o.ops * 2 - 1)} ops in ${((performance.now() - fillStart) / 1000).toFixed(1)} s`)
    for (const p of projects) {
      const want = Math.floor(p.ops / o.every) * o.every
      const until = Date.now() + 60_000
      for (;;) {
        const stored = await (await fetch(`${base}/bench/snapshot/${p.name}`)).json()
        if (stored?.seq === want) { p.epoch = stored.epoch; p.snapshotSeq = want; break }
        if (Date.now() > until) throw new Error(`no snapshot at ${want} for ${p.name}: ${JSON.stringify(stored)}`)
        await sleep(100)
      }
    }
    for (let r = 0; r < o.repeat; r++) {
      const order = r % 2 === 0 ? ['replay', 'snapshot'] : ['snapshot', 'replay']
      for (const p of projects) {
        for (const mode of order) {
          const s = await joiner(url, p.name, p.epoch, mode, o.timeout * 1000)
          samples.push({ rep: r + 1, ...s })
          if (s.problems.length > 0) log(`[snapshot] ${mode} on ${p.name}: ${s.problems.slice(0, 3).join('; ')}`)
        }
      }
    }
    if (!proc.alive) throw new Error(`the server exited; see ${proc.logFile}`)
  } finally {
    await proc.stop()
    if (db !== null) await db.proc.stop()
  }
  const rows = ['full', 'tail'].flatMap((project) => ['replay', 'snapshot'].map((mode) => {
    const mine = samples.filter((s) => s.project === project && s.mode === mode)
    return {
      project,
      mode,
      n: mine.length,
      head: mine[0]?.head ?? null,
      snapshotSeq: mine[0]?.snapshotSeq ?? null,
      ops: median(mine.map((s) => s.ops)),
      msMedian: median(mine.map((s) => s.ms)),
      msMin: Math.min(...mine.map((s) => s.ms)),
      msMax: Math.max(...mine.map((s) => s.ms)),
      bytesMedian: median(mine.map((s) => s.bytes)),
      problems: mine.reduce((sum, s) => sum + s.problems.length, 0)
    }
  }))
  return { kind: 'snapshot', label, mode: o.redis ? 'redis' : 'memory', options: o, samples, rows }
}

/** The result as a markdown table: medians per project and mode, and the ratios replay / snapshot. */
export function snapshotTable (results) {
  const out = []
  for (const res of results) {
    for (const project of ['full', 'tail']) {
      const replay = res.rows.find((x) => x.project === project && x.mode === 'replay')
      const snap = res.rows.find((x) => x.project === project && x.mode === 'snapshot')
      if (replay === undefined || snap === undefined) continue
      const tail = snap.ops
      out.push([
        `${res.label}, ${project === 'full' ? `snapshot at the head (tail ${num(tail)})` : `snapshot ${num(tail)} ops behind`}`,
        `${num(replay.msMedian, 1)} (${num(replay.msMin, 1)}–${num(replay.msMax, 1)})`,
        `${num(snap.msMedian, 1)} (${num(snap.msMin, 1)}–${num(snap.msMax, 1)})`,
        ratio(replay.msMedian, snap.msMedian, 1),
        num(replay.bytesMedian),
        num(snap.bytesMedian),
        ratio(replay.bytesMedian, snap.bytesMedian, 1),
        `${replay.n} + ${snap.n}`,
        replay.problems + snap.problems
      ])
    }
  }
  return table(['joiner on a project of head ops', '(a) replay since 0: ms to live, median (min–max)', '(b) snapshot + tail: ms', 'time (a)/(b)', '(a) bytes', '(b) bytes', 'bytes (a)/(b)', 'joins', 'problems'], out)
}

async function main () {
  const o = parseArgs({ ...SNAPSHOT_DEFAULTS, both: false, noWait: false, maxWait: 600 })
  const gate = o.noWait ? { quiet: null, load: loadavg() } : await waitForQuiet({ allowIdleSample: true, maxWaitMs: o.maxWait * 1000 })
  const modes = o.both ? [false, true] : [o.redis]
  const results = []
  for (const redis of modes) results.push(await runSnapshot({ ...o, redis }))
  const file = writeResult(`snapshot-${o.both ? 'both' : o.redis ? 'redis' : 'memory'}-${stamp()}`, { kind: 'snapshot-run', machine: machineInfo(), quiet: gate, results })
  process.stdout.write(`\n${snapshotTable(results)}\n\nresults: ${file}\n`)
  if (results.some((r) => r.rows.some((x) => x.problems > 0))) process.exitCode = 1
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => { process.stderr.write(`${err.stack}\n`); process.exit(1) })
}
