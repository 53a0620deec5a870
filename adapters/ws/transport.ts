/**
 * The WebSocket transport: adapts a `ws` socket to the hub's Transport.
 *
 * This is the only module that touches private parts of `ws` 8 and of Node's
 * http server (the underscore properties below); nothing else may, and a
 * lint rule keeps it so. test/adapters/ws-transport.test.ts pins down their
 * shape and fails naming the internal that changed after an upgrade of `ws`,
 * `@fastify/websocket` or Node: without it the direct path would silently
 * fall back to `ws.send` (slower), the release would keep the upgrade's
 * objects (more memory per connection) or throw, and a refused frame would
 * drop the connection before its close code reached the client.
 *
 * - `WebSocket#_socket` (net.Socket) and `WebSocket#_sender` with `_queue`
 *   (array) and `_state` (number, 0 when idle): prebuilt frames are written
 *   straight to the TCP socket while ws has nothing queued ({@link directSocket}).
 * - the `status-code` symbol ws puts on the errors of its receiver: the close
 *   code ws has started the close handshake with ({@link closeCodeOf}).
 * - `net.Socket#_httpMessage` with `detachSocket`: the ServerResponse
 *   @fastify/websocket leaves on an upgraded socket ({@link releaseUpgrade}).
 */
import type { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { WebSocket } from 'ws'
import type { CloseOptions, SharedFrame, Transport } from '../../lib/hub/transport.js'

/**
 * Bytes a connection may have in its TCP socket's buffer (and ws's queue)
 * before further frames wait in the transport's own queue. 256 KiB: a turn's
 * burst of frames of the largest size (64 KiB ops by default, a replay page)
 * still leaves in one write, and a 'drain' refills the kernel with one write
 * of up to that much, few system calls per MiB for a fast reader. The kernel
 * buffers several MiB of its own, so more would buy no throughput; less in
 * Node's buffer is what the close frame of a slow consumer (sent ahead of
 * the transport's queue) still has to wait behind. Not less than the
 * socket's own high-water mark (16 KiB), so that 'drain' is always emitted.
 */
export const HIGH_WATER_BYTES = 256 * 1024

/** How long a peer has to answer the close handshake, counted from when the close frame went to the network. */
export const CLOSE_HANDSHAKE_MS = 2000

/**
 * How long a close may take at most: a peer that does not read never lets
 * its close frame reach the network, and is dropped after this.
 */
export const CLOSE_LIMIT_MS = 5000

const OPEN = 1
const CLOSED = 3
const EMPTY = Buffer.alloc(0)

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
 * The close code on an error of ws's receiver (a frame over `maxPayload`,
 * a protocol violation): ws has then started the close handshake with it,
 * stopped reading frames and discards what the peer still sends. Null for
 * any other error (the socket failed: drop it).
 */
export function closeCodeOf (err: unknown): number | null {
  if (typeof err !== 'object' || err === null) return null
  const key = Object.getOwnPropertySymbols(err).find((symbol) => symbol.description === 'status-code')
  const code = key === undefined ? undefined : (err as Record<symbol, unknown>)[key]
  return typeof code === 'number' ? code : null
}

/**
 * Corks the TCP sockets written to and uncorks them together: each transport
 * corks its socket on its first write and is uncorked at the flush, so the
 * frames a member gets meanwhile (ops from one Redis read, an op and an ack)
 * leave in one system call instead of one each. With a window of 0 the flush
 * comes once the event loop has run what is ready (setImmediate): one turn.
 * With a window of N ms it comes N ms after the first write: frames of
 * several turns share a write, at the price of up to N ms of latency
 * (`FLOW_FLUSH_WINDOW_MS`, for deployments that trade it for throughput).
 */
