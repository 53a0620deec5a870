// The load generator's main-thread side: splits the clients over worker
// threads, connects them, runs phases and merges what the workers saw into
// one result (sent, delivered, lost, duplicates, order, latencies).
import { Worker } from 'node:worker_threads'
import { Histogram } from './hist.mjs'

const WORKER = new URL('./worker.mjs', import.meta.url)

export class Generator {
  /**
   * @param {object} o
   * @param {string} o.driver flow | relay | socketio | socketio-client
   * @param {{index:number, project:string, member:number, url:string}[]} o.clients
   * @param {number} o.members members per project (the largest member index + 1)
   */
  constructor ({ driver, clients, members, payloadBytes = 64, workers = 2 }) {
    this.clients = clients
    this.workers = []
    for (let w = 0; w < workers; w++) {
      const share = clients.filter((_, i) => i % workers === w)
      const worker = new Worker(WORKER, { workerData: { driver, clients: share, members, payloadBytes } })
      worker.on('error', (err) => { process.stderr.write(`[bench] generator worker ${w} failed: ${err.stack}\n`) })
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

  /** Connects and joins every client: `perSecond` in all, at most `concurrency` at once per worker. */
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

  /**
   * One phase at `rate` ops/s per client for `seconds`, starting `startDelayMs`
   * from now on every worker at the same wall time. Rate 0 is an idle phase:
   * nobody sends, resets and closes are still counted.
   */
  async phase ({ phase, rate, seconds, drainMs = 5000, quietMs = 500, startDelayMs = 300 }) {
    const startAt = performance.timeOrigin + performance.now() + startDelayMs
    const timeoutMs = startDelayMs + seconds * 1000 + drainMs + 30_000
    const replies = await Promise.all(this.workers.map((w) =>
      this.#ask(w, { cmd: 'phase', phase, rate, startAt, seconds, drainMs, quietMs }, 'phase', timeoutMs)))
    return merge(replies.map((r) => r.result), seconds)
  }

  async close () {
    await Promise.all(this.workers.map(async (w) => {
      await this.#ask(w, { cmd: 'close' }, 'closed', 10_000).catch(() => {})
      await w.terminate()
    }))
  }
}

/** Adds up the workers' results; expected deliveries are computed per project. */
function merge (results, seconds) {
  const latency = new Histogram()
  const ack = new Histogram()
  const lag = new Histogram()
  const sentByProject = new Map()
  const receivers = []
  const errors = {}
  let sent = 0; let delivered = 0; let acked = 0; let unacked = 0
  let duplicates = 0; let fifoViolations = 0; let orderViolations = 0; let stray = 0; let resets = 0; let closed = 0
  for (const r of results) {
    latency.add(Histogram.fromMessage(r.latency))
    ack.add(Histogram.fromMessage(r.ack))
    lag.add(Histogram.fromMessage(r.lag))
    for (let i = 0; i < r.indexes.length; i++) {
      const p = r.projects[i]
      sentByProject.set(p, (sentByProject.get(p) ?? 0) + r.sent[i])
      sent += r.sent[i]
      delivered += r.unique[i]
      if (r.member[i] === 1) receivers.push({ project: p, sent: r.sent[i], unique: r.unique[i] })
    }
    acked += r.acked
    unacked += r.unacked
    duplicates += r.duplicates
    fifoViolations += r.fifoViolations
    orderViolations += r.orderViolations
    stray += r.stray
    resets += r.resets
    closed += r.closed
    for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v
  }
  let expected = 0
  for (const rc of receivers) expected += sentByProject.get(rc.project) - rc.sent
  const lost = Math.max(0, expected - delivered)
  return {
    seconds,
    drainMs: Math.max(...results.map((r) => r.drainMs)),
    sent,
    acked,
    unacked,
    expected,
    delivered,
    deliveredPerSecond: delivered / seconds,
    lost,
    lostPercent: expected === 0 ? 0 : (100 * lost) / expected,
    duplicates,
    orderViolations,
    fifoViolations,
    stray,
    resets,
    closed,
    errors,
    latency: latency.summary(),
    ack: ack.summary(),
    lag: lag.summary()
  }
}
