/**
 * adapters/ws/transport.ts leans on private parts of `ws` 8, of Node's http
 * server and on how @fastify/websocket hands over an upgraded socket. Nothing
 * types or documents them: after an upgrade of one of them, the direct path
 * would silently fall back to `ws.send` (slower), frames could overtake ones
 * ws still queues (out of order), or the release of the upgrade's objects
 * would keep them (memory) or throw. These tests pin that shape down on real
 * sockets from a real Flow server, and say which internal changed.
 */
import t, { type Test } from 'tap'
import { Socket } from 'node:net'
import { ServerResponse, type IncomingMessage } from 'node:http'
import type { FastifyInstance } from 'fastify'
import websocket from '@fastify/websocket'
import WebSocket from 'ws'
import { SharedFrame } from '../../lib/hub/transport.js'
import { closeCodeOf, directSocket, Flusher, HIGH_WATER_BYTES, textFrame, WsTransport } from '../../adapters/ws/transport.js'
import { startServer, type TestServer } from '../helpers/server.js'
import { nextEvent, Recorder, waitFor, withDeadline } from '../helpers/wait.js'

/** The ws 8 internals the direct path reads, as loosely as a changed ws may have them. */
interface WsInternals {
  _socket?: unknown
  _sender?: { _queue?: unknown, _state?: unknown } | null
}

/** An upgraded TCP socket, with what Node's http server leaves on it. */
type UpgradedSocket = Socket & { _httpMessage?: unknown }

const internals = (socket: WebSocket): WsInternals => socket as unknown as WsInternals

/** What breaks when an internal is gone, for the failure messages. */
const DIRECT = 'if not, adapters/ws/transport.ts (directSocket) sends every frame through ws.send'
const RELEASE = 'if not, adapters/ws/transport.ts (releaseUpgrade) keeps ~2.8 KB per connection or throws'

/** A message as the client got it. */
interface Message { readonly text: string, readonly binary: boolean }

/** A server-side socket accepted by Flow's route, and the client on the other end. */
interface Accepted {
  /** the server's `ws` socket, as @fastify/websocket handed it over */
  readonly socket: WebSocket
  readonly request: IncomingMessage
  /** the upgrade socket's `_httpMessage` before Flow's handler ran */
  readonly httpMessage: unknown
  readonly client: WebSocket
  /** every message the client got, in order */
  readonly inbox: Recorder<Message>
}

interface FlowSockets {
  readonly server: TestServer
  readonly accept: (options?: WebSocket.ClientOptions) => Promise<Accepted>
}

/**
 * A Flow server whose accepted sockets the test gets hold of, through the
 * 'connection' event of the ws server behind @fastify/websocket: emitted
 * just before Flow's route handler runs, in the same tick. `setup` may
 * register @fastify/websocket on the host first (then Flow uses that one).
 */
async function flowSockets (t: Test, setup?: (app: FastifyInstance) => Promise<void>): Promise<FlowSockets> {
  // Flow registers its own @fastify/websocket in an encapsulated child: find it there.
  const contexts: FastifyInstance[] = []
  const server = await startServer(t, {}, async (app) => {
    app.addHook('onRegister', (instance) => { contexts.push(instance) })
    if (setup !== undefined) await setup(app)
  })
  const owner = [server.app, ...contexts].find((instance) => instance.hasDecorator('websocketServer'))
  if (owner === undefined) throw new Error('no @fastify/websocket server in the Flow app (websocketServer not decorated)')
  const wss = owner.websocketServer

  const accept = async (options?: WebSocket.ClientOptions): Promise<Accepted> => {
    const connection = withDeadline(new Promise<Omit<Accepted, 'client' | 'inbox'>>((resolve) => {
      wss.once('connection', (socket: WebSocket, request: IncomingMessage) => {
        // Read here: Flow's handler, which runs next, releases the response.
        resolve({ socket, request, httpMessage: (request.socket as UpgradedSocket)._httpMessage })
      })
    }), 'the server to accept the socket')
    const client = new WebSocket(server.ws, options)
    t.teardown(() => { client.terminate() })
    const inbox = new Recorder<Message>()
    client.on('message', (data, binary) => {
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer)
      inbox.push({ text: bytes.toString('utf8'), binary })
    })
    const [accepted] = await Promise.all([connection, nextEvent(client, 'open')])
    return { ...accepted, client, inbox }
  }
  return { server, accept }
}

