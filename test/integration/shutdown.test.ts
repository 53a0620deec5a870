import t from 'tap'
import { createConnection, type Socket } from 'node:net'
import type { AppendResult, NewOp } from '../../ports/operation-log.js'
import { MemoryOperationLog } from '../../adapters/memory/operation-log.js'
import { startServer } from '../helpers/server.js'
import { connect, type TestClient } from '../helpers/client.js'
import { ensureBuilt, startEntry } from '../helpers/process.js'
import { waitFor } from '../helpers/wait.js'
import { refusedUpgrade } from '../helpers/upgrade.js'

t.before(ensureBuilt)

/** Sends a frame and resolves once its bytes are handed to the kernel. */
async function sendNow (client: TestClient, frame: object): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    client.socket.send(JSON.stringify(frame), (err) => { if (err === undefined || err === null) resolve(); else reject(err) })
  })
}

t.test('SIGTERM acks an op sent just before it, closes every client with 1001 and exits 0', async (t) => {
  const server = await startEntry(t)
  const alice = await connect(t, server.ws + '?userId=alice')
  const bob = await connect(t, server.ws + '?userId=bob')
  await alice.join('doc-1')
  await bob.join('doc-2')
  // A stray upgrade (wrong path) once kept its socket, and the exit, for ever.
  t.equal(await refusedUpgrade(server.ws.replace(/\/ws$/, '/socket')), 404)
  await sendNow(alice, { type: 'op', project: 'doc-1', id: 'last-words', data: { bye: true }, ref: 'last' })
  server.proc.kill('SIGTERM')
  const [a, b] = await Promise.all([alice.closed, bob.closed])
  t.equal(a.code, 1001)
  t.equal(b.code, 1001)
  const replies = alice.received.filter((f) => f.ref === 'last')
  t.same(replies, [{ type: 'ack', project: 'doc-1', id: 'last-words', seq: 1, ref: 'last' }], 'the op was acked, and the ack came before the close')
  t.same(await server.proc.exited, { code: 0, signal: null })
  t.match(server.proc.stdout, /"signal":"SIGTERM".*shutting down/)
})

t.test('a second SIGTERM during the drain does not cut it short: a slow reader gets every op, then 1001', async (t) => {
  const OPS = 200
  // 200 ops of 60 KB: about 12 MB, well over what the kernel buffers for a
  // reader that does not read, so the server holds unsent data and drains.
  const server = await startEntry(t, { FLOW_MAX_BUFFERED_BYTES: String(1024 * 1024 * 1024), FLOW_SHUTDOWN_TIMEOUT_MS: '30000' })
  const reader = await connect(t, server.ws + '?userId=reader', { timeoutMs: 20_000 })
  const writer = await connect(t, server.ws + '?userId=writer', { timeoutMs: 20_000 })
  await reader.join('doc-1')
  await writer.join('doc-1')
  await reader.next('member')
  reader.socket.pause()
  const blob = 'x'.repeat(60_000)
  for (let i = 1; i <= OPS; i++) writer.send({ type: 'op', project: 'doc-1', id: `op-${i}`, data: blob, ref: i })
  const lastAck = await writer.next((f) => f.ref === OPS)
  t.match(lastAck, { type: 'ack', seq: OPS })

  const from = server.proc.stdout.length
  server.proc.kill('SIGTERM')
  await server.proc.waitFor(/"signal":"SIGTERM".*"msg":"shutting down"/, { from })
  server.proc.kill('SIGTERM')
  await server.proc.waitFor(/already shutting down/, { from })
  t.ok(server.proc.running, 'the process is still draining after the second signal')
  t.equal(reader.all('op').length, 0, 'the reader has read nothing yet')

  reader.socket.resume()
  const closed = await reader.closed
  t.equal(closed.code, 1001, 'the reader is closed with 1001 once it has read everything')
  const seqs = reader.all('op').map((f) => f.seq)
  t.equal(seqs.length, OPS, 'the reader got every op')
  t.same(seqs, Array.from({ length: OPS }, (_, i) => i + 1))
  t.same(await server.proc.exited, { code: 0, signal: null })
})

