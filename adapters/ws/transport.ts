/**
 * The WebSocket transport: adapts a `ws` socket to the hub's Transport.
 *
 * This is the only module that touches private parts of `ws` 8 and of Node's
 * http server (the underscore properties below); nothing else may, and a
 * lint rule keeps it so. test/adapters/ws-transport.test.ts pins down their
 * shape and fails naming the internal that changed after an upgrade of `ws`,
 * `@fastify/websocket` or Node: without it the direct path would silently
 * fall back to `ws.send` (slower), and the release would keep the upgrade's
 * objects (more memory per connection) or throw.
 *
 * - `WebSocket#_socket` (net.Socket) and `WebSocket#_sender` with `_queue`
 *   (array) and `_state` (number, 0 when idle): prebuilt frames are written
 *   straight to the TCP socket while ws has nothing queued ({@link directSocket}).
 * - `net.Socket#_httpMessage` with `detachSocket`: the ServerResponse
 *   @fastify/websocket leaves on an upgraded socket ({@link releaseUpgrade}).
 */
import type { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { WebSocket } from 'ws'
import type { SharedFrame, Transport } from '../../lib/hub/transport.js'

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
export interface Direct {
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
export function directSocket (socket: WebSocket): Direct | null {
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

/**
 * Adapts a `ws` socket to the hub's Transport. On the direct path (see
 * {@link directSocket}) a shared frame is encoded once ({@link textFrame})
 * and its bytes written to each member's TCP socket, corked for the turn;
 * strings, and every frame on a socket without the direct path, go through
 * `socket.send`.
 */
export class WsTransport implements Transport {
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

  /** Ends this turn's cork: the frames written since leave together. */
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

/** An upgraded TCP socket, with the response Node's http server ties to it (internal). */
type UpgradedSocket = Socket & { _httpMessage?: ServerResponse | null }

/**
 * Lets the upgrade's HTTP objects go (about 2.8 KB per connection), for a
 * socket accepted by an @fastify/websocket that Flow registered itself.
 * @fastify/websocket leaves its ServerResponse on the TCP socket `tcp` (which
 * holds the request, the reply and their loggers) and an 'error' listener on
 * `socket` that closes over request and reply: the response is detached and
 * every 'error' listener removed. The caller must add its own 'error'
 * listener at once (log, terminate), or an error would throw.
 */
export function releaseUpgrade (socket: WebSocket, tcp: Socket): void {
  const upgraded = tcp as UpgradedSocket
  upgraded._httpMessage?.detachSocket(upgraded)
  socket.removeAllListeners('error')
}
