import fp from 'fastify-plugin'
import websocket from '@fastify/websocket'
import { createServer, ServerResponse, type IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { ProtocolError } from '../lib/errors.js'
import { DEFAULT_CLOCK_SKEW_SECONDS as CLOCK_SKEW_SECONDS } from '../lib/auth.js'
import type { RawData, WebSocket } from 'ws'
import type { SharedFrame, Transport } from '../lib/hub/transport.js'
import type { Connection } from '../lib/hub/connection.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** marks Flow's WebSocket route */
    flowSocket?: boolean
  }
}

/**
 * A server-to-client WebSocket text frame (final, unmasked, uncompressed):
 * header and payload in one buffer, so a shared frame is encoded once and
 * each member costs one socket write.
 */
export function textFrame (text: string): Buffer {
  const length = Buffer.byteLength(text)
  const header = length < 126 ? 2 : length < 65536 ? 4 : 10
  const frame = Buffer.allocUnsafe(header + length)
  frame[0] = 0x81
  if (header === 2) {
    frame[1] = length
  } else if (header === 4) {
    frame[1] = 126
    frame.writeUInt16BE(length, 2)
  } else {
    frame[1] = 127
    frame.writeUInt32BE(Math.floor(length / 2 ** 32), 2)
    frame.writeUInt32BE(length >>> 0, 6)
  }
  frame.write(text, header, 'utf8')
  return frame
}

/** ws 8's frame sender: it queues frames while it compresses or reads a Blob (`_state` not 0). */
interface WsSender { _queue: unknown[], _state: number }

/** The parts of a `ws` socket that writing prebuilt frames needs (ws 8 internals). */
interface WsInternals {
  _socket?: Socket
  _sender?: { _queue?: unknown, _state?: unknown }
}

/** The TCP socket under a `ws` socket, and its sender, for writing prebuilt frames. */
interface Direct {
  readonly tcp: Socket
  readonly sender: WsSender
}

/**
 * The TCP socket under `socket` and its sender, when prebuilt frames may be
 * written to it directly: no extension was negotiated (a host's
 * permessage-deflate would need each frame compressed) and ws has the
 * internals this relies on. Null otherwise: every frame then goes through
 * `socket.send`.
 */
function directSocket (socket: WebSocket): Direct | null {
  const { _socket: tcp, _sender: sender } = socket as unknown as WsInternals
  if (socket.extensions !== '' || tcp === undefined || sender === undefined) return null
  if (!Array.isArray(sender._queue) || typeof sender._state !== 'number') return null
  return { tcp, sender: sender as WsSender }
}

/**
 * Sockets written to since the last flush. Each is corked on its first write
 * and uncorked once the event loop has run what is ready (setImmediate): the
 * frames a member gets in one turn (ops from one Redis read, an op and an
 * ack) leave in one system call instead of one each.
 */
const corked: WsTransport[] = []

function flushCorked (): void {
  for (const transport of corked) transport.uncork()
  corked.length = 0
}

/** A socket's connection in the hub and what its listeners need. */
interface Link {
  readonly conn: Connection
  readonly ip: string
  readonly reqId: string
  expiry: NodeJS.Timeout | undefined
}

const LINK = Symbol('flow.link')
type FlowSocket = WebSocket & { [LINK]?: Link }

/** Adapts a `ws` socket to the hub's Transport. */
class WsTransport implements Transport {
  readonly #socket: WebSocket
  readonly #direct: Direct | null
  #corked = false
  /** unsent bytes when this turn's first frame was corked */
  #backlog = 0

  constructor (socket: WebSocket) {
    this.#socket = socket
    this.#direct = directSocket(socket)
  }

  send (frame: string | SharedFrame): void {
    // Only an open socket: after a close frame no data frame may follow.
    const direct = this.#socket.readyState === 1 ? this.#direct : null
    if (direct !== null && !this.#corked) {
      this.#corked = true
      this.#backlog = this.#socket.bufferedAmount
      direct.tcp.cork()
      if (corked.push(this) === 1) setImmediate(flushCorked)
    }
    // Prebuilt bytes go straight to the TCP socket unless ws has frames
    // queued (compressing, reading a Blob): then they wait their turn behind them.
    if (direct !== null && typeof frame !== 'string' && direct.sender._state === 0 && direct.sender._queue.length === 0) {
      direct.tcp.write(frame.encoded(textFrame))
    } else {
      this.#socket.send(typeof frame === 'string' ? frame : frame.text)
    }
  }

