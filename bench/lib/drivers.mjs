// One small client per target protocol. Each opens a socket, joins one
// project, sends ops and calls back the worker's tracker:
//   events.delivery(client, data, seq)   an op of another member (seq: Flow only)
//   events.ack(client, id)               the server acknowledged our op `id`
//   events.error(client, code)           an error frame
//   events.reset(client, seq)            Flow's `reset`: a new epoch from seq on
//   events.closed(client, code)          the socket closed (after open)
//
// Drivers: flow (docs/protocol.md frames), relay (the same JSON shapes, no seq),
// socketio (the Engine.IO 4 / Socket.IO 5 wire protocol spoken over a plain
// `ws` socket, so the generator pays the same per-frame cost for every
// target) and socketio-client (the official socket.io-client, to cross-check).
import WebSocket from 'ws'
import { io } from 'socket.io-client'

const WS_OPTIONS = { perMessageDeflate: false, skipUTF8Validation: true, handshakeTimeout: 15_000 }

/** One generator client: which member of which project, and where its events go. */
class DriverClient {
  constructor (spec, events) {
    this.index = spec.index
    this.project = spec.project
    this.member = spec.member
    this.url = spec.url
    this.localAddress = spec.localAddress
    this.join = spec.join !== false
    this.events = events
    this.open = false
  }
}

/**
 * What the raw-`ws` drivers share: the socket, the join handshake (its
 * deadline, its failure) and the report of a close after it. A subclass
 * says what to send once the socket is open (`opened`) and reads each
 * message (`received`), calling `handshake.joined()` or `handshake.fail()`.
 */
class RawSocketClient extends DriverClient {
  constructor (spec, events) {
    super(spec, events)
    this.ws = null
  }

  /** Connects and joins; resolves when joined, rejects on failure (the socket is closed). */
  connect (timeoutMs = 15_000) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, this.localAddress === undefined ? WS_OPTIONS : { ...WS_OPTIONS, localAddress: this.localAddress })
      this.ws = ws
      let settled = false
      const handshake = {
        get settled () { return settled },
        fail: (err) => {
          if (settled) return
          settled = true
          clearTimeout(timer)
          ws.terminate()
          reject(err)
        },
        joined: () => {
          if (settled) return
          settled = true
          clearTimeout(timer)
          this.open = true
          resolve()
        }
      }
      const timer = setTimeout(() => handshake.fail(new Error('join timed out')), timeoutMs)
      ws.on('unexpected-response', (_req, res) => handshake.fail(new Error(`upgrade answered ${res.statusCode}`)))
      ws.on('error', (err) => handshake.fail(err))
      ws.on('open', () => { this.opened(ws, handshake) })
      ws.on('close', (code) => {
        if (!settled) handshake.fail(new Error(`closed ${code} before joining`))
        else if (this.open) { this.open = false; this.events.closed(this, code) }
      })
      ws.on('message', (raw) => { this.received(ws, raw, handshake) })
    })
  }

  /** The socket is open (nothing to do by default). */
  opened (_ws, _handshake) {}

  close () { this.open = false; this.ws?.terminate() }
}

/** Flow's frames (docs/protocol.md), and the relay's, which have the same shapes. */
/**
 * Join features a Flow client asks for (protocol 1.3, `FLOW_BENCH_JOIN_FEATURES=member_batch,member_page,resume`;
 * connections.mjs --features): unset, the join of a 1.2 client.
 */
const JOIN_FEATURES = (process.env.FLOW_BENCH_JOIN_FEATURES ?? '').split(',').filter((f) => f !== '')
const JOIN_EXTRA = JOIN_FEATURES.length === 0 ? '' : `,"features":${JSON.stringify(JOIN_FEATURES)}`

class JsonClient extends RawSocketClient {
  opened (ws, handshake) {
    if (!this.join) { handshake.joined(); return }
    ws.send(`{"type":"join","project":"${this.project}","ref":1${JOIN_EXTRA}}`)
  }

