// A generator worker thread for the churn benches (jitter, rolling deploy):
// like worker.mjs (open-loop senders, per-receiver checks through the same
// Tracker), but its clients come back after losing their connection, and it
// times each comeback.
//
// A client loses its connection either because this worker drops it (jitter:
// `drops` in the phase message: each client at a random moment every ~
// intervalMs, the TCP socket destroyed, offline for offlineMs) or because the
// server closed it (a drain: rolling deploy). Then it reconnects, to a random
// one of its URLs, retrying every 250 ms, and resumes (see churn-client.mjs).
//
// An *episode* runs from the loss to the moment the client is caught up:
//   lostAt    the socket went away
//   t0        the first reconnect attempt (the network is back)
//   readyAt   joined again (Flow's `joined`, Socket.IO's CONNECT answer or room join)
//   firstAt   the first op received after t0 that was sent before t0 (a missed op)
//   caughtAt  every op the project's other members had put on the wire before t0 has arrived
// "Put on the wire" is read from a SharedArrayBuffer every worker writes: per
// client, how many ops of the phase it has transmitted (counters 0..n-1), so
// a receiver knows at t0 how many ops of each sender it must have. An episode
// that ends in a fresh session (Socket.IO could not recover) never catches up
// if anything was missed: it is counted open at the end.
//
// Messages from the main thread: connect, phase, close (like worker.mjs).
import { parentPort, workerData } from 'node:worker_threads'
import { createChurnClient } from './churn-client.mjs'
import { Histogram } from './hist.mjs'
import { Tracker } from './tracker.mjs'

const { target, clients: specs, members, payloadBytes, transmittedBuffer } = workerData
const transmitted = new Int32Array(transmittedBuffer)
const PAD = 'x'.repeat(payloadBytes)
const wallNow = () => performance.timeOrigin + performance.now()
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const pick = (list) => list[Math.floor(Math.random() * list.length)]

let tracker = new Tracker(-1, specs.length, members)
/** The current phase's episode figures (replaced at each phase). */
let stats = newStats()
let closing = false
/** Milliseconds before a client the server disconnected tries again (uniform in [0, this)). */
let serverLossDelayMs = 500
const clients = specs.map((spec, slot) => {
  const c = createChurnClient(target, spec, hooks())
  c.slot = slot
  c.base = spec.index - spec.member
  c.url = spec.url
  c.urls = spec.urls
  c.episode = null
  return c
})

function newStats () {
  return {
    episodes: 0,
    drops: 0,
    serverCloses: {},
    retries: 0,
    how: { resumed: 0, fresh: 0, first: 0 },
    connect: new Histogram(), // t0 -> ready
    first: new Histogram(), // t0 -> first missed op
    caught: new Histogram(), // t0 -> caught up
    outage: new Histogram(), // lostAt -> caught up (time out of sync)
    missed: new Histogram() // ops missed per episode (sent before t0, not received before the loss), as a count
  }
}

function hooks () {
  return {
    delivery (client, data, seq) {
      const t = tracker
      const slot = client.slot
      const before = t.unique[slot]
      const now = wallNow()
      t.receive(slot, data, seq, now)
      const ep = client.episode
      if (ep === null || ep.t0 === 0 || t.unique[slot] === before) return
      if (ep.firstAt === 0 && data.t < ep.t0) {
        ep.firstAt = now
        stats.first.record(now - ep.t0)
      }
      if (ep.caughtAt === 0 && ep.short.has(data.m) && t.next[slot * members + data.m] >= ep.need[data.m]) {
        ep.short.delete(data.m)
        if (ep.short.size === 0) caughtUp(client, ep, now)
      }
    },
    ack (client, id) {
      const data = client.unacked.get(id)
      if (data === undefined) return
      client.acked(id)
      if (data.ph !== tracker.phase) return
      tracker.acked++
      tracker.ack.record(wallNow() - data.t)
    },
    reset (client, seq) { tracker.reset(client.slot, seq) },
    error (_client, code) { tracker.errors[code] = (tracker.errors[code] ?? 0) + 1 },
    transmitted (client, data) { if (data.ph === tracker.phase) Atomics.store(transmitted, client.index, data.k + 1) },
    ready (client, how) {
      stats.how[how] = (stats.how[how] ?? 0) + 1
      const ep = client.episode
      if (ep !== null && ep.readyAt === 0) {
        ep.readyAt = wallNow()
        ep.how = how
        stats.connect.record(ep.readyAt - ep.t0)
      }
    },
    lost (client, code) {
      if (closing) return
      const now = wallNow()
      const ours = code === 'dropped'
      if (ours) stats.drops++
      else stats.serverCloses[code] = (stats.serverCloses[code] ?? 0) + 1
      // A loss before the previous episode caught up continues that episode's outage.
      if (client.episode === null || client.episode.caughtAt !== 0) {
        stats.episodes++
        client.episode = { lostAt: now, t0: 0, readyAt: 0, firstAt: 0, caughtAt: 0, how: null, need: null, short: null }
      }
      const delay = ours ? client.offlineMs : Math.random() * serverLossDelayMs
      setTimeout(() => { void reconnect(client) }, delay)
    }
  }
}

