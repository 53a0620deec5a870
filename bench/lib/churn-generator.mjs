// The churn benches' generator, main-thread side: splits the clients over
// worker threads (churn-worker.mjs), runs phases and merges what the workers
// saw: deliveries (lost, duplicates, order) and the comebacks' timings.
import { Worker } from 'node:worker_threads'
import { Histogram } from './hist.mjs'

const WORKER = new URL('./churn-worker.mjs', import.meta.url)

export class ChurnGenerator {
  /**
   * @param {object} o
   * @param {string} o.target flow | socketio
   * @param {{index:number, project:string, member:number, url:string, urls:string[]}[]} o.clients indexes
   *   0..n-1, members of a project consecutive; `url` for the first connection, `urls` where it reconnects
   *   (one picked at random per attempt)
   * @param {number} o.members members per project
   */
  constructor ({ target, clients, members, payloadBytes = 64, workers = 2 }) {
    this.workers = []
    const transmittedBuffer = new SharedArrayBuffer(4 * clients.length)
    for (let w = 0; w < workers; w++) {
      const share = clients.filter((_, i) => i % workers === w)
      const worker = new Worker(WORKER, { workerData: { target, clients: share, members, payloadBytes, transmittedBuffer } })
      worker.on('error', (err) => { process.stderr.write(`[bench] churn worker ${w} failed: ${err.stack}\n`) })
      this.workers.push(worker)
    }
  }