/**
 * Records the calls of `target[name]` (an own property wrapping the
 * method, which still runs).
 */
function spy (target: object, name: string): unknown[][] {
  const record = target as Record<string, unknown>
  const original = record[name]
  if (typeof original !== 'function') throw new Error(`${name} is not a method of ${target.constructor.name}`)
  const calls: unknown[][] = []
  const method = original as (...args: unknown[]) => unknown
  record[name] = function (this: unknown, ...args: unknown[]): unknown {
    calls.push(args)
    return method.apply(this, args)
  }
  return calls
}

/** Texts of every size form of a frame (7-bit, 16-bit, 64-bit lengths), multi-byte UTF-8 among them. */
const TEXTS = [0, 1, 125, 126, 65_535, 65_536, 70_000].map((n, i) => `${i}:${'é'.repeat(n % 5)}${'x'.repeat(n)}`)

async function received (t: Test, inbox: Recorder<Message>, expected: readonly Message[], what: string, timeoutMs?: number): Promise<void> {
  const got = await inbox.until((items) => items.length >= expected.length, `${expected.length} messages ${what}`, timeoutMs)
  t.equal(got.length, expected.length, `exactly ${expected.length} messages ${what}`)
  for (const [i, message] of expected.entries()) {
    t.same(got[i], message, `message ${i} ${what} arrives intact and in order (${message.text.length} chars)`)
  }
}

t.test('a server socket from Flow\'s @fastify/websocket has the ws internals the direct path reads', async (t) => {
  const { accept } = await flowSockets(t)
  const { socket, request } = await accept()
  const { _socket: tcp, _sender: sender } = internals(socket)
  t.ok(tcp instanceof Socket, `ws internal: WebSocket#_socket is a net.Socket; ${DIRECT}`)
  t.equal(tcp, request.socket, `ws internal: WebSocket#_socket is the TCP socket of the upgrade request; ${DIRECT}`)
  t.ok(typeof sender === 'object' && sender !== null, `ws internal: WebSocket#_sender is an object; ${DIRECT}`)
  t.ok(Array.isArray(sender?._queue), `ws internal: WebSocket#_sender._queue is an array; ${DIRECT}`)
  t.equal(typeof sender?._state, 'number', `ws internal: WebSocket#_sender._state is a number; ${DIRECT}`)
  t.equal(sender?._state, 0, `ws internal: WebSocket#_sender._state is 0 when idle; ${DIRECT}`)
  t.equal(socket.extensions, '', 'Flow negotiates no extension on its own server (perMessageDeflate: false)')
  const direct = directSocket(socket)
  t.not(direct, null, 'directSocket finds the direct path on a socket of Flow\'s own server')
  t.equal(direct?.tcp, tcp, 'the direct path writes to the TCP socket under the ws socket')
})

t.test('the upgrade socket carries @fastify/websocket\'s ServerResponse, and Flow lets it and its error listener go', async (t) => {
  const { accept } = await flowSockets(t)
  const { socket, request, httpMessage, client, inbox } = await accept()
  t.ok(httpMessage instanceof ServerResponse, `Node/@fastify/websocket internal: the upgrade socket's _httpMessage is @fastify/websocket's ServerResponse; ${RELEASE}`)
  t.equal(typeof (httpMessage as { detachSocket?: unknown } | undefined)?.detachSocket, 'function', `Node internal: ServerResponse#detachSocket is a function; ${RELEASE}`)
  t.equal((request.socket as UpgradedSocket)._httpMessage, null, 'after Flow\'s handler the response is detached from the TCP socket')
  t.equal(socket.listenerCount('error'), 1, 'only Flow\'s own error listener is left (@fastify/websocket\'s, holding request and reply, is gone)')
  // The released socket still works both ways.
  client.send(JSON.stringify({ type: 'ping', ref: 'r1' }))
  const [pong] = await inbox.until((items) => items.length >= 1, 'a pong')
  t.match(JSON.parse(pong?.text ?? '{}'), { type: 'pong', ref: 'r1' }, 'the connection answers after the release')
})

