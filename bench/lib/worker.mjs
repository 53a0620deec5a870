// A generator worker thread: holds its share of the clients, connects them
// ramped, and runs phases: every client sends `rate` ops/s on an open-loop
// schedule (fixed send times, whatever the replies do) with its send time in
// `data`, and checks, per receiver, every delivery: latency from the send
// time, duplicates and losses (by sender and op counter), order (Flow's seq
// per project) and per-sender FIFO.
//
// Messages from the main thread: connect, phase, close. Replies: connected,
// phase, closed (see generator.mjs).
import { parentPort, workerData } from 'node:worker_threads'
import { createClient } from './drivers.mjs'
import { Tracker } from './tracker.mjs'

const { driver, clients: specs, members, payloadBytes } = workerData
const PAD = 'x'.repeat(payloadBytes)
const wallNow = () => performance.timeOrigin + performance.now()
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

let tracker = new Tracker(-1, specs.length, members)
const clients = []

const events = {
  delivery (client, data, seq) { tracker.receive(client.slot, data, seq, wallNow()) },
  ack (client, id) {
    const t = tracker
    const sentAt = t.pendingAcks.get(id)
    if (sentAt === undefined) return
    t.pendingAcks.delete(id)
    t.acked++
    t.ack.record(wallNow() - sentAt)
  },
  reset (client, seq) { tracker.reset(client.slot, seq) },
  error (_client, code) {
    tracker.errors[code] = (tracker.errors[code] ?? 0) + 1
  },
  closed (_client, code) {
    tracker.closed++
    tracker.errors[`close_${code}`] = (tracker.errors[`close_${code}`] ?? 0) + 1
  }
}

/** Opens every client: at most `perSecond` starts a second and `concurrency` at once, with retries. */
async function connectAll ({ perSecond, concurrency, retries = 5 }) {
  const started = performance.now()
  let inFlight = 0
  let failed = 0
  let retried = 0
  const reasons = {}
  const done = []
  for (let i = 0; i < specs.length; i++) {
    const due = started + (i * 1000) / perSecond
    while (performance.now() < due || inFlight >= concurrency) await sleep(Math.max(1, Math.min(5, due - performance.now())))
    inFlight++
    const client = createClient(driver, specs[i], events)
    client.slot = i
    done.push((async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          await client.connect()
          clients.push(client)
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
  clients.sort((a, b) => a.slot - b.slot)
  return { connected: clients.length, failed, retried, reasons, ms: performance.now() - started }
}

/** Sends every client's ops at fixed times: client i at offset_i + n / rate, until the end. */
async function sendOnSchedule (t, senders, { phase, rate, startAt, seconds }) {
  if (senders.length === 0 || !(rate > 0)) {
    // Nobody sends (rate 0: an idle phase, the members only listen): wait out the phase.
    await sleep(Math.max(0, startAt + seconds * 1000 - wallNow()))
    return
  }
  const period = 1000 / rate
  const offsets = senders.map(() => Math.random() * period)
  const order = senders.map((_, i) => i).sort((a, b) => offsets[a] - offsets[b])
  const counters = new Int32Array(specs.length)
  const t0 = startAt - performance.timeOrigin
  const end = t0 + seconds * 1000
  let cycle = 0
  let pos = 0
  await new Promise((resolve) => {
    const tick = () => {
      const now = performance.now()
      let due = t0 + cycle * period + offsets[order[pos]]
      while (due <= now && due < end) {
        const client = senders[order[pos]]
        if (client.open) {
          const k = counters[client.slot]++
          const id = `c${client.index}-${phase}-${k}`
          const sentAt = wallNow()
          t.pendingAcks.set(id, sentAt)
          client.send(id, { m: client.member, k, ph: phase, t: sentAt, pad: PAD })
          t.sent[client.slot]++
          t.lag.record(now - due)
        }
        if (++pos === order.length) { pos = 0; cycle++ }
        due = t0 + cycle * period + offsets[order[pos]]
      }
      if (due >= end) { resolve(); return }
      setTimeout(tick, Math.max(0, Math.floor(due - performance.now())))
    }
    setTimeout(tick, Math.max(0, t0 - performance.now()))
  })
}

/**
 * One phase: every open client sends `rate` ops/s from `startAt` (wall ms)
 * for `seconds`, each at its own phase offset; then waits until every op is
 * acked and deliveries have been quiet for `quietMs` (at most `drainMs`).
 * At rate 0 nobody sends: the phase only counts what arrives (resets, closes).
 */
async function runPhase ({ phase, rate, startAt, seconds, drainMs, quietMs }) {
  const t = new Tracker(phase, specs.length, members)
  tracker = t
  await sendOnSchedule(t, clients.filter((c) => c.open), { phase, rate, startAt, seconds })
  const sendEnd = performance.now()
  const deadline = sendEnd + drainMs
  while (performance.now() < deadline) {
    const quiet = wallNow() - Math.max(t.lastDeliveryAt, startAt + seconds * 1000) >= quietMs
    if (t.pendingAcks.size === 0 && quiet) break
    await sleep(20)
  }
  // Members are the clients that joined: a receiver that closed during the phase counts its misses as lost.
  const member = new Uint8Array(specs.length)
  for (const c of clients) member[c.slot] = 1
  return {
    phase,
    drainMs: performance.now() - sendEnd,
    indexes: specs.map((s) => s.index),
    projects: specs.map((s) => s.project),
    member,
    sent: t.sent,
    unique: t.unique,
    acked: t.acked,
    unacked: t.pendingAcks.size,
    duplicates: t.duplicates,
    fifoViolations: t.fifoViolations,
    orderViolations: t.orderViolations,
    stray: t.stray,
    resets: t.resets,
    errors: t.errors,
    closed: t.closed,
    latency: t.latency.toMessage(),
    ack: t.ack.toMessage(),
    lag: t.lag.toMessage()
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
      runPhase(msg).then((r) => {
        const transfer = [r.latency.counts.buffer, r.ack.counts.buffer, r.lag.counts.buffer]
        parentPort.postMessage({ evt: 'phase', result: r }, transfer)
      }, fail)
      return
    case 'close':
      for (const c of clients) c.close()
      setTimeout(() => reply('closed', {}), 100)
  }
})