  #ask (worker, message, evt, timeoutMs) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { cleanup(); reject(new Error(`worker did not answer ${message.cmd} in ${timeoutMs} ms`)) }, timeoutMs)
      const onMessage = (m) => {
        if (m.evt === 'error') { cleanup(); reject(new Error(m.message)) } else if (m.evt === evt) { cleanup(); resolve(m) }
      }
      const onExit = (code) => { cleanup(); reject(new Error(`worker exited (${code}) during ${message.cmd}`)) }
      const cleanup = () => { clearTimeout(timer); worker.off('message', onMessage); worker.off('exit', onExit) }
      worker.on('message', onMessage)
      worker.on('exit', onExit)
      worker.postMessage(message)
    })
  }

  async connect ({ perSecond = 1000, concurrency = 100, timeoutMs = 300_000 } = {}) {
    const n = this.workers.length
    const replies = await Promise.all(this.workers.map((w) =>
      this.#ask(w, { cmd: 'connect', perSecond: perSecond / n, concurrency }, 'connected', timeoutMs)))
    const reasons = {}
    for (const r of replies) for (const [k, v] of Object.entries(r.reasons)) reasons[k] = (reasons[k] ?? 0) + v
    return {
      connected: replies.reduce((s, r) => s + r.connected, 0),
      failed: replies.reduce((s, r) => s + r.failed, 0),
      retried: replies.reduce((s, r) => s + r.retried, 0),
      reasons,
      ms: Math.max(...replies.map((r) => r.ms))
    }
  }

  /** How many clients are connected and joined right now. */
  async status () {
    const replies = await Promise.all(this.workers.map((w) => this.#ask(w, { cmd: 'status' }, 'status', 10_000)))
    return { ready: replies.reduce((s, r) => s + r.ready, 0), clients: replies.reduce((s, r) => s + r.clients, 0) }
  }

  /**
   * One phase: `rate` ops/s per client for `seconds` from `startDelayMs` from
   * now; `drops` ({ intervalMs, offlineMs }) has this generator drop every
   * client's connection now and then; then a drain of at most `drainMs`
   * until every client is back, caught up and acknowledged.
   */
  async phase ({ phase, rate, seconds, drops = null, drainMs = 30_000, quietMs = 500, startDelayMs = 300, serverLossDelay }) {
    const startAt = performance.timeOrigin + performance.now() + startDelayMs
    const timeoutMs = startDelayMs + seconds * 1000 + drainMs + 60_000
    const replies = await Promise.all(this.workers.map((w) =>
      this.#ask(w, { cmd: 'phase', phase, rate, startAt, seconds, drainMs, quietMs, drops, serverLossDelay }, 'phase', timeoutMs)))
    return mergeChurn(replies.map((r) => r.result), seconds)
  }

  async close () {
    await Promise.all(this.workers.map(async (w) => {
      await this.#ask(w, { cmd: 'close' }, 'closed', 10_000).catch(() => {})
      await w.terminate()
    }))
  }
}

/** A histogram's summary with its p95 too (the rolling deploy's target). */
function withP95 (h) {
  const s = h.summary()
  return { ...s, p95: s.n === 0 ? null : Math.round(h.quantile(0.95) * 1000) / 1000 }
}

const addCounts = (into, from) => { for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v }

/** Adds up the workers' results; every client is a receiver of its project's other members' ops. */
export function mergeChurn (results, seconds) {
  const h = () => new Histogram()
  const hist = { latency: h(), ack: h(), lag: h(), connect: h(), first: h(), caught: h(), outage: h(), missed: h() }
  const sentByProject = new Map()
  const receivers = []
  const errors = {}
  const serverCloses = {}
  const how = {}
  let sent = 0; let delivered = 0; let acked = 0; let unacked = 0; let queued = 0; let resent = 0; let notReady = 0
  let duplicates = 0; let fifoViolations = 0; let orderViolations = 0; let stray = 0; let resets = 0
  let episodes = 0; let open = 0; let drops = 0; let retries = 0
  const socketio = { recovered: 0, refused: 0 }
  for (const r of results) {
    for (const k of ['latency', 'ack', 'lag']) hist[k].add(Histogram.fromMessage(r[k]))
    for (const k of ['connect', 'first', 'caught', 'outage', 'missed']) hist[k].add(Histogram.fromMessage(r.episodes[k]))
    for (let i = 0; i < r.projects.length; i++) {
      const p = r.projects[i]
      sentByProject.set(p, (sentByProject.get(p) ?? 0) + r.sent[i])
      sent += r.sent[i]
      delivered += r.unique[i]
      receivers.push({ project: p, sent: r.sent[i] })
    }
    acked += r.acked; unacked += r.unacked; queued += r.queued; resent += r.resent; notReady += r.notReady
    duplicates += r.duplicates; fifoViolations += r.fifoViolations; orderViolations += r.orderViolations
    stray += r.stray; resets += r.resets
    addCounts(errors, r.errors)
    episodes += r.episodes.count; open += r.episodes.open; drops += r.episodes.drops; retries += r.episodes.retries
    addCounts(serverCloses, r.episodes.serverCloses)
    addCounts(how, r.episodes.how)
    socketio.recovered += r.episodes.socketio.recovered
    socketio.refused += r.episodes.socketio.refused
  }
  let expected = 0
  for (const rc of receivers) expected += sentByProject.get(rc.project) - rc.sent
  const lost = Math.max(0, expected - delivered)
  const missed = hist.missed.summary()
  const scale = (x) => (x === null || x === undefined ? x : Math.round(x * 1000))
  return {
    seconds,
    drainMs: Math.max(...results.map((r) => r.drainMs)),
    sent,
    acked,
    unacked,
    queued,
    resent,
    expected,
    delivered,
    deliveredPercent: expected === 0 ? 100 : (100 * delivered) / expected,
    deliveredPerSecond: delivered / seconds,
    lost,
    duplicates,
    orderViolations,
    fifoViolations,
    stray,
    resets,
    errors,
    notReady,
    latency: hist.latency.summary(),
    ack: hist.ack.summary(),
    lag: hist.lag.summary(),
    episodes: {
      count: episodes,
      open,
      drops,
      retries,
      serverCloses,
      how,
      socketio,
      connect: hist.connect.summary(),
      firstMissed: hist.first.summary(),
      caughtUp: withP95(hist.caught),
      outOfSync: withP95(hist.outage),
      missedOps: { n: missed.n, mean: scale(missed.mean), p50: scale(missed.p50), p99: scale(missed.p99), max: scale(missed.max) }
    }
  }
}