function caughtUp (client, ep, now) {
  ep.caughtAt = now
  stats.caught.record(now - ep.t0)
  stats.outage.record(now - ep.lostAt)
}

/** Reconnects until ready: the network is back at the first attempt (t0), where the ops to catch up are counted. */
async function reconnect (client) {
  const ep = client.episode
  if (ep.t0 === 0) {
    ep.t0 = wallNow()
    const t = tracker
    ep.need = new Int32Array(members)
    ep.short = new Set()
    let missed = 0
    for (let m = 0; m < members; m++) {
      if (m === client.member) continue
      const need = Atomics.load(transmitted, client.base + m)
      ep.need[m] = need
      const have = t.next[client.slot * members + m]
      if (have < need) { ep.short.add(m); missed += need - have }
    }
    stats.missed.record(missed / 1000) // the histogram takes ms: store the count as "ms" / 1000 to keep it exact below 1,024
    if (ep.short.size === 0) caughtUp(client, ep, ep.t0)
  }
  for (let attempt = 0; !closing; attempt++) {
    try {
      await client.connect(pick(client.urls))
      return
    } catch {
      if (closing) return
      stats.retries++
      await sleep(Math.min(2000, 250 * 2 ** Math.min(attempt, 3)))
    }
  }
}

/** Opens every client on its first URL: at most `perSecond` starts a second and `concurrency` at once, with retries. */
async function connectAll ({ perSecond, concurrency, retries = 5 }) {
  const started = performance.now()
  let inFlight = 0
  let failed = 0
  let retried = 0
  const reasons = {}
  const done = []
  for (let i = 0; i < clients.length; i++) {
    const due = started + (i * 1000) / perSecond
    while (performance.now() < due || inFlight >= concurrency) await sleep(Math.max(1, Math.min(5, due - performance.now())))
    inFlight++
    const client = clients[i]
    done.push((async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          await client.connect(client.url)
          return
        } catch (err) {
          const reason = String(err.message ?? err).slice(0, 60)
          reasons[reason] = (reasons[reason] ?? 0) + 1
          if (attempt >= retries) { failed++; return }
          retried++
          await sleep(200 * (attempt + 1))
        }
      }
    })().finally(() => { inFlight-- }))
  }
  await Promise.all(done)
  return { connected: clients.filter((c) => c.ready).length, failed, retried, reasons, ms: performance.now() - started }
}

/** Every client sends at fixed times (offset_i + n / rate) whether connected or not: offline, its ops wait in its queue. */
async function sendOnSchedule (t, { phase, rate, startAt, seconds }) {
  if (!(rate > 0)) { await sleep(Math.max(0, startAt + seconds * 1000 - wallNow())); return }
  const period = 1000 / rate
  const offsets = clients.map(() => Math.random() * period)
  const order = clients.map((_, i) => i).sort((a, b) => offsets[a] - offsets[b])
  const counters = new Int32Array(clients.length)
  const t0 = startAt - performance.timeOrigin
  const end = t0 + seconds * 1000
  let cycle = 0
  let pos = 0
  await new Promise((resolve) => {
    const tick = () => {
      const now = performance.now()
      let due = t0 + cycle * period + offsets[order[pos]]
      while (due <= now && due < end) {
        const client = clients[order[pos]]
        const k = counters[client.slot]++
        const data = { m: client.member, k, ph: phase, t: wallNow(), pad: PAD }
        t.sent[client.slot]++
        if (client.send(`c${client.index}-${phase}-${k}`, data)) Atomics.store(transmitted, client.index, k + 1)
        t.lag.record(now - due)
        if (++pos === order.length) { pos = 0; cycle++ }
        due = t0 + cycle * period + offsets[order[pos]]
      }
      if (due >= end) { resolve(); return }
      setTimeout(tick, Math.max(0, Math.floor(due - performance.now())))
    }
    setTimeout(tick, Math.max(0, t0 - performance.now()))
  })
}