export class Flusher {
  readonly windowMs: number
  #corked: WsTransport[] = []
  readonly #flush = (): void => {
    const corked = this.#corked
    this.#corked = []
    for (const transport of corked) transport.uncork()
  }

  constructor (windowMs = 0) {
    if (!Number.isSafeInteger(windowMs) || windowMs < 0) throw new RangeError('windowMs must be an integer >= 0')
    this.windowMs = windowMs
  }

  /** `transport` wrote its first frame since the last flush. */
  add (transport: WsTransport): void {
    if (this.#corked.push(transport) !== 1) return
    if (this.windowMs === 0) setImmediate(this.#flush)
    else setTimeout(this.#flush, this.windowMs)
  }
}

/** The flush of every transport made without a flusher of its own: once per event-loop turn. */
const EVERY_TURN = new Flusher(0)

interface Waiter {
  readonly maxBuffered: number
  readonly resolve: () => void
}

/**
 * Adapts a `ws` socket to the hub's Transport. On the direct path (see
 * {@link directSocket}) a shared frame is encoded once ({@link textFrame})
 * and its bytes written to each member's TCP socket, corked for the turn;
 * strings, and every frame on a socket without the direct path, go through
 * `socket.send`.
 *
 * The transport owns the connection's backlog: it writes to the socket only
 * while the socket holds less than {@link HIGH_WATER_BYTES}; later frames
 * wait in its own queue, in order, and are written as the socket drains. So
 * a close frame can be sent ahead of them (a slow consumer), and a replay
 * can wait for the connection to drain ({@link whenDrained}).
 */
export class WsTransport implements Transport {
  readonly #socket: WebSocket
  /**
   * ws's sender when prebuilt frames may be written to `#tcp` directly (the
   * direct path, {@link directSocket}); null otherwise. Kept as two fields,
   * not a {@link Direct} object: one object less per connection.
   */
  readonly #sender: WsSender | null
  /** the TCP socket under the ws socket, direct path or not */
  readonly #tcp: Socket | null
  readonly #flusher: Flusher
  /** between this turn's (or window's) first send and the flush of the corked transports */
  #inTurn = false
  /** the TCP socket is corked for this turn */
  #corked = false
  /** unsent bytes when this turn's first frame was sent */
  #backlog = 0
  /** frames waiting for the socket to drain, oldest at `#head`; null when none */
  #queue: Array<string | SharedFrame | undefined> | null = null
  /** the byte size of each queued frame */
  #sizes: number[] | null = null
  #head = 0
  /** bytes in the queue */
  #queued = 0
  #waiters: Waiter[] | null = null
  /** a 'drain' listener is on the TCP socket */
  #drainArmed = false
  /** frames given to `socket.send` with a callback that has not come back */
  #pendingSends = 0
  /** an empty write is in the TCP socket, to learn when what is before it left */
  #probing = false
  #watchingClose = false
  /** close() or terminate() was called: no frame is taken any more */
  #closing = false
  /** a close waiting for the queue to be written first */
  #deferred: { readonly code: number, readonly reason: string } | null = null
  /** the ws socket emitted 'close' */
  #ended = false
  #timer: NodeJS.Timeout | undefined
  /** reading is paused until then (ms since the Unix epoch); 0 when reading */
  #pausedUntil = 0
  #resumeTimer: NodeJS.Timeout | undefined
  /** the callback of the frames given to ws.send, made on first use (most connections never need it) */
  #onSent: (() => void) | undefined

  /** `flusher`: when the frames written in a turn leave (default: at its end; see {@link Flusher}) */
  constructor (socket: WebSocket, flusher: Flusher = EVERY_TURN) {
    this.#socket = socket
    this.#flusher = flusher
    const direct = directSocket(socket)
    this.#sender = direct?.sender ?? null
    this.#tcp = direct?.tcp ?? (socket as unknown as WsInternals)._socket ?? null
  }

  send (frame: string | SharedFrame): void {
    // After a close frame no data frame may follow; a close waiting behind
    // the queue takes no new frame either.
    if (this.#closing || this.#socket.readyState !== OPEN) return
    if (!this.#inTurn) {
      this.#inTurn = true
      this.#backlog = this.#unsent()
      this.#flusher.add(this)
    }
    // Written now while the socket has room and nothing waits before it
    // (or, over the mark, when nothing would wake the queue up).
    if (this.#queue === null && (this.#socket.bufferedAmount < HIGH_WATER_BYTES || !this.#arm())) {
      if (this.#sender !== null && !this.#corked) {
        this.#corked = true
        this.#tcp?.cork()
      }
      this.#write(frame)
    } else {
      this.#enqueue(frame)
    }
  }

  /** Ends this turn's cork: the frames written since leave together. */
  uncork (): void {
    this.#inTurn = false
    if (this.#corked) {
      this.#corked = false
      this.#tcp?.uncork()
    }
  }

  /**
   * Unsent bytes, the transport's queue and the socket's buffer, not
   * counting the frames sent in this turn: those leave together at its end.
   * What a reader leaves unread shows in the next turn.
   */
  get bufferedAmount (): number { return this.#inTurn ? this.#backlog : this.#unsent() }

  async whenDrained (maxBuffered: number): Promise<void> {
    if (this.#closing || this.#ended || this.#socket.readyState === CLOSED || this.#unsent() <= maxBuffered) return
    await new Promise<void>((resolve) => {
      (this.#waiters ??= []).push({ maxBuffered, resolve })
      this.#watchClose()
      // Nothing to wake up on (bytes ws holds for someone else): the close settles it.
      this.#arm()
    })
  }

  ping (): void { this.#socket.ping() }

  pause (ms: number): void {
    if (this.#closing || this.#socket.readyState !== OPEN) return
    const until = Date.now() + ms
    if (until <= this.#pausedUntil) return
    this.#pausedUntil = until
    this.#socket.pause()
    clearTimeout(this.#resumeTimer)
    this.#resumeTimer = setTimeout(() => { this.#resume() }, ms).unref()
  }

  #resume (): void {
    if (this.#pausedUntil === 0) return
    this.#pausedUntil = 0
    clearTimeout(this.#resumeTimer)
    this.#socket.resume()
  }

  close (code: number, reason: string, options?: CloseOptions): void {
    const discard = options?.discardQueued === true
    if (this.#closing) {
      if (discard && this.#deferred !== null) this.#closeNow(this.#deferred.code, this.#deferred.reason)
      return
    }
    this.#closing = true
    // The client's close frame must be read for the handshake to complete.
    this.#resume()
    this.#watchClose()
    this.#timer = setTimeout(() => { this.#socket.terminate() }, CLOSE_LIMIT_MS).unref()
    this.#settle()
    if (discard || this.#queue === null) this.#closeNow(code, reason)
    else this.#deferred = { code, reason }
  }

  terminate (): void {
    this.#closing = true
    clearTimeout(this.#resumeTimer)
    this.#drop()
    clearTimeout(this.#timer)
    this.#settle()
    this.#socket.terminate()
  }

  /** Bytes not yet handed to the network: the queue, ws's queue and the TCP socket's buffer. */
  #unsent (): number { return this.#socket.bufferedAmount + this.#queued }

  /** Writes one frame now: prebuilt to the TCP socket when ws has nothing queued, else through ws. */
  #write (frame: string | SharedFrame): void {
    const sender = this.#sender
    if (sender !== null && sender._state === 0 && sender._queue.length === 0) {
      if (typeof frame === 'string') this.#socket.send(frame)
      else this.#tcp?.write(frame.encoded(textFrame))
      return
    }
    // ws queues it (it compresses, or reads a Blob): its callback says when it is written.
    this.#pendingSends++
    this.#socket.send(typeof frame === 'string' ? frame : frame.text, this.#onSent ??= () => {
      this.#pendingSends--
      this.#progress()
    })
  }

  #enqueue (frame: string | SharedFrame): void {
    const size = typeof frame !== 'string'
      ? (this.#sender !== null ? frame.encoded(textFrame).length : Buffer.byteLength(frame.text))
      : Buffer.byteLength(frame)
    if (this.#queue === null) {
      this.#queue = []
      this.#watchClose()
    }
    this.#queue.push(frame);
    (this.#sizes ??= []).push(size)
    this.#queued += size
  }

  #dequeue (): string | SharedFrame {
    const queue = this.#queue as Array<string | SharedFrame | undefined>
    const sizes = this.#sizes as number[]
    const head = this.#head
    const frame = queue[head] as string | SharedFrame
    this.#queued -= sizes[head] as number
    queue[head] = undefined
    this.#head = head + 1
    if (this.#head === queue.length) {
      this.#queue = null
      this.#sizes = null
      this.#head = 0
    } else if (this.#head >= 1024 && this.#head * 2 >= queue.length) {
      queue.splice(0, this.#head)
      sizes.splice(0, this.#head)
      this.#head = 0
    }
    return frame
  }

  /** Forgets the queue (and a close waiting behind it). */
  #drop (): void {
    this.#queue = null
    this.#sizes = null
    this.#head = 0
    this.#queued = 0
    this.#deferred = null
  }

  /**
   * Makes sure the transport hears when the socket's buffer goes down:
   * 'drain' (the socket's buffer is over its own mark), the callback of a
   * frame ws holds, or an empty write behind what the socket buffers. False
   * when there is nothing to hear of.
   */
  #arm (): boolean {
    if (this.#drainArmed || this.#pendingSends > 0 || this.#probing) return true
    const tcp = this.#tcp
    if (tcp === null || tcp.destroyed || tcp.writableEnded) return false
    this.#watchClose()
    if (tcp.writableNeedDrain) {
      this.#drainArmed = true
      tcp.once('drain', () => {
        this.#drainArmed = false
        this.#progress()
      })
      return true
    }
    if (tcp.writableLength > 0) {
      this.#probing = true
      tcp.write(EMPTY, () => {
        this.#probing = false
        this.#progress()
      })
      return true
    }
    return false
  }

  /** The socket's buffer went down: write what waits, tell who waits. */
  #progress (): void {
    if (this.#queue !== null) this.#pump()
    this.#settle()
  }

  /** Writes queued frames, in order, while the socket has room: one write for them all. */
  #pump (): void {
    if (this.#socket.readyState !== OPEN) {
      // Closing (ws answered the peer's close, or a close without the transport): nothing more goes.
      this.#drop()
      return
    }
    const tcp = this.#sender === null ? null : this.#tcp
    tcp?.cork()
    while (this.#queue !== null && (this.#socket.bufferedAmount < HIGH_WATER_BYTES || !this.#arm())) {
      this.#write(this.#dequeue())
    }
    tcp?.uncork()
    if (this.#queue === null && this.#deferred !== null) this.#closeNow(this.#deferred.code, this.#deferred.reason)
  }

  /** Resolves the waiters the socket's level lets go (all of them once the connection is closing). */
  #settle (): void {
    const waiters = this.#waiters
    if (waiters === null) return
    const all = this.#closing || this.#ended
    const unsent = this.#unsent()
    let left: Waiter[] | null = null
    for (const waiter of waiters) {
      if (all || unsent <= waiter.maxBuffered) waiter.resolve()
      else (left ??= []).push(waiter)
    }
    this.#waiters = left
    if (left !== null) this.#arm()
  }

  /** Sends the close frame now, ahead of the queue, and bounds the handshake. */
  #closeNow (code: number, reason: string): void {
    this.#drop()
    this.#socket.close(code, reason)
    const tcp = this.#tcp
    if (tcp === null || tcp.destroyed) return
    // The peer's time to answer counts once the close frame went to the
    // network: an empty write behind it says when (ws ends the socket
    // itself once the frame went, when the handshake is complete).
    const sent = (err?: Error | null): void => {
      if (err !== undefined && err !== null) return
      if (this.#ended) return
      clearTimeout(this.#timer)
      this.#timer = setTimeout(() => { this.#socket.terminate() }, CLOSE_HANDSHAKE_MS).unref()
    }
    if (tcp.writableEnded) sent()
    else tcp.write(EMPTY, sent)
  }

  #watchClose (): void {
    if (this.#watchingClose) return
    this.#watchingClose = true
    this.#socket.once('close', () => {
      this.#ended = true
      clearTimeout(this.#timer)
      this.#drop()
      this.#settle()
    })
  }
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