  received (_ws, raw, handshake) {
    const m = JSON.parse(raw)
    switch (m.type) {
      case 'op': this.events.delivery(this, m.data, m.seq); return
      case 'ack': this.events.ack(this, m.id); return
      case 'reset': this.events.reset(this, m.seq); return
      case 'joined': handshake.joined(); return
      case 'error':
        if (!handshake.settled) handshake.fail(new Error(`join failed: ${m.code}`))
        else this.events.error(this, m.code)
    }
  }

  send (id, data) {
    this.ws.send(`{"type":"op","project":"${this.project}","id":"${id}","data":${JSON.stringify(data)}}`)
  }
}

/** Socket.IO over a raw socket: Engine.IO packet type, then Socket.IO packet type. */
class SocketIoWireClient extends RawSocketClient {
  constructor (spec, events) {
    super(spec, events)
    this.nextAck = 1
  }

  received (ws, raw, handshake) {
    const s = raw.toString()
    switch (s.charCodeAt(0)) {
      case 0x30: // '0' Engine.IO open: connect to the main namespace
        ws.send('40')
        return
      case 0x32: // '2' ping (the server pings in Engine.IO 4): pong
        ws.send('3')
        return
      case 0x34: // '4' message: a Socket.IO packet
        break
      default: // '1' close, and anything else
        return
    }
    switch (s.charCodeAt(1)) {
      case 0x32: { // '2' EVENT: 42["op",{...}]
        const [name, op] = JSON.parse(s.slice(2))
        if (name === 'op') this.events.delivery(this, op.data, undefined)
        return
      }
      case 0x33: { // '3' ACK: 43<id>[{...}]
        const open = s.indexOf('[')
        const ackId = Number(s.slice(2, open))
        if (ackId === 0) {
          handshake.joined()
          return
        }
        const [reply] = JSON.parse(s.slice(open))
        this.events.ack(this, reply.id)
        return
      }
      case 0x30: // '0' CONNECT answered: join the room (ack id 0), or, connected only, done
        if (!this.join) { handshake.joined(); return }
        ws.send(`420["join","${this.project}"]`)
        return
      case 0x34: // '4' CONNECT_ERROR
        handshake.fail(new Error(`connect error: ${s.slice(2)}`))
    }
  }

  send (id, data) {
    this.ws.send(`42${this.nextAck++}["op",{"project":"${this.project}","id":"${id}","data":${JSON.stringify(data)}}]`)
  }
}

/** The official client, websocket transport only, no reconnection. */
class SocketIoOfficialClient extends DriverClient {
  constructor (spec, events) {
    super(spec, events)
    this.socket = null
  }

  connect (timeoutMs = 15_000) {
    return new Promise((resolve, reject) => {
      const socket = io(this.url, { transports: ['websocket'], reconnection: false, forceNew: true, timeout: timeoutMs })
      this.socket = socket
      let settled = false
      const fail = (err) => {
        if (settled) return
        settled = true
        socket.close()
        reject(err)
      }
      socket.on('connect_error', (err) => fail(err))
      socket.on('connect', () => {
        socket.timeout(timeoutMs).emit('join', this.project, (err) => {
          if (err) { fail(err); return }
          settled = true
          this.open = true
          resolve()
        })
      })
      socket.on('op', (op) => { this.events.delivery(this, op.data, undefined) })
      socket.on('disconnect', (reason) => {
        if (this.open) { this.open = false; this.events.closed(this, reason) }
      })
    })
  }

  send (id, data) {
    this.socket.emit('op', { project: this.project, id, data }, (reply) => { this.events.ack(this, reply.id) })
  }

  close () { this.open = false; this.socket?.close() }
}

export function createClient (driver, spec, events) {
  switch (driver) {
    case 'flow':
    case 'relay':
      return new JsonClient(spec, events)
    case 'socketio':
      return new SocketIoWireClient(spec, events)
    case 'socketio-client':
      return new SocketIoOfficialClient(spec, events)
    default:
      throw new Error(`unknown driver ${driver}`)
  }
}