t.test('a client that never reads cannot hold the shutdown past the drain timeout', async (t) => {
  // 12 MB written at once by one address: not held to an identity's write budget here.
  const server = await startEntry(t, {
    FLOW_MAX_BUFFERED_BYTES: String(1024 * 1024 * 1024), FLOW_SHUTDOWN_TIMEOUT_MS: '300',
    FLOW_IDENTITY_WRITE_BYTES_PER_SECOND: String(1024 * 1024 * 1024)
  })
  const reader = await connect(t, server.ws + '?userId=reader')
  const writer = await connect(t, server.ws + '?userId=writer')
  await reader.join('doc-1')
  await writer.join('doc-1')
  reader.socket.pause()
  const blob = 'x'.repeat(60_000)
  for (let i = 1; i <= 200; i++) writer.send({ type: 'op', project: 'doc-1', data: blob, ref: i })
  t.match(await writer.next((f) => f.ref === 200), { type: 'ack', seq: 200 })
  const started = Date.now()
  server.proc.kill('SIGTERM')
  const exit = await server.proc.exited
  t.same(exit, { code: 0, signal: null })
  // 300 ms of drain, then the close handshake gets 2 s before the socket is dropped.
  t.ok(Date.now() - started < 300 + 2000 + 5000, `exited ${Date.now() - started} ms after the signal`)
})

t.test('connections that never send a whole request (a balancer\'s idle upstream, half a header) do not hold the exit', async (t) => {
  const server = await startEntry(t, { FLOW_SHUTDOWN_TIMEOUT_MS: '300' })
  const { hostname, port } = new URL(server.http)
  const open = async (): Promise<Socket> => await new Promise((resolve, reject) => {
    const socket = createConnection(Number(port), hostname, () => { resolve(socket) })
    socket.once('error', reject)
    // Cut by the server: what the test waits for ('close').
    socket.on('error', () => {})
    t.teardown(() => { socket.destroy() })
  })
  const silent = await open()
  const halfSent = await open()
  halfSent.write('GET /ws HTTP/1.1\r\nHost: flow\r\n')
  // 'close', whether the server ends them or resets them (ECONNRESET: events.once would reject on the 'error').
  const cut = Promise.all([silent, halfSent].map(async (s) => { await new Promise((resolve) => { s.once('close', resolve) }) }))
  const started = Date.now()
  server.proc.kill('SIGTERM')
  const exit = await server.proc.exited
  t.same(exit, { code: 0, signal: null })
  await cut
  // Node's own bound for them is the 60 s headers timeout; they used to hold the exit that long.
  t.ok(Date.now() - started < 30_000, `exited ${Date.now() - started} ms after the signal, not at the headers timeout`)
})

/** A memory op log whose appends wait until the test lets them through. */
class HeldLog extends MemoryOperationLog {
  readonly #gate: Promise<void>
  readonly release: () => void
  readonly started: Promise<void>
  readonly #started: () => void

  constructor () {
    super()
    let release!: () => void
    this.#gate = new Promise<void>((resolve) => { release = resolve })
    this.release = release
    let started!: () => void
    this.started = new Promise<void>((resolve) => { started = resolve })
    this.#started = started
  }

  override async append (op: NewOp): Promise<AppendResult> {
    this.#started()
    await this.#gate
    return await super.append(op)
  }
}

t.test('closing the app waits for an op in flight: its ack comes before the 1001 close', async (t) => {
  const held = new HeldLog()
  const server = await startServer(t, { ports: { log: held } })
  const alice = await connect(t, server.ws + '?userId=alice')
  await alice.join('doc-1')
  alice.send({ type: 'op', project: 'doc-1', id: 'in-flight', data: 1, ref: 'f' })
  await held.started
  const closing = server.close()
  await waitFor(() => server.app.flow.hub.draining, { what: 'the drain to start', timeoutMs: 5000, intervalMs: 20 })
  t.equal(alice.socket.readyState, alice.socket.OPEN, 'the socket stays open while its op is in flight')
  held.release()
  const closed = await alice.closed
  t.equal(closed.code, 1001)
  t.same(alice.received.filter((f) => f.ref === 'f'), [{ type: 'ack', project: 'doc-1', id: 'in-flight', seq: 1, ref: 'f' }], 'the ack came before the close')
  await closing
})
