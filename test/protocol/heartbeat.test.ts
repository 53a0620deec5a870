import t from 'tap'
import WebSocket from 'ws'
import { startServer } from '../helpers/server.js'
import { connect } from '../helpers/client.js'
import { assertAlive, until } from '../helpers/protocol.js'
import { withDeadline } from '../helpers/wait.js'

const HEARTBEAT_MS = 200

/** Resolves after the socket has received `count` WebSocket pings. */
async function pings (socket: WebSocket, count: number, timeoutMs: number): Promise<number> {
  return await withDeadline(new Promise<number>((resolve) => {
    let seen = 0
    socket.on('ping', () => { if (++seen === count) resolve(Date.now()) })
  }), `${count} pings`, timeoutMs)
}

t.test('a client that answers pings stays connected across several intervals', async (t) => {
  const server = await startServer(t, { heartbeatMs: HEARTBEAT_MS })
  const client = await connect(t, server.ws)
  const start = Date.now()
  await pings(client.socket, 6, HEARTBEAT_MS * 12)
  t.ok(Date.now() - start >= HEARTBEAT_MS * 5, 'six pings span at least five intervals')
  t.equal(client.socket.readyState, WebSocket.OPEN)
  await assertAlive(t, client)
})

t.test('a client that sends frames but never pongs stays connected: any frame counts as alive', async (t) => {
  const server = await startServer(t, { heartbeatMs: HEARTBEAT_MS })
  const client = await connect(t, server.ws)
  // ws answers pings by itself; this one does not (autoPong: false) but
  // sends a protocol ping each time it is pinged.
  const silent = new WebSocket(server.ws, { autoPong: false })
  t.teardown(() => { silent.terminate() })
  await new Promise((resolve, reject) => { silent.once('open', resolve); silent.once('error', reject) })
  silent.on('ping', () => { silent.send(JSON.stringify({ type: 'ping' })) })
  let closed = false
  silent.on('close', () => { closed = true })
  await pings(silent, 6, HEARTBEAT_MS * 12)
  t.notOk(closed, 'still connected after six pings')
  await assertAlive(t, client)
})

t.test('a client that does not answer pings is ended within a few intervals and its sessions leave', async (t) => {
  const server = await startServer(t, { heartbeatMs: HEARTBEAT_MS })
  const watcher = await connect(t, server.ws)
  await watcher.join('doc')
  const silent = new WebSocket(`${server.ws}?userId=silent`, { autoPong: false })
  t.teardown(() => { silent.terminate() })
  let pinged = 0
  silent.on('ping', () => { pinged++ })
  const closed = new Promise<number>((resolve) => { silent.on('close', () => { resolve(Date.now()) }) })
  await new Promise((resolve, reject) => { silent.once('open', resolve); silent.once('error', reject) })
  const joined = new Promise<void>((resolve) => { silent.once('message', () => { resolve() }) })
  silent.send(JSON.stringify({ type: 'join', project: 'doc' }))
  await joined
  const start = Date.now()
  const end = await withDeadline(closed, 'the server ending the connection', HEARTBEAT_MS * 6)
  t.ok(pinged >= 2, `it was pinged first (${pinged} pings)`)
  t.ok(end - start <= HEARTBEAT_MS * 5, `ended within a few intervals (${end - start} ms)`)
  const leave = await until(watcher, () => watcher.received.find((f) => f.type === 'member' && f.event === 'leave'), 'the leave event', 1000)
  t.match(leave, { member: { userId: 'silent' } })
  await assertAlive(t, watcher, 'the answering client is still connected')
})
