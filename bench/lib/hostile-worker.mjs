// The hostile tenant, in a worker thread of its own: it reads tens of MB/s,
// which must not share a thread with the samplers or the generator's
// clients. One user ("hostile"), several lanes at once until told to stop:
//
//   writer   one WebSocket joined to its P big projects, sending ops of
//            `opBytes` at `writes`/s round robin (at most `writesInFlight`
//            unacked): history at the byte bound, memory-mode RSS (3)
//   reads    GET /projects/:p/ops?since=0&limit=1000 at `reads`/s, every
//            other one on a project that does not exist (reads must not
//            create keys): the one big read (1), Redis growth (2)
//   posts    POST /projects/<new project>/ops at `posts`/s, a new project
//            each time: the per-identity cap and the HTTP rate limit (2)
//   joins    a fresh connection joining a big project with since: 0 at
//            `joins`/s, reading the replay to the head it was told (1)
//   syncers  `syncers` connections, each joined to one big project, sending
//            sync since: 0 again as soon as the last one is `synced` (5)
//
// Lanes on a rate run on a fixed schedule (open loop) and skip a turn,
// counted, while too many of their requests are in flight. The HTTP lanes
// and the joins spread over the instances. Op frames are never parsed (only
// their size is counted, and a replay's seq is read from the frame's head).
//
// Messages from the main thread: start, stop. Replies: started, stopped
// (with the counters; see hostile-client.mjs).
import { request as httpRequest } from 'node:http'
import { parentPort, workerData } from 'node:worker_threads'
import WebSocket from 'ws'

// A worker thread of the generator, or (by default) a process of its own at a low priority: see hostile-client.mjs.
const o = parentPort === null ? JSON.parse(process.env.FLOW_HOSTILE_OPTIONS) : workerData
const port = parentPort ?? {
  postMessage: (m) => { process.send(m) },
  on: (event, listener) => { process.on(event, listener) }
}
// From an address of its own, as a client on another machine: without authentication (the bench's
// servers) Flow's per-identity limits key on the address, and the members connect from 127.0.0.1.
const WS_OPTIONS = { perMessageDeflate: false, handshakeTimeout: 10_000, localAddress: o.localAddress }
const USER = 'hostile'
const bigProject = (i) => `${o.tag}-big-${i % o.projects}`
const portOf = (i) => o.ports[i % o.ports.length]
const PAD = 'x'.repeat(o.opBytes)
const POST_BODY = JSON.stringify({ data: { pad: 'x'.repeat(o.postBytes) } })

let stopping = false
const stopController = new AbortController()
const stopped = new Promise((resolve) => { stopController.signal.addEventListener('abort', resolve, { once: true }) })
const sockets = new Set()

/** Waits `ms`, or less when the hostile is told to stop. */
function pause (ms) {
  if (stopping) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms)
    function done () { clearTimeout(timer); stopController.signal.removeEventListener('abort', done); resolve() }
    stopController.signal.addEventListener('abort', done, { once: true })
  })
}

const count = (map, key, n = 1) => { map[key] = (map[key] ?? 0) + n }

/** An error's short name for the counters. */
function reason (err) {
  const cause = err?.cause?.code ?? err?.code
  return String(cause ?? err?.message ?? err).slice(0, 60)
}

/**
 * Calls `action(k)` `rate` times a second on a fixed schedule until stopped;
 * a turn that finds `max` calls in flight is skipped (counted).
 */
async function paced (rate, max, counters, action) {
  if (!(rate > 0)) return
  const period = 1000 / rate
  const t0 = performance.now()
  let inFlight = 0
  for (let k = 0; !stopping; k++) {
    const wait = t0 + k * period - performance.now()
    if (wait > 0) await pause(wait)
    if (stopping) break
    if (inFlight >= max) { counters.skipped++; continue }
    inFlight++
    counters.attempted++
    action(k).catch((err) => {
      if (stopping) counters.cut++
      else if (err.refused !== true) count(counters.errors, reason(err))
    }).finally(() => { inFlight-- })
  }
}

// ---- HTTP lanes -------------------------------------------------------------