  uncork (): void {
    this.#corked = false
    this.#direct?.tcp.uncork()
  }

  /**
   * Unsent bytes, not counting the frames corked in this turn: those leave
   * together at its end. What a reader leaves unread shows in the next turn.
   */
  get bufferedAmount (): number { return this.#corked ? this.#backlog : this.#socket.bufferedAmount }
  ping (): void { this.#socket.ping() }
  close (code: number, reason: string): void { this.#socket.close(code, reason) }
  terminate (): void { this.#socket.terminate() }
}

function toBuffer (data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data
  if (Array.isArray(data)) return Buffer.concat(data)
  return Buffer.from(data)
}

/**
 * Hands @fastify/websocket the upgrades of Flow's own path only.
 *
 * Registered in Flow's encapsulated context, @fastify/websocket would route
 * every upgrade on the server through Fastify, while only its encapsulated
 * hooks destroy the socket after a plain HTTP answer: an upgrade to a host
 * route, or to a path nobody serves (404), would keep its socket open for
 * ever, and `app.close()` would wait for it for ever. So upgrades of other
 * paths are answered as plain HTTP by the app's router and then closed,
 * unless another 'upgrade' listener (the host's) is there to take them.
 */
function routeUpgrades (fastify: FastifyInstance, path: () => string): { source: ReturnType<typeof createServer>, stop: () => void } {
  // Never listens: it only re-emits the upgrades that are Flow's.
  const source = createServer()
  const onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const url = request.url ?? ''
    const end = url.indexOf('?')
    if ((end === -1 ? url : url.slice(0, end)) === path()) {
      source.emit('upgrade', request, socket, head)
      return
    }
    if (fastify.server.listenerCount('upgrade') > 1) return
    socket.on('error', () => { socket.destroy() })
    const response = new ServerResponse(request)
    response.assignSocket(socket as Socket)
    response.on('finish', () => { socket.destroy() })
    fastify.routing(request, response)
  }
  fastify.server.on('upgrade', onUpgrade)
  return { source, stop: () => { fastify.server.removeListener('upgrade', onUpgrade) } }
}

/** `GET /ws`: the WebSocket endpoint of protocol v1. */
async function websocketPlugin (fastify: FastifyInstance): Promise<void> {
  const { config } = fastify.flowConfig
  const hub = fastify.flowHub
  // Not request.log: the route logs at warn only (its URL may carry ?token=
  // and a host's serializers may not redact it), which would mute these.
  const connLog = fastify.log.child({ component: 'websocket' })
  // The endpoint's full path as the router has it (a prefix may end with '/').
  let path = ''
  fastify.addHook('onRoute', (route) => {
    if (route.config?.flowSocket === true) path = route.url
  })
  const ownServer = !fastify.hasDecorator('websocketServer')
  if (ownServer) {
    const upgrades = routeUpgrades(fastify, () => path)
    await fastify.register(websocket, {
      options: {
        // An event source only: @fastify/websocket runs ws with noServer.
        server: upgrades.source,
        maxPayload: config.maxPayloadBytes,
        // Invalid UTF-8 is answered with bad_request instead of a 1007 close.
        skipUTF8Validation: true,
        perMessageDeflate: false,
        // The hub tracks its connections; ws's own set would cost memory per socket.
        clientTracking: false
      },
      // Drain before the sockets are closed (the default closes them at once).
      preClose: async () => {
        upgrades.stop()
        await hub.drain()
        fastify.websocketServer.close()
      }
    })
  }

  const origins = config.allowedOrigins === undefined
    ? null
    : new Set(config.allowedOrigins.split(',').map((o) => o.trim().replace(/\/+$/, '')).filter((o) => o !== ''))
  const perIp = new Map<string, number>()

  /** Refuses, before the upgrade, a browser from another origin and an address over its connection limit. */
  const admit = async (request: FastifyRequest): Promise<void> => {
    const origin = request.headers.origin
    if (origins !== null && origin !== undefined && !origins.has(origin)) {
      throw new ProtocolError('forbidden', 'this origin may not connect')
    }
    if (config.maxConnectionsPerIp > 0 && (perIp.get(request.ip) ?? 0) >= config.maxConnectionsPerIp) {
      throw new ProtocolError('rate_limited', `at most ${config.maxConnectionsPerIp} connections per address`)
    }
  }

  // One set of listeners for every socket (per-connection closures cost
  // memory at 10,000 connections): each finds its state on the socket.
  function onMessage (this: FlowSocket, data: RawData, isBinary: boolean): void {
    const link = this[LINK]
    if (link !== undefined) hub.frame(link.conn, toBuffer(data), isBinary)
  }
  function onPong (this: FlowSocket): void {
    const link = this[LINK]
    if (link !== undefined) hub.pong(link.conn)
  }
  function onClose (this: FlowSocket, code: number): void {
    const link = this[LINK]
    if (link === undefined) return
    clearTimeout(link.expiry)
    const left = (perIp.get(link.ip) ?? 1) - 1
    if (left <= 0) perIp.delete(link.ip)
    else perIp.set(link.ip, left)
    hub.disconnect(link.conn)
    connLog.info({ reqId: link.reqId, conn: link.conn.id, code }, 'connection closed')
  }
  function onError (this: FlowSocket, err: Error): void {
    const link = this[LINK]
    connLog.info({ err, reqId: link?.reqId, conn: link?.conn.id }, 'socket error: dropping the connection')
    this.terminate()
  }
  function onExpiry (socket: FlowSocket): void {
    const link = socket[LINK]
    connLog.info({ reqId: link?.reqId, conn: link?.conn.id }, 'token expired: closing')
    socket.close(1008, 'token expired')
  }

  fastify.get('/ws', {
    websocket: true,
    config: { flowSocket: true },
    // No request log lines for upgrades: the URL may carry ?token=.
    logLevel: 'warn',
    preValidation: [admit, fastify.flowAuth.socket]
  }, (ws, request) => {
    const socket = ws as FlowSocket
    const identity = request.flowIdentity
    if (identity === null) {
      socket.close(1008, 'not authenticated')
      return
    }
    const ip = request.ip
    perIp.set(ip, (perIp.get(ip) ?? 0) + 1)
    if (ownServer) {
      // Let the upgrade's HTTP objects go (about 2.8 KB per connection):
      // @fastify/websocket leaves its ServerResponse on the TCP socket (which
      // holds the request, the reply and their loggers) and an 'error'
      // listener that closes over request and reply. Flow's own listener
      // below does what that one did (log, terminate).
      const tcp = request.raw.socket as Socket & { _httpMessage?: ServerResponse | null }
      tcp._httpMessage?.detachSocket(tcp)
      socket.removeAllListeners('error')
    } else {
      // The host's @fastify/websocket closes its clients at once when the app
      // closes (code 1005), before Flow's drain. Flow's sockets are Flow's to
      // close: with 1001, after draining. Its error handler stays the host's.
      fastify.websocketServer.clients.delete(socket)
    }
    // Listeners first, before any await: messages are not buffered for us.
    const transport = new WsTransport(socket)
    const link: Link = { conn: hub.connect(transport, identity), ip, reqId: request.id, expiry: undefined }
    socket[LINK] = link
    socket.on('message', onMessage)
    socket.on('pong', onPong)
    socket.on('close', onClose)
    if (ownServer) socket.on('error', onError)
    // A token that expires ends the connection (1008); the client reconnects
    // with a fresh token and `since`, and misses nothing.
    if (identity.expiresAt !== undefined) {
      // With the same clock skew the token was accepted with, so a token
      // accepted just past its exp is not closed at once (a reconnect loop).
      link.expiry = setTimeout(onExpiry, Math.min(Math.max(0, identity.expiresAt + CLOCK_SKEW_SECONDS * 1000 - Date.now()), 2 ** 31 - 1), socket)
      link.expiry.unref()
    }
    connLog.info({ reqId: request.id, conn: link.conn.id, userId: identity.userId }, 'connection opened')
  })
}

export default fp(websocketPlugin, { name: 'flow-websocket', fastify: '5.x', dependencies: ['flow-config', 'flow-hub', 'flow-auth'] })