t.test('on the direct path, shared frames of one turn are written prebuilt to the TCP socket and leave in one write', async (t) => {
  const { accept } = await flowSockets(t)
  const { socket, inbox } = await accept()
  const tcp = internals(socket)._socket as Socket
  const transport = new WsTransport(socket)
  const sends = spy(socket, 'send')
  const writes = spy(tcp, 'write')
  // Writable's implementer API: one _writev call is one write of several chunks.
  const writevs = spy(tcp, '_writev')
  const singles = spy(tcp, '_write')
  const frames = TEXTS.map((text) => new SharedFrame(text))
  for (const frame of frames) transport.send(frame)
  t.equal(sends.length, 0, 'no shared frame went through ws.send')
  t.equal(writes.length, frames.length, 'each shared frame is one write to the TCP socket')
  for (const [i, [chunk]] of writes.entries()) {
    t.ok(Buffer.isBuffer(chunk) && chunk.equals(textFrame(TEXTS[i] as string)), `frame ${i} is written as its prebuilt text frame`)
  }
  t.equal(tcp.writableCorked, 1, 'the TCP socket is corked until the end of the turn')
  await received(t, inbox, TEXTS.map((text) => ({ text, binary: false })), 'on the direct path')
  t.equal(writevs.length, 1, 'the frames of one turn left in one write')
  t.equal((writevs[0]?.[0] as unknown[] | undefined)?.length, frames.length, 'that write carried every frame of the turn')
  t.equal(singles.length, 0, 'and no frame was written on its own')
  t.equal(tcp.writableCorked, 0, 'the TCP socket is uncorked after the turn')

  // A string (a reply to one connection) goes through ws.send, in order.
  transport.send(new SharedFrame('shared'))
  transport.send('own')
  t.same(sends.map(([data]) => data), ['own'], 'a string frame goes through ws.send')
  await received(t, inbox, [...TEXTS, 'shared', 'own'].map((text) => ({ text, binary: false })), 'with a string frame')
})

t.test('with a flush window, the frames of several turns leave in one write once the window ends (FLOW_FLUSH_WINDOW_MS)', async (t) => {
  const { accept } = await flowSockets(t)
  const { socket, inbox } = await accept()
  const tcp = internals(socket)._socket as Socket
  const transport = new WsTransport(socket, new Flusher(200))
  const writevs = spy(tcp, '_writev')
  const singles = spy(tcp, '_write')
  const [first, ...rest] = TEXTS
  transport.send(new SharedFrame(first as string))
  // Later turns, inside the window: still corked, nothing sent yet.
  for (const text of rest) {
    await new Promise((resolve) => setImmediate(resolve))
    transport.send(new SharedFrame(text))
  }
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(tcp.writableCorked, 1, 'the TCP socket stays corked after the turn, within the window')
  t.equal(writevs.length + singles.length, 0, 'nothing was written to the network yet')
  t.equal(inbox.items.length, 0, 'the client has nothing yet')
  await received(t, inbox, TEXTS.map((text) => ({ text, binary: false })), 'after the window')
  t.equal(writevs.length, 1, 'the frames of several turns left in one write')
  t.equal((writevs[0]?.[0] as unknown[] | undefined)?.length, TEXTS.length, 'that write carried every frame')
  t.equal(tcp.writableCorked, 0, 'the TCP socket is uncorked after the window')
})

t.test('a flush window must be a whole number of ms >= 0', async (t) => {
  t.throws(() => new Flusher(-1), RangeError)
  t.throws(() => new Flusher(1.5), RangeError)
  t.equal(new Flusher().windowMs, 0, 'the default flushes every turn')
})

t.test('with permessage-deflate negotiated, every frame goes through ws.send and arrives intact and in order', async (t) => {
  const { accept } = await flowSockets(t, async (app) => {
    await app.register(websocket, { options: { perMessageDeflate: { threshold: 0 } } })
  })
  const { socket, inbox } = await accept({ perMessageDeflate: true })
  t.match(socket.extensions, /permessage-deflate/, 'the extension is in use on the server socket')
  t.equal(directSocket(socket), null, 'no direct path: ws must compress each frame')
  const tcp = internals(socket)._socket as Socket
  const transport = new WsTransport(socket)
  const sends = spy(socket, 'send')
  const writes = spy(tcp, 'write')
  const frames = TEXTS.map((text) => new SharedFrame(text))
  for (const frame of frames) transport.send(frame)
  transport.send('own')
  t.same(sends.map(([data]) => data), [...TEXTS, 'own'], 'each frame went through ws.send, as text')
  t.equal(tcp.writableCorked, 0, 'the transport did not cork the TCP socket')
  await received(t, inbox, [...TEXTS, 'own'].map((text) => ({ text, binary: false })), 'compressed by ws')
  const prebuilt = TEXTS.map(textFrame)
  t.notOk(writes.some(([chunk]) => Buffer.isBuffer(chunk) && prebuilt.some((frame) => frame.equals(chunk))), 'no uncompressed prebuilt frame reached the TCP socket')
})

