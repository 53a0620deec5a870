#!/usr/bin/env node
// The ceiling: a minimal `ws` + Redis Pub/Sub relay, about what Node can do
// for this fan-out. No ordering, no log, no validation, no sessions.
//
//   PORT=3300 REDIS_URL=redis://127.0.0.1:6379 node bench/relay-server.mjs
//
// Frames (JSON, Flow-like): {type:'join', project} -> {type:'joined', project};
// {type:'op', project, id, data} -> {type:'op', project, id, data} to the
// other local members at once, and published on the project's channel for the
// other instances; the sender gets {type:'ack', id} once Redis took the
// PUBLISH (at once without Redis). An instance subscribes to a project's
// channel while it has a member there.
import { randomBytes } from 'node:crypto'
import { WebSocketServer } from 'ws'
import { createClient } from 'redis'

const port = Number(process.env.PORT ?? 3300)
const host = process.env.HOST ?? '127.0.0.1'
const redisUrl = process.env.REDIS_URL
const origin = `${process.env.INSTANCE_ID ?? randomBytes(6).toString('hex')}|`

/** project -> local sockets */
const rooms = new Map()
let pub = null
let sub = null

if (redisUrl !== undefined && redisUrl !== '') {
  pub = createClient({ url: redisUrl })
  sub = pub.duplicate()
  for (const c of [pub, sub]) c.on('error', (err) => { process.stderr.write(`redis: ${err.message}\n`) })
  await Promise.all([pub.connect(), sub.connect()])
}

const channel = (project) => `relay:${project}`

function deliver (project, frame, except) {
  const room = rooms.get(project)
  if (room === undefined) return
  for (const ws of room) if (ws !== except) ws.send(frame)
}

async function join (ws, project) {
  let room = rooms.get(project)
  if (room === undefined) {
    room = new Set()
    rooms.set(project, room)
    if (sub !== null) {
      await sub.subscribe(channel(project), (message) => {
        if (!message.startsWith(origin)) deliver(project, message.slice(message.indexOf('|') + 1), null)
      })
    }
  }
  room.add(ws)
}

function leave (ws, project) {
  const room = rooms.get(project)
  if (room === undefined) return
  room.delete(ws)
  if (room.size === 0) {
    rooms.delete(project)
    sub?.unsubscribe(channel(project)).catch(() => {})
  }
}

const wss = new WebSocketServer({ port, host, perMessageDeflate: false, maxPayload: 65536 })
wss.on('connection', (ws) => {
  const projects = new Set()
  ws.on('message', (raw) => {
    let frame
    try { frame = JSON.parse(raw) } catch { return }
    if (frame === null || typeof frame.project !== 'string') return
    if (frame.type === 'op') {
      const out = JSON.stringify({ type: 'op', project: frame.project, id: frame.id, data: frame.data })
      const ack = `{"type":"ack","id":${JSON.stringify(frame.id)}}`
      deliver(frame.project, out, ws)
      if (pub === null) ws.send(ack)
      else pub.publish(channel(frame.project), origin + out).then(() => { ws.send(ack) }, () => {})
    } else if (frame.type === 'join') {
      projects.add(frame.project)
      join(ws, frame.project).then(() => { ws.send(JSON.stringify({ type: 'joined', project: frame.project })) }, () => {})
    }
  })
  ws.on('close', () => { for (const p of projects) leave(ws, p) })
  ws.on('error', () => {})
})
wss.on('listening', () => { process.stdout.write(`relay listening on ${host}:${port}${pub === null ? '' : ' with Redis Pub/Sub'}\n`) })

let closing = false
function shutdown () {
  if (closing) return
  closing = true
  for (const ws of wss.clients) ws.terminate()
  wss.close(() => {
    Promise.all([pub, sub].filter((c) => c !== null).map(async (c) => { await c.quit().catch(() => {}) })).finally(() => process.exit(0))
  })
  setTimeout(() => process.exit(0), 3000).unref()
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