/** Jitter: each client dropped at a random moment, then every intervalMs × U(0.5, 1.5), until the phase ends. */
function scheduleDrops ({ intervalMs, offlineMs }, startAt, seconds) {
  const end = startAt + seconds * 1000
  const timers = []
  for (const client of clients) {
    client.offlineMs = offlineMs
    let at = startAt + Math.random() * intervalMs
    const arm = () => {
      if (at >= end) return
      timers.push(setTimeout(() => {
        if (client.ready) client.drop()
        at += intervalMs * (0.5 + Math.random())
        arm()
      }, Math.max(0, at - wallNow())))
    }
    arm()
  }
  return () => { for (const t of timers) clearTimeout(t) }
}

function settled (t) {
  for (const c of clients) {
    if (!c.ready || c.unacked.size > 0 || c.queue.length > 0) return false
    if (c.episode !== null && c.episode.caughtAt === 0) return false
  }
  return true
}

async function runPhase ({ phase, rate, startAt, seconds, drainMs, quietMs, drops, serverLossDelay }) {
  const t = new Tracker(phase, specs.length, members)
  tracker = t
  stats = newStats()
  if (serverLossDelay !== undefined) serverLossDelayMs = serverLossDelay
  for (const c of clients) Atomics.store(transmitted, c.index, 0)
  const stopDrops = drops === null ? () => {} : scheduleDrops(drops, startAt, seconds)
  await sendOnSchedule(t, { phase, rate, startAt, seconds })
  stopDrops()
  const sendEnd = performance.now()
  const deadline = sendEnd + drainMs
  while (performance.now() < deadline) {
    const quiet = wallNow() - Math.max(t.lastDeliveryAt, startAt + seconds * 1000) >= quietMs
    if (quiet && settled(t)) break
    await sleep(50)
  }
  let open = 0
  let notReady = 0
  let unacked = 0
  let queued = 0
  let resent = 0
  const sio = { recovered: 0, refused: 0 }
  for (const c of clients) {
    if (c.episode !== null && c.episode.caughtAt === 0) open++
    if (!c.ready) notReady++
    unacked += c.unacked.size
    queued += c.queue.length
    resent += c.resent + (c.retried ?? 0)
    c.resent = 0
    if (c.retried !== undefined) c.retried = 0
    sio.recovered += c.recovered ?? 0
    sio.refused += c.refused ?? 0
    if (c.recovered !== undefined) { c.recovered = 0; c.refused = 0 }
  }
  return {
    phase,
    drainMs: performance.now() - sendEnd,
    projects: specs.map((s) => s.project),
    sent: t.sent,
    unique: t.unique,
    acked: t.acked,
    unacked,
    queued,
    resent,
    notReady,
    duplicates: t.duplicates,
    fifoViolations: t.fifoViolations,
    orderViolations: t.orderViolations,
    stray: t.stray,
    resets: t.resets,
    errors: t.errors,
    latency: t.latency.toMessage(),
    ack: t.ack.toMessage(),
    lag: t.lag.toMessage(),
    episodes: {
      count: stats.episodes,
      open,
      drops: stats.drops,
      serverCloses: stats.serverCloses,
      retries: stats.retries,
      how: stats.how,
      socketio: sio,
      connect: stats.connect.toMessage(),
      first: stats.first.toMessage(),
      caught: stats.caught.toMessage(),
      outage: stats.outage.toMessage(),
      missed: stats.missed.toMessage()
    }
  }
}

parentPort.on('message', (msg) => {
  const reply = (evt, body) => { parentPort.postMessage({ evt, ...body }) }
  const fail = (err) => { reply('error', { message: err.stack ?? String(err) }) }
  switch (msg.cmd) {
    case 'connect':
      connectAll(msg).then((r) => reply('connected', r), fail)
      return
    case 'phase':
      runPhase(msg).then((r) => { parentPort.postMessage({ evt: 'phase', result: r }) }, fail)
      return
    case 'status': {
      let ready = 0
      for (const c of clients) if (c.ready) ready++
      reply('status', { ready, clients: clients.length })
      return
    }
    case 'close':
      closing = true
      for (const c of clients) c.close()
      setTimeout(() => reply('closed', {}), 100)
  }
})