t.test('a shared frame sent while ws reads a Blob waits behind it instead of overtaking it', async (t) => {
  const { accept } = await flowSockets(t)
  const { socket, inbox } = await accept()
  const sender = internals(socket)._sender
  const transport = new WsTransport(socket)
  const sends = spy(socket, 'send')
  transport.send(new SharedFrame('before'))
  socket.send(new Blob(['blob']))
  t.not(sender?._state, 0, 'ws internal: WebSocket#_sender._state is not 0 while ws reads a Blob; if not, a direct write overtakes the Blob')
  transport.send(new SharedFrame('after'))
  t.equal((sender?._queue as unknown[] | undefined)?.length, 1, 'ws internal: the frame sent behind the Blob waits in WebSocket#_sender._queue; if not, a direct write overtakes it')
  t.equal(sends.length, 2, 'the frame after the Blob went through ws.send (the Blob and it)')
  await received(t, inbox, [
    { text: 'before', binary: false },
    { text: 'blob', binary: true },
    { text: 'after', binary: false }
  ], 'around a Blob')
  t.equal(sender?._state, 0, 'the sender is idle again')
  transport.send(new SharedFrame('direct again'))
  t.equal(sends.length, 2, 'once ws has sent its queue, shared frames take the direct path again')
  await received(t, inbox, [
    { text: 'before', binary: false },
    { text: 'blob', binary: true },
    { text: 'after', binary: false },
    { text: 'direct again', binary: false }
  ], 'after the Blob')
})

t.test('frames sent after the socket started closing are not written directly', async (t) => {
  const { accept } = await flowSockets(t)
  const { socket, client } = await accept()
  const tcp = internals(socket)._socket as Socket
  const transport = new WsTransport(socket)
  const writes = spy(tcp, 'write')
  const closed = nextEvent(client, 'close')
  transport.close(1000, 'bye')
  const before = writes.length
  transport.send(new SharedFrame('too late'))
  t.equal(writes.length, before, 'nothing is written to the TCP socket after the close frame')
  const [code] = await withDeadline(closed, 'the client to see the close')
  t.equal(code, 1000, 'the client gets the clean close, with no data frame after it')
})

/** `count` texts of about `size` bytes, each naming its index. */
function bigTexts (count: number, size: number): string[] {
  return Array.from({ length: count }, (_, i) => `${i}:${'y'.repeat(size)}`)
}

/** Resolves once the turn in which `tcp` was corked is over (the transports flush on setImmediate). */
async function turnOver (tcp: Socket): Promise<void> {
  await waitFor(() => tcp.writableCorked === 0, { what: 'the end of the turn (the TCP socket uncorked)' })
}

t.test('to a reader that does not read, the socket gets frames up to the high-water mark; the rest wait in the transport and arrive in order, intact, one write per drain', async (t) => {
  const { accept } = await flowSockets(t)
  const { socket, client, inbox } = await accept()
  const tcp = internals(socket)._socket as Socket
  const transport = new WsTransport(socket)
  client.pause()
  // 16 MiB: more than the kernel's buffers on both ends hold.
  const texts = bigTexts(256, 64 * 1024)
  const frameBytes = textFrame(texts[0] as string).length
  const frames = texts.map((text) => new SharedFrame(text))
  for (const frame of frames) transport.send(frame)
  t.ok(tcp.writableLength < HIGH_WATER_BYTES + frameBytes, `the TCP socket buffers at most the high-water mark and a frame (${tcp.writableLength} bytes)`)
  await turnOver(tcp)
  const total = frames.length * frameBytes
  const buffered = transport.bufferedAmount
  t.ok(buffered > tcp.writableLength, 'bufferedAmount counts the frames waiting in the transport as well as the socket\'s buffer')
  t.ok(buffered > total - 8 * 1024 * 1024, `most of the 16 MiB is unsent (${buffered} bytes)`)
  const writevs = spy(tcp, '_writev')
  const singles = spy(tcp, '_write')
  client.resume()
  await received(t, inbox, texts.map((text) => ({ text, binary: false })), 'once the reader reads', 10_000)
  const writes = writevs.length + singles.length
  t.ok(writes > 0 && writes <= frames.length / 2, `the waiting frames left several per write, as the socket drained (${writes} writes for ${frames.length} frames)`)
  t.equal(transport.bufferedAmount, 0, 'nothing is left unsent')
})

