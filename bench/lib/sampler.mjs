// A cluster over time, once a second: each instance's RSS (VmRSS from
// /proc) and its /health status, and redis-server's `used_memory` and key
// count (INFO memory, DBSIZE) and RSS. Each sample carries the phase the
// caller marked last, so a report can cut the series by phase.
import { createClient } from 'redis'
import { memory } from './proc.mjs'

/** What a /health answer says: ok, degraded, 503 (under pressure), http-<status>, timeout or down. */
async function healthOf (port, timeoutMs) {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(timeoutMs) })
    if (res.status === 503) { await res.arrayBuffer(); return '503' }
    if (!res.ok) { await res.arrayBuffer(); return `http-${res.status}` }
    const body = await res.json()
    return typeof body.status === 'string' ? body.status : 'unknown'
  } catch (err) {
    return err?.name === 'TimeoutError' ? 'timeout' : 'down'
  }
}

/** Resolves `promise`, or null after `ms` (the promise is left to settle on its own). */
function within (promise, ms) {
  let timer
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((resolve) => { timer = setTimeout(() => resolve(null), ms) })
  ])
}

export class Sampler {
  /**
   * @param {object} cluster from startCluster (its nodes, and its redis when it has one)
   * @param {object} [o]
   * @param {number} [o.intervalMs] time between samples
   */
  constructor (cluster, { intervalMs = 1000 } = {}) {
    this.cluster = cluster
    this.intervalMs = intervalMs
    this.samples = []
    this.marks = []
    this.phase = null
    this.t0 = null
    this.timer = null
    this.redis = null
    this.redisErrors = 0
    this.redisBusy = false
    this.ticks = new Set()
    this.stopped = null
  }

  /** Starts sampling (one sample at once, then every interval) in phase `phase`. */
  async start (phase) {
    if (this.cluster.redis !== null) {
      const client = createClient({ url: this.cluster.redis.url, socket: { connectTimeout: 2000, reconnectStrategy: () => 500 } })
      client.on('error', () => { this.redisErrors++ })
      await client.connect()
      this.redis = client
    }
    this.t0 = performance.now()
    this.mark(phase)
    this.#tick()
    this.timer = setInterval(() => { this.#tick() }, this.intervalMs)
  }

  /** Seconds since start. */
  now () {
    return (performance.now() - this.t0) / 1000
  }

  /** From now on, samples belong to `phase`. */
  mark (phase) {
    this.phase = phase
    this.marks.push({ phase, t: round3(this.now()) })
  }

  #tick () {
    const t = this.now()
    const phase = this.phase
    // /proc is read at once, so the time is exact; the network reads follow and may come late.
    const rss = this.cluster.nodes.map((n) => memory(n.proc.pid).rss)
    const redisRss = this.cluster.redis === null ? null : memory(this.cluster.redis.proc.pid).rss
    const timeoutMs = Math.max(100, this.intervalMs - 100)
    const tick = (async () => {
      const health = await Promise.all(this.cluster.nodes.map((n) => healthOf(n.port, timeoutMs)))
      return { health, redis: await this.#redisNow(timeoutMs) }
    })().then(({ health, redis }) => {
      this.samples.push({ t: round3(t), phase, rss, health, redisUsed: redis?.used ?? null, redisKeys: redis?.keys ?? null, redisRss })
    })
    this.ticks.add(tick)
    tick.finally(() => { this.ticks.delete(tick) })
  }

  /** used_memory and DBSIZE, or null (no Redis, a read still pending, or no answer in time). */
  async #redisNow (timeoutMs) {
    if (this.redis === null || this.redisBusy) return null
    this.redisBusy = true
    const read = (async () => {
      const [info, keys] = await Promise.all([this.redis.info('memory'), this.redis.dbSize()])
      return { used: Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? NaN), keys }
    })().catch(() => null).finally(() => { this.redisBusy = false })
    return await within(read, timeoutMs)
  }

  /** Keys in Redis whose name matches `pattern` (SCAN), or null without Redis. */
  async countKeys (pattern) {
    if (this.redis === null) return null
    let n = 0
    for await (const keys of this.redis.scanIterator({ MATCH: pattern, COUNT: 1000 })) n += keys.length
    return n
  }

  /** Stops sampling (once); resolves the series once the last sample is in. */
  stop () {
    this.stopped ??= (async () => {
      clearInterval(this.timer)
      if (this.t0 !== null) this.mark('end')
      await Promise.all([...this.ticks])
      this.samples.sort((a, b) => a.t - b.t)
      if (this.redis !== null) {
        try { await this.redis.close() } catch { this.redis.destroy() }
        this.redis = null
      }
      return { intervalMs: this.intervalMs, marks: this.marks, samples: this.samples, redisErrors: this.redisErrors }
    })()
    return this.stopped
  }
}

function round3 (x) {
  return Math.round(x * 1000) / 1000
}
