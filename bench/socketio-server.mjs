#!/usr/bin/env node
// The comparison server: the fan-out workload on Socket.IO 4.8, scaled out
// with @socket.io/redis-adapter (the classic Pub/Sub adapter) when REDIS_URL
// is set, on one process's memory otherwise.
//
//   PORT=3200 REDIS_URL=redis://127.0.0.1:6379 node bench/socketio-server.mjs
//   PORT=3200 REDIS_URL=... SOCKETIO_RECOVERY_MS=120000 node bench/socketio-server.mjs
//
// SOCKETIO_RECOVERY_MS turns on connection state recovery
// (`connectionStateRecovery.maxDisconnectionDuration`, skipMiddlewares) and
// swaps the adapter for @socket.io/redis-streams-adapter: the classic adapter
// does not implement recovery (persistSession/restoreSession), the streams
// adapter does (sessions as Redis keys, missed packets read back from the
// stream). Its stream is capped at SOCKETIO_STREAM_MAXLEN entries (default
// 100,000 here; the adapter's own default, 10,000, is 2.5 s of the jitter
// bench's traffic, less than a client's time offline).
//
// Rooms are projects. Events: `join` (project, ack) joins the room;
// `op` ({ project, id, data }, ack) is broadcast to the room except the
// sender, and acked with { id }. No ordering, no log, no validation.
import { createServer } from 'node:http'
import { Server } from 'socket.io'
import { createAdapter } from '@socket.io/redis-adapter'
import { createAdapter as createStreamsAdapter } from '@socket.io/redis-streams-adapter'
import { createClient } from 'redis'

const port = Number(process.env.PORT ?? 3200)
const host = process.env.HOST ?? '127.0.0.1'
const redisUrl = process.env.REDIS_URL
const recoveryMs = Number(process.env.SOCKETIO_RECOVERY_MS ?? 0)
const streamMaxLen = Number(process.env.SOCKETIO_STREAM_MAXLEN ?? 100_000)

const http = createServer()
const io = new Server(http, {
  serveClient: false,
  maxHttpBufferSize: 65536,
  ...(recoveryMs > 0 ? { connectionStateRecovery: { maxDisconnectionDuration: recoveryMs, skipMiddlewares: true } } : {})
})
const clients = []

if (redisUrl !== undefined && redisUrl !== '') {
  const pub = createClient({ url: redisUrl })
  if (recoveryMs > 0) {
    pub.on('error', (err) => { process.stderr.write(`redis: ${err.message}\n`) })
    await pub.connect()
    clients.push(pub)
    io.adapter(createStreamsAdapter(pub, { maxLen: streamMaxLen }))
  } else {
    const sub = pub.duplicate()
    for (const c of [pub, sub]) c.on('error', (err) => { process.stderr.write(`redis: ${err.message}\n`) })
    await Promise.all([pub.connect(), sub.connect()])
    clients.push(pub, sub)
    io.adapter(createAdapter(pub, sub))
  }
}

io.on('connection', (socket) => {
  socket.on('join', (project, ack) => {
    socket.join(project)
    if (typeof ack === 'function') ack({ project })
  })
  socket.on('op', (op, ack) => {
    socket.to(op.project).emit('op', op)
    if (typeof ack === 'function') ack({ id: op.id })
  })
})

const adapterName = clients.length === 0 ? '' : recoveryMs > 0 ? ` with the redis streams adapter and connection state recovery (${recoveryMs} ms, stream maxLen ${streamMaxLen})` : ' with the redis adapter'
http.listen(port, host, () => { process.stdout.write(`socket.io listening on ${host}:${port}${adapterName}\n`) })

let closing = false
function shutdown () {
  if (closing) return
  closing = true
  io.close(() => {
    Promise.all(clients.map(async (c) => { await c.quit().catch(() => {}) })).finally(() => process.exit(0))
  })
  setTimeout(() => process.exit(0), 3000).unref()
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