t.test('with permessage-deflate, frames past the high-water mark wait in the transport too and arrive in order, intact', async (t) => {
  const { accept } = await flowSockets(t, async (app) => {
    await app.register(websocket, { options: { perMessageDeflate: { threshold: 0 } } })
  })
  const { socket, client, inbox } = await accept({ perMessageDeflate: true })
  t.equal(directSocket(socket), null, 'no direct path')
  const transport = new WsTransport(socket)
  client.pause()
  // Random-ish text, so compression does not shrink it to nothing.
  const texts = Array.from({ length: 64 }, (_, i) => `${i}:` + Array.from({ length: 4096 }, (_, j) => ((i * 7919 + j * 104729) % 65521).toString(36)).join(''))
  const sends = spy(socket, 'send')
  for (const text of texts) transport.send(new SharedFrame(text))
  t.ok(sends.length < texts.length, `ws was given frames only up to the high-water mark (${sends.length} of ${texts.length})`)
  t.ok(socket.bufferedAmount < HIGH_WATER_BYTES + 64 * 1024, `ws holds at most the mark and a frame (${socket.bufferedAmount} bytes)`)
  client.resume()
  await received(t, inbox, texts.map((text) => ({ text, binary: false })), 'compressed by ws, after waiting in the transport', 10_000)
  t.equal(sends.length, texts.length, 'every frame went through ws.send')
})

t.test('whenDrained resolves at once when drained, once a reader drained to the level, and when the connection closes', async (t) => {
  const { accept } = await flowSockets(t)
  const idle = await accept()
  const idleTransport = new WsTransport(idle.socket)
  let atOnce = false
  const ready = idleTransport.whenDrained(0).then(() => { atOnce = true })
  // Before any I/O of the event loop: only promise jobs have run.
  await new Promise((resolve) => { setImmediate(resolve) })
  t.ok(atOnce, 'resolves at once on a connection with nothing unsent')
  await ready

  const { socket, client, inbox } = await accept()
  const tcp = internals(socket)._socket as Socket
  const transport = new WsTransport(socket)
  client.pause()
  const texts = bigTexts(128, 64 * 1024)
  for (const text of texts) transport.send(new SharedFrame(text))
  await turnOver(tcp)
  const level = 64 * 1024
  let resolvedAt: number | null = null
  const drained = transport.whenDrained(level).then(() => { resolvedAt = transport.bufferedAmount })
  // The reader does not read: whatever the socket does, the level is not reached.
  await waitFor(() => tcp.writableNeedDrain, { what: 'the TCP socket to be full' })
  t.equal(resolvedAt, null, `not resolved while ${transport.bufferedAmount} bytes are unsent`)
  client.resume()
  await withDeadline(drained, 'whenDrained to resolve once the reader reads', 10_000)
  t.ok(resolvedAt !== null && resolvedAt <= level, `resolved with ${String(resolvedAt)} bytes unsent, at most ${level}`)
  await received(t, inbox, texts.map((text) => ({ text, binary: false })), 'to the reader')

  // A reader that never reads again: the connection closing settles the wait.
  const stuck = await accept()
  const stuckTcp = internals(stuck.socket)._socket as Socket
  const stuckTransport = new WsTransport(stuck.socket)
  stuck.client.pause()
  for (const text of texts) stuckTransport.send(new SharedFrame(text))
  await turnOver(stuckTcp)
  let settled = false
  const closing = stuckTransport.whenDrained(0).then(() => { settled = true })
  await waitFor(() => stuckTcp.writableNeedDrain, { what: 'the TCP socket to be full' })
  t.notOk(settled, 'not resolved while the reader does not read')
  stuck.client.terminate()
  await withDeadline(closing, 'whenDrained to resolve when the connection closes', 5000)
  t.equal(stuck.socket.readyState, WebSocket.CLOSED, 'the connection is closed then')

  // Told to close: waits end at once, and new ones resolve at once.
  const other = await accept()
  const otherTcp = internals(other.socket)._socket as Socket
  const otherTransport = new WsTransport(other.socket)
  other.client.pause()
  for (const text of texts) otherTransport.send(new SharedFrame(text))
  await turnOver(otherTcp)
  const waiting = otherTransport.whenDrained(0)
  otherTransport.close(1001, 'bye', { discardQueued: true })
  await withDeadline(waiting, 'whenDrained to resolve when the transport is told to close')
  await withDeadline(otherTransport.whenDrained(0), 'whenDrained on a closing transport')
})

