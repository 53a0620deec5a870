#!/usr/bin/env node
// Flow (dist/server.js's buildServer, settings from the environment as with
// `npm start`) with a host reducer, for bench/snapshot.mjs: the board of the
// demo in miniature. An op's data is { cell, color }; the state is the
// count of ops and each cell's last color, so it stays bounded (--cells)
// however many ops the project has.
//
//   PORT=3300 FLOW_SNAPSHOT_EVERY=1000 node bench/snapshot-server.mjs
//
// One bench-only route: GET /bench/snapshot/:project answers the stored
// snapshot's { epoch, seq } (or null), so the bench waits for the fold
// without joining.
import { buildServer } from '../dist/server.js'

const reduce = (state, op) => {
  const data = op.data ?? {}
  return { n: state.n + 1, cells: { ...state.cells, [String(data.cell)]: data.color } }
}

const app = await buildServer({ demo: false, snapshots: { reduce, initial: { n: 0, cells: {} } } })
app.get('/bench/snapshot/:project', async (req) => {
  const stored = await app.flow.ports.snapshots.get(req.params.project)
  return stored === null ? null : { epoch: stored.epoch, seq: stored.seq }
})
const shutdown = () => { app.close().then(() => process.exit(0), () => process.exit(1)) }
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
await app.listen({ port: Number(process.env.PORT ?? 3300), host: process.env.HOST ?? '127.0.0.1' })