const lanes = {
  writer: { attempted: 0, skipped: 0, acked: 0, bytesSent: 0, bytesRead: 0, connects: 0, closes: {}, refused: {}, codes: {}, errors: {} },
  reads: { attempted: 0, skipped: 0, cut: 0, status: {}, bytesRead: 0, ops: 0, pages: 0, maxPageBytes: 0, maxPageOps: 0, resets: 0, errors: {} },
  ghostReads: { attempted: 0, skipped: 0, cut: 0, status: {}, bytesRead: 0, ops: 0, errors: {} },
  posts: { attempted: 0, skipped: 0, cut: 0, status: {}, httpLimited: 0, creationCapped: 0, budgetLimited: 0, shed: 0, bytesSent: 0, bytesRead: 0, errors: {} },
  joins: { attempted: 0, skipped: 0, cut: 0, joined: 0, replayed: 0, resets: 0, ops: 0, bytesRead: 0, replayMsMax: 0, replayMsSum: 0, refused: {}, closes: {}, codes: {}, errors: {} },
  syncs: { connections: 0, connects: 0, syncs: 0, resets: 0, ops: 0, bytesRead: 0, syncMsMax: 0, syncMsSum: 0, refused: {}, closes: {}, codes: {}, errors: {} }
}

/** An HTTP request from the hostile's address; resolves its status and body. */
function request (url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers, localAddress: o.localAddress, signal: stopController.signal }, (res) => {
      const chunks = []
      res.on('data', (chunk) => { chunks.push(chunk) })
      res.on('end', () => { resolve({ status: res.statusCode, body: Buffer.concat(chunks) }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** A GET of one page of history from the start (of a big project, or of one that does not exist); counts the page's size and ops. */
async function readHistory (k, ghost) {
  const c = ghost ? lanes.ghostReads : lanes.reads
  const project = ghost ? `${o.tag}-ghost-${k}` : bigProject(k)
  const res = await request(`http://127.0.0.1:${portOf(k)}/projects/${project}/ops?since=0&limit=1000`)
  const body = res.body
  count(c.status, res.status)
  c.bytesRead += body.length
  if (res.status !== 200) return
  const page = JSON.parse(body)
  c.ops += page.ops.length
  if (!ghost) {
    c.pages++
    if (page.reset === true) c.resets++
    c.maxPageBytes = Math.max(c.maxPageBytes, body.length)
    c.maxPageOps = Math.max(c.maxPageOps, page.ops.length)
  }
}

/** A POST to a project that does not exist yet: each creates one, unless refused. */
async function postNewProject (k) {
  const c = lanes.posts
  c.bytesSent += POST_BODY.length
  const res = await request(`http://127.0.0.1:${portOf(k)}/projects/${o.tag}-new-${k}/ops`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: POST_BODY
  })
  const body = res.body
  c.bytesRead += body.length
  count(c.status, res.status)
  if (res.status === 429) {
    // Three refusals share 429 (docs/protocol.md): the HTTP rate limit, the new-project cap, back-pressure.
    const message = String(JSON.parse(body).message ?? '')
    if (message.startsWith('too many new projects')) c.creationCapped++
    else if (message.startsWith('rate limit exceeded')) c.httpLimited++
    else if (message.startsWith('over FLOW_IDENTITY')) c.budgetLimited++
    else c.shed++
  }
}

// ---- WebSocket lanes --------------------------------------------------------

/**
 * Opens a socket as the hostile user; resolves once open, rejects when the
 * upgrade is refused (counted in `c.refused` by status) or fails.
 */
function openSocket (port, c, onMessage, onClose) {
  return new Promise((resolve, reject) => {
    if (stopping) { reject(new Error('stopping')); return }
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?userId=${USER}`, WS_OPTIONS)
    sockets.add(ws)
    let open = false
    ws.on('unexpected-response', (_req, res) => {
      count(c.refused, res.statusCode)
      res.resume()
      ws.terminate()
      reject(Object.assign(new Error(`upgrade answered ${res.statusCode}`), { refused: true }))
    })
    ws.on('error', (err) => { if (!open) reject(err) })
    ws.on('open', () => { open = true; resolve(ws) })
    ws.on('message', (raw) => { onMessage(raw) })
    ws.on('close', (code) => {
      sockets.delete(ws)
      if (open) {
        // Closed by the server (or the network): not by us when done, nor by the stop.
        if (!stopping && ws.closedByUs !== true) count(c.closes, code)
        onClose?.(code)
      }
      if (!open) reject(new Error(`closed ${code} before opening`))
    })
  })
}

/** A small frame parsed, or null for an op frame (never parsed: only its size counts). */
function smallFrame (raw) {
  if (raw.length > 2048 || raw.subarray(0, 13).toString('latin1') === '{"type":"op",') return null
  try {
    return JSON.parse(raw)
  } catch {
    return { type: 'unparsed' }
  }
}

/** The seq of an op frame, read from its head (the server puts type then seq first). */
function opSeq (raw) {
  const m = /^\{"type":"op","seq":(\d+)/.exec(raw.subarray(0, 48).toString('latin1'))
  return m === null ? null : Number(m[1])
}

/** Joins `project` on `ws` and resolves the `joined` frame (rejects on an error frame, after 10 s, or on the stop). */
function join (ws, project, waiters) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { fail(new Error('join not answered in 10 s')) }, 10_000)
    const fail = (err) => { clearTimeout(timer); waiters.delete(project); reject(err) }
    waiters.set(project, { resolve: (m) => { clearTimeout(timer); resolve(m) }, reject: fail })
    stopped.then(() => { fail(new Error('stopping')) })
    ws.send(JSON.stringify({ type: 'join', project }))
  })
}

/** The writer: one connection joined to every big project, big ops at a fixed rate, at most writesInFlight unacked. */
async function writer () {
  if (!(o.writes > 0)) return
  const c = lanes.writer
  const pending = new Set()
  while (!stopping) {
    const waiters = new Map()
    let closed = false
    const onMessage = (raw) => {
      c.bytesRead += raw.length
      const m = smallFrame(raw)
      if (m === null) return
      if (m.type === 'ack') { if (pending.delete(m.id)) c.acked++ } else if (m.type === 'joined') {
        waiters.get(m.project)?.resolve(m)
        waiters.delete(m.project)
      } else if (m.type === 'error') {
        count(c.codes, m.code)
        if (m.project !== undefined && waiters.has(m.project)) { waiters.get(m.project).reject(new Error(`join: ${m.code}`)); waiters.delete(m.project) }
        if (typeof m.ref === 'string') pending.delete(m.ref)
      }
    }
    let ws
    try {
      ws = await openSocket(portOf(0), c, onMessage, () => {
        closed = true
        for (const w of waiters.values()) w.reject(new Error('closed while joining'))
      })
      c.connects++
      for (let p = 0; p < o.projects; p++) await join(ws, bigProject(p), waiters)
    } catch (err) {
      if (!stopping && err.refused !== true) count(c.errors, reason(err))
      if (ws !== undefined) { ws.closedByUs = true; ws.terminate() }
      await pause(500)
      continue
    }
    pending.clear()
    const period = 1000 / o.writes
    const t0 = performance.now()
    for (let k = 0; !stopping && !closed; k++) {
      const wait = t0 + k * period - performance.now()
      if (wait > 0) await pause(wait)
      if (stopping || closed) break
      if (pending.size >= o.writesInFlight) { c.skipped++; continue }
      const id = `w${c.attempted}`
      // The id doubles as the ref, so an error frame names the op it refused.
      const frame = `{"type":"op","project":"${bigProject(k)}","id":"${id}","ref":"${id}","data":{"pad":"${PAD}"}}`
      pending.add(id)
      c.attempted++
      c.bytesSent += frame.length
      ws.send(frame)
    }
    if (!stopping) await pause(200) // closed by the server: a hostile client comes back
  }
}

/** One fresh connection: join a big project with since 0, read the replay up to the head `joined` gave. */
async function joinFromZero (k) {
  const c = lanes.joins
  const project = bigProject(k)
  const started = performance.now()
  await new Promise((resolve, reject) => {
    let head = null
    let ws = null
    const finish = () => {
      clearTimeout(timer)
      if (ws !== null) { ws.closedByUs = true; ws.terminate() }
      resolve()
    }
    const timer = setTimeout(() => { count(c.errors, 'replay not done in 30 s'); finish() }, 30_000)
    const onMessage = (raw) => {
      c.bytesRead += raw.length
      const m = smallFrame(raw)
      if (m === null) {
        c.ops++
        const seq = opSeq(raw)
        if (head !== null && seq !== null && seq >= head) {
          c.replayed++
          const ms = performance.now() - started
          c.replayMsSum += ms
          c.replayMsMax = Math.max(c.replayMsMax, ms)
          finish()
        }
        return
      }
      if (m.type === 'joined') {
        c.joined++
        head = m.seq
        if (head === 0) { c.replayed++; finish() }
      } else if (m.type === 'reset') {
        c.resets++
        finish()
      } else if (m.type === 'error') {
        count(c.codes, m.code)
        finish()
      }
    }
    openSocket(portOf(k), c, onMessage, () => { finish() }).then((socket) => {
      ws = socket
      if (stopping) { finish(); return }
      ws.send(JSON.stringify({ type: 'join', project, since: 0 }))
    }, (err) => { clearTimeout(timer); reject(err) })
  })
}

/** One syncer: joined to a big project, `sync` since 0 again as soon as the last one ends; reconnects when closed. */
async function syncer (j) {
  const c = lanes.syncs
  const project = bigProject(j)
  while (!stopping) {
    let closed = false
    let current = null
    let wake = null
    const waiters = new Map()
    const onMessage = (raw) => {
      c.bytesRead += raw.length
      const m = smallFrame(raw)
      if (m === null) { c.ops++; return }
      if (m.type === 'joined') { waiters.get(m.project)?.resolve(m); waiters.delete(m.project) } else if (m.type === 'synced' || m.type === 'reset') {
        if (m.type === 'reset') c.resets++
        if (current !== null && m.type === 'synced') {
          c.syncs++
          const ms = performance.now() - current
          c.syncMsSum += ms
          c.syncMsMax = Math.max(c.syncMsMax, ms)
          current = null
          wake?.()
        }
      } else if (m.type === 'error') {
        count(c.codes, m.code)
        if (waiters.has(m.project)) { waiters.get(m.project).reject(new Error(`join: ${m.code}`)); waiters.delete(m.project) }
        if (current !== null && m.code === 'rate_limited') { current = null; wake?.() }
      }
    }
    let ws
    try {
      ws = await openSocket(portOf(j), c, onMessage, () => {
        closed = true
        wake?.()
        for (const w of waiters.values()) w.reject(new Error('closed while joining'))
      })
      c.connects++
      await join(ws, project, waiters)
    } catch (err) {
      if (!stopping && err.refused !== true) count(c.errors, reason(err))
      if (ws !== undefined) { ws.closedByUs = true; ws.terminate() }
      await pause(500)
      continue
    }
    while (!stopping && !closed) {
      current = performance.now()
      ws.send(`{"type":"sync","project":"${project}","since":0}`)
      await Promise.race([new Promise((resolve) => { wake = resolve }), stopped])
      wake = null
    }
    if (!stopping) await pause(200)
  }
}

async function run () {
  const started = performance.now()
  const elu0 = performance.eventLoopUtilization()
  const running = [
    writer(),
    paced(o.reads / 2, 4, lanes.reads, (k) => readHistory(k, false)),
    paced(o.reads / 2, 4, lanes.ghostReads, (k) => readHistory(k, true)),
    paced(o.posts, 64, lanes.posts, postNewProject),
    paced(o.joins, 8, lanes.joins, joinFromZero),
    ...Array.from({ length: o.syncers }, (_, j) => syncer(j))
  ]
  lanes.syncs.connections = o.syncers
  port.postMessage({ evt: 'started' })
  await Promise.all(running)
  const elu = performance.eventLoopUtilization(elu0)
  return { seconds: (performance.now() - started) / 1000, eventLoopUtilization: Math.round(elu.utilization * 1000) / 1000, lanes }
}

port.on('message', (msg) => {
  switch (msg.cmd) {
    case 'start':
      run().then((result) => { port.postMessage({ evt: 'stopped', result }) },
        (err) => { port.postMessage({ evt: 'error', message: err.stack ?? String(err) }) })
      return
    case 'stop':
      stopping = true
      stopController.abort()
      for (const ws of sockets) ws.terminate()
  }
})
