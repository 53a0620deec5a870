#!/usr/bin/env node
// The comparison server: the fan-out workload on Socket.IO 4.8, scaled out
// with @socket.io/redis-adapter (the classic Pub/Sub adapter) when REDIS_URL
// is set, on one process's memory otherwise.
//
//   PORT=3200 REDIS_URL=redis://127.0.0.1:6379 node bench/socketio-server.mjs
//
// Rooms are projects. Events: `join` (project, ack) joins the room;
// `op` ({ project, id, data }, ack) is broadcast to the room except the
// sender, and acked with { id }. No ordering, no log, no validation.
import { createServer } from 'node:http'
import { Server } from 'socket.io'
import { createAdapter } from '@socket.io/redis-adapter'
import { createClient } from 'redis'

const port = Number(process.env.PORT ?? 3200)
const host = process.env.HOST ?? '127.0.0.1'
const redisUrl = process.env.REDIS_URL

const http = createServer()
const io = new Server(http, { serveClient: false, maxHttpBufferSize: 65536 })
const clients = []

if (redisUrl !== undefined && redisUrl !== '') {
  const pub = createClient({ url: redisUrl })
  const sub = pub.duplicate()
  for (const c of [pub, sub]) c.on('error', (err) => { process.stderr.write(`redis: ${err.message}\n`) })
  await Promise.all([pub.connect(), sub.connect()])
  clients.push(pub, sub)
  io.adapter(createAdapter(pub, sub))
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

http.listen(port, host, () => { process.stdout.write(`socket.io listening on ${host}:${port}${clients.length > 0 ? ' with the redis adapter' : ''}\n`) })

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
