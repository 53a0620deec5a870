// A client that survives its connection being dropped: the jitter and
// rolling-deploy benches' driver. It keeps what it needs to resume across
// connections and reports to the worker through `hooks`:
//
//   hooks.delivery(client, data, seq)   an op of another member (seq: Flow only)
//   hooks.ack(client, id)               the server acknowledged our op `id`
//   hooks.reset(client, seq)            Flow's `reset`
//   hooks.ready(client, how)            joined again: 'first', 'resumed' (Flow's join with since/epoch,
//                                       Socket.IO's recovered session) or 'fresh' (Socket.IO's
//                                       recovery refused: a new session, the room joined again)
//   hooks.lost(client, code)            the connection ended (dropped by us, or closed by the server)
//
// Protocols, over a raw `ws` socket (the same per-frame cost for both):
// - flow: docs/protocol.md. The first `join` has no `since`; every later one
//   carries `since` = the highest seq this client saw (ops of others, its own
//   ops in a replay, and its acks) and the `epoch` of its last `joined`, so the
//   server replays what it missed. Own ops in a replay only move that seq.
// - socketio: Engine.IO 4 / Socket.IO 5 with connection state recovery: the
//   CONNECT packet carries `{ pid, offset }` of the last session (pid from the
//   server's CONNECT answer, offset the last argument of the last event
//   received); the server answers with the same pid when it recovered the
//   session (rooms kept, the missed events follow), with a new one when not
//   (then the client joins its room again and what it missed is gone).
//
// Ops are sent by the worker through `send(id, data)`: while the client is
// not ready they wait in a queue, and every op not yet acknowledged is kept;
// once ready again, the unacknowledged ones are sent again (same id: Flow
// treats it as a retry; Socket.IO has no idempotency, so a resend of an op
// that was broadcast before the drop is a duplicate for its receivers), then
// the queue. `drop()` destroys the TCP socket: no close frame, no FIN
// handshake waited for, as a network drop looks to the client.
import WebSocket from 'ws'

const WS_OPTIONS = { perMessageDeflate: false, skipUTF8Validation: true, handshakeTimeout: 15_000 }

class ChurnClient {
  /**
   * @param {{index:number, project:string, member:number}} spec
   * @param {object} hooks see above
   */
  constructor (spec, hooks) {
    this.index = spec.index
    this.project = spec.project
    this.member = spec.member
    this.hooks = hooks
    this.ws = null
    /** offline | connecting | ready */
    this.state = 'offline'
    this.connects = 0
    /** op id -> frame data, sent and not acknowledged (in send order) */
    this.unacked = new Map()
    /** [id, data] scheduled while not ready */
    this.queue = []
    this.resent = 0
  }

  get ready () { return this.state === 'ready' }

  /**
   * Opens a connection to `url` and joins (or resumes). Resolves once ready;
   * rejects if the socket fails or closes first (the caller retries).
   */
  connect (url, timeoutMs = 15_000) {
    this.state = 'connecting'
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, WS_OPTIONS)
      this.ws = ws
      let settled = false
      const timer = setTimeout(() => finish(new Error('join timed out')), timeoutMs)
      const finish = (err, how) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        if (err !== undefined) {
          if (this.ws === ws) { this.ws = null; this.state = 'offline' }
          ws.terminate()
          reject(err)
          return
        }
        this.state = 'ready'
        this.connects++
        this.hooks.ready(this, how)
        this.#flush()
        resolve(how)
      }
      ws.on('unexpected-response', (_req, res) => finish(new Error(`upgrade answered ${res.statusCode}`)))
      ws.on('error', (err) => finish(err))
      ws.on('open', () => { this.opened(ws, finish) })
      ws.on('message', (raw) => { if (this.ws === ws) this.received(ws, raw, finish) })
      ws.on('close', (code) => {
        if (!settled) { finish(new Error(`closed ${code} before joining`)); return }
        if (this.ws !== ws) return
        this.ws = null
        this.state = 'offline'
        this.hooks.lost(this, code)
      })
    })
  }

  /** Destroys the TCP socket (a network drop: no close handshake). */
  drop () {
    const ws = this.ws
    if (ws === null) return
    this.ws = null
    this.state = 'offline'
    ws.terminate()
    this.hooks.lost(this, 'dropped')
  }

  /** Sends now when ready, else queues; the op is kept until acknowledged. */
  send (id, data) {
    if (this.state !== 'ready') { this.queue.push([id, data]); return false }
    this.unacked.set(id, data)
    this.transmit(id, data)
    return true
  }

  acked (id) { this.unacked.delete(id) }

  /** Ready again: unacknowledged ops first (a retry), then what waited. */
  #flush () {
    for (const [id, data] of this.unacked) { this.resent++; this.transmit(id, data) }
    const queued = this.queue
    this.queue = []
    for (const [id, data] of queued) {
      // Stamped when it goes on the wire: latency and "sent before the comeback" are about the network, not the queue.
      data.t = performance.timeOrigin + performance.now()
      this.unacked.set(id, data)
      this.transmit(id, data)
      this.hooks.transmitted?.(this, data)
    }
  }

  close () {
    const ws = this.ws
    this.ws = null
    this.state = 'offline'
    ws?.terminate()
  }
}