t.test('close with discardQueued sends the close frame ahead of the queued frames; without it, after them', async (t) => {
  const { accept } = await flowSockets(t)
  const texts = bigTexts(256, 64 * 1024)
  const expected = texts.map((text) => ({ text, binary: false }))

  const ahead = await accept()
  const aheadTcp = internals(ahead.socket)._socket as Socket
  const aheadTransport = new WsTransport(ahead.socket)
  ahead.client.pause()
  for (const text of texts) aheadTransport.send(new SharedFrame(text))
  await turnOver(aheadTcp)
  const aheadClosed = nextEvent(ahead.client, 'close', 10_000)
  aheadTransport.close(4001, 'ahead', { discardQueued: true })
  aheadTransport.send(new SharedFrame('after the close'))
  t.ok(aheadTcp.writableLength < HIGH_WATER_BYTES + 80 * 1024, `the close frame follows at most the high-water mark of written bytes (${aheadTcp.writableLength})`)
  ahead.client.resume()
  const [aheadCode] = await withDeadline(aheadClosed, 'the client to see the close', 10_000)
  t.equal(aheadCode, 4001, 'the client gets the close code')
  const got = ahead.inbox.items
  t.ok(got.length < texts.length, `it got ${got.length} of ${texts.length} frames before the close`)
  t.same(got, expected.slice(0, got.length), 'those are the first ones, in order, intact')

  const after = await accept()
  const afterTcp = internals(after.socket)._socket as Socket
  const afterTransport = new WsTransport(after.socket)
  after.client.pause()
  for (const text of texts) afterTransport.send(new SharedFrame(text))
  await turnOver(afterTcp)
  const afterClosed = nextEvent(after.client, 'close', 10_000)
  afterTransport.close(4002, 'after')
  afterTransport.send(new SharedFrame('after the close'))
  after.client.resume()
  const [afterCode] = await withDeadline(afterClosed, 'the client to see the close', 10_000)
  t.equal(afterCode, 4002, 'the client gets the close code')
  t.same(after.inbox.items, expected, 'after every frame sent before the close, and none sent after it')
})

t.test('an error of ws\'s receiver carries the close code ws started the handshake with (closeCodeOf); other errors carry none', async (t) => {
  const { accept } = await flowSockets(t)
  const { socket, client } = await accept()
  const errors = new Recorder<{ err: unknown, readyState: number }>()
  socket.on('error', (err) => { errors.push({ err, readyState: socket.readyState }) })
  // Over Flow's maxPayload (64 KiB by default).
  client.send('x'.repeat(70 * 1024))
  const [first] = await errors.until((items) => items.length > 0, 'the receiver error')
  const symbols = Object.getOwnPropertySymbols(first?.err ?? {}).map((symbol) => symbol.description)
  t.ok(symbols.includes('status-code'), 'ws internal: a receiver error carries a symbol described \'status-code\'; if not, adapters/ws/transport.ts (closeCodeOf) finds no code and Flow drops the connection before its close frame reaches the client')
  t.equal(closeCodeOf(first?.err), 1009, 'closeCodeOf reads 1009 from an error for a frame over maxPayload')
  t.equal(first?.readyState, WebSocket.CLOSING, 'ws internal: ws has started the close handshake when it emits the error; if not, no close frame is sent')
  t.equal(closeCodeOf(new Error('ECONNRESET')), null, 'an error without it has no close code')
  t.equal(closeCodeOf(undefined), null, 'nor has a non-error')
})
