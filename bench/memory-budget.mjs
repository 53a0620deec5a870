#!/usr/bin/env node
// What a memory-mode instance holds when its history budget is full: one
// instance (npm start's setup: no Redis), 200 idle members in 10 rooms, and
// 4 writers sending ~63 KB ops round robin to 200 projects until 1.5× the
// budget has been written (the identity budgets raised for them: the point
// is the history budget, not the write rate). Reports the history the log
// holds, RSS and heap, for each FLOW_MEMORY_HISTORY_BYTES given, so the
// default can be sized against the 512 MB per instance floor.
//
//   node bench/memory-budget.mjs                          # 128 MiB (the default) and 256 MiB
//   node bench/memory-budget.mjs --budgets 64,128,256     # MiB
//
// Flow needs `npm run build` first.
import { pathToFileURL } from 'node:url'
import WebSocket from 'ws'
import { parseArgs } from './lib/args.mjs'
import { memory, sleep } from './lib/proc.mjs'
import { num, stamp, table, writeResult } from './lib/report.mjs'
import { startCluster } from './lib/servers.mjs'

export const MEMORY_BUDGET_DEFAULTS = {
  budgets: '128,256', // MiB, one instance each
  members: 200,
  projects: 200,
  writers: 4,
  opBytes: 63_000,
  inFlight: 200, // unacked ops at most, over all writers
  fill: 1.5 // write this many times the budget
}

const MiB = 2 ** 20

function open (url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false })
    ws.once('open', () => { resolve(ws) })
    ws.once('error', reject)
  })
}

async function runOne (o, budgetMiB) {
  const cluster = await startCluster({
    target: 'flow',
    name: `flow-memory-budget-${budgetMiB}`,
    env: {
      FLOW_MEMORY_HISTORY_BYTES: String(budgetMiB * MiB),
      FLOW_IDENTITY_WRITE_BYTES_PER_SECOND: String(2 ** 30),
      FLOW_PROJECTS_PER_MINUTE: '100000',
      FLOW_MAX_EVENT_LOOP_DELAY_MS: '0'
    }
  })
  const node = cluster.nodes[0]
  const base = `ws://127.0.0.1:${node.port}/ws`
  const sockets = []
  try {
    const before = memory(node.proc.pid)
    for (let i = 0; i < o.members; i++) {
      const ws = await open(`${base}?userId=m${i}`)
      ws.send(JSON.stringify({ type: 'join', project: `room-${i % 10}` }))
      ws.on('message', () => {})
      sockets.push(ws)
    }
    let acks = 0
    let errors = 0
    const writers = []
    for (let k = 0; k < o.writers; k++) {
      const ws = await open(`${base}?userId=w${k}`)
      ws.on('message', (d) => {
        const head = d.subarray(0, 16).toString('latin1')
        if (head.startsWith('{"type":"ack"')) acks++
        else if (head.startsWith('{"type":"error')) errors++
      })
      writers.push(ws)
      sockets.push(ws)
    }
    for (let p = 0; p < o.projects; p++) writers[p % o.writers].send(JSON.stringify({ type: 'join', project: `big-${p}` }))
    const pad = 'x'.repeat(o.opBytes)
    const target = budgetMiB * MiB * o.fill
    let sent = 0
    const started = Date.now()
    while (sent * o.opBytes < target) {
      for (let p = 0; p < o.projects && sent * o.opBytes < target; p++) {
        writers[p % o.writers].send(JSON.stringify({ type: 'op', project: `big-${p}`, data: pad }))
        sent++
      }
      while (sent - acks - errors > o.inFlight) await sleep(5)
    }
    while (acks + errors < sent) await sleep(20)
    await sleep(5000)
    // The kernel's high-water mark of the process's RSS: the peak, not a sample of it.
    const peakRss = memory(node.proc.pid).hwm
    const stats = await (await fetch(`http://127.0.0.1:${node.port}/ws/stats`)).json()
    return {
      budgetMiB,
      sentMiB: sent * o.opBytes / MiB,
      seconds: (Date.now() - started) / 1000,
      errors,
      historyMiB: stats.history.bytes / MiB,
      historyProjects: stats.history.projects,
      rssBeforeMiB: before.rss / MiB,
      rssMiB: stats.memory.rss / MiB,
      peakRssMiB: peakRss / MiB,
      heapUsedMiB: stats.memory.heapUsed / MiB
    }
  } finally {
    for (const ws of sockets) ws.terminate()
    await cluster.stop()
  }
}

export async function runMemoryBudget (options = {}) {
  const o = { ...MEMORY_BUDGET_DEFAULTS, ...options }
  const runs = []
  for (const b of String(o.budgets).split(',').map(Number)) {
    console.error(`[memory-budget] FLOW_MEMORY_HISTORY_BYTES ${b} MiB`)
    runs.push(await runOne(o, b))
  }
  return { kind: 'memory-budget', options: o, runs }
}

export function memoryBudgetMarkdown (r) {
  const o = r.options
  const rows = r.runs.map((x) => [`${num(x.budgetMiB)} MiB`, `${num(x.sentMiB)} MiB in ${num(x.seconds, 1)} s`, `${num(x.historyMiB, 1)} MiB (${num(x.historyProjects)} projects)`,
    num(x.rssBeforeMiB), num(x.rssMiB), num(x.peakRssMiB), num(x.heapUsedMiB), num(x.rssMiB / x.budgetMiB, 2), x.errors])
  return `One memory-mode instance, ${o.members} idle members, ${o.writers} writers filling ${o.projects} projects with ${num(o.opBytes)}-byte ops to ${o.fill}× the budget.\n\n` +
    table(['FLOW_MEMORY_HISTORY_BYTES', 'written', 'history held at the end', 'RSS before MiB', 'RSS at the end MiB', 'RSS peak MiB', 'heap used MiB', 'RSS / budget', 'errors'], rows)
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await runMemoryBudget(parseArgs(MEMORY_BUDGET_DEFAULTS))
  console.log(memoryBudgetMarkdown(result))
  writeResult(`memory-budget-${stamp()}`, result)
}