/** Flow: join with since/epoch on every connection after the first. */
export class FlowChurnClient extends ChurnClient {
  constructor (spec, hooks) {
    super(spec, hooks)
    this.userId = `u${spec.index}`
    this.retried = 0
    this.epoch = null
    this.seq = 0
    this.joins = 0
  }

  opened (ws) {
    const resume = this.epoch === null ? '' : `,"since":${this.seq},"epoch":${JSON.stringify(this.epoch)}`
    ws.send(`{"type":"join","project":"${this.project}"${resume},"ref":1}`)
  }

  received (_ws, raw, finish) {
    const m = JSON.parse(raw)
    switch (m.type) {
      case 'op':
        if (m.seq > this.seq) this.seq = m.seq
        // Our own op comes back only in a replay: it moves our position, it is not a delivery.
        if (m.userId !== this.userId) this.hooks.delivery(this, m.data, m.seq)
        return
      case 'ack':
        if (m.seq > this.seq) this.seq = m.seq
        this.hooks.ack(this, m.id)
        return
      case 'joined': {
        const first = this.epoch === null
        if (first) this.seq = m.seq
        this.epoch = m.epoch
        this.joins++
        finish(undefined, first ? 'first' : 'resumed')
        return
      }
      case 'reset':
        this.epoch = m.epoch
        this.seq = m.seq
        this.hooks.reset(this, m.seq)
        return
      case 'error':
        if (m.ref === 1) { finish(new Error(`join failed: ${m.code}`)); return }
        this.hooks.error?.(this, m.code)
        // An op shed under load (`rate_limited`, its id as ref): sent again a little later, as a client would.
        if (m.code === 'rate_limited' && typeof m.ref === 'string' && this.unacked.has(m.ref)) {
          const ws = this.ws
          setTimeout(() => {
            const data = this.unacked.get(m.ref)
            if (data !== undefined && this.ws === ws && this.ready) { this.retried++; this.transmit(m.ref, data) }
          }, 200 + Math.random() * 300)
        }
    }
  }

  transmit (id, data) {
    this.ws.send(`{"type":"op","project":"${this.project}","id":"${id}","ref":"${id}","data":${JSON.stringify(data)}}`)
  }
}

/** Socket.IO with connection state recovery (pid + offset in CONNECT). */
export class SocketIoChurnClient extends ChurnClient {
  constructor (spec, hooks) {
    super(spec, hooks)
    this.pid = null
    this.offset = null
    this.nextAck = 1
    this.recovered = 0
    this.refused = 0
  }

  opened () {}

  received (ws, raw, finish) {
    const s = raw.toString()
    switch (s.charCodeAt(0)) {
      case 0x30: // '0' Engine.IO open: CONNECT to the main namespace, with the last session when there is one
        ws.send(this.pid !== null && this.offset !== null ? `40${JSON.stringify({ pid: this.pid, offset: this.offset })}` : '40')
        return
      case 0x32: // '2' ping: pong
        ws.send('3')
        return
      case 0x34: // '4' message: a Socket.IO packet
        break
      default:
        return
    }
    switch (s.charCodeAt(1)) {
      case 0x32: { // '2' EVENT: 42["op",{...},"<offset>"]
        const args = JSON.parse(s.slice(2))
        if (args[0] !== 'op') return
        const last = args[args.length - 1]
        if (args.length > 2 && typeof last === 'string') this.offset = last
        this.hooks.delivery(this, args[1].data, undefined)
        return
      }
      case 0x33: { // '3' ACK: 43<id>[{...}]
        const open = s.indexOf('[')
        const ackId = Number(s.slice(2, open))
        if (ackId === 0) { finish(undefined, this.connects === 0 ? 'first' : 'fresh'); return }
        const [reply] = JSON.parse(s.slice(open))
        this.hooks.ack(this, reply.id)
        return
      }
      case 0x30: { // '0' CONNECT answered: {"sid","pid"}
        const body = s.length > 2 ? JSON.parse(s.slice(2)) : {}
        if (this.pid !== null && body.pid === this.pid) {
          this.recovered++
          finish(undefined, 'resumed')
          return
        }
        if (this.pid !== null) this.refused++
        this.pid = body.pid ?? null
        this.offset = null
        ws.send(`420["join","${this.project}"]`)
        return
      }
      case 0x34: // '4' CONNECT_ERROR
        finish(new Error(`connect error: ${s.slice(2)}`))
    }
  }

  transmit (id, data) {
    this.ws.send(`42${this.nextAck++}["op",{"project":"${this.project}","id":"${id}","data":${JSON.stringify(data)}}]`)
  }
}

export function createChurnClient (target, spec, hooks) {
  switch (target) {
    case 'flow': return new FlowChurnClient(spec, hooks)
    case 'socketio': return new SocketIoChurnClient(spec, hooks)
    default: throw new Error(`no churn client for target ${target}`)
  }
}
