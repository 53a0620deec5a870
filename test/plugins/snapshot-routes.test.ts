import t from 'tap'
import { startServer } from '../helpers/server.js'
import type { Op } from '../../lib/types.js'

const counter = { initial: { n: 0 }, every: 10, reduce: (s: unknown, _op: Op) => ({ n: (s as { n: number }).n + 1 }) }

async function post (http: string, project: string, data: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return await fetch(`${http}/projects/${project}/ops`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ data })
  })
}

async function put (http: string, project: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return await fetch(`${http}/projects/${project}/snapshot`, {
    method: 'PUT', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body)
  })
}

t.test('GET and PUT /projects/:project/snapshot, and history that starts at the snapshot', async (t) => {
  const server = await startServer(t, { historyMemory: 20, snapshotMaxBytes: 2048 })
  const none = await fetch(`${server.http}/projects/doc/snapshot`)
  t.equal(none.status, 404)
  t.match(await none.json(), { statusCode: 404, code: 'not_found', message: /no snapshot/ })

  for (let i = 0; i < 15; i++) t.equal((await post(server.http, 'doc', i)).status, 201)
  const { epoch } = await (await fetch(`${server.http}/projects/doc/ops`)).json() as { epoch: string }
  let res = await put(server.http, 'doc', { epoch, seq: 12, state: { upTo: 12 } })
  t.equal(res.status, 200)
  t.same(await res.json(), { project: 'doc', epoch, seq: 12, stored: true })
  t.same(await (await put(server.http, 'doc', { epoch, seq: 11, state: {} })).json(), { project: 'doc', epoch, seq: 11, stored: false, reason: 'older' })
  t.same(await (await put(server.http, 'doc', { epoch, seq: 99, state: {} })).json(), { project: 'doc', epoch, seq: 99, stored: false, reason: 'ahead' })
  t.same(await (await put(server.http, 'doc', { epoch: 'x', seq: 1, state: {} })).json(), { project: 'doc', epoch: 'x', seq: 1, stored: false, reason: 'epoch' })
  res = await put(server.http, 'doc', { epoch, seq: 13, state: 'y'.repeat(4096) })
  t.equal(res.status, 413, 'a state over FLOW_SNAPSHOT_MAX_BYTES')
  t.match(await res.json(), { code: 'limit_exceeded' })
  t.equal((await put(server.http, 'doc', { epoch, seq: 13 })).status, 400, 'state is required')
  t.equal((await put(server.http, 'doc', { epoch, seq: -1, state: 1 })).status, 400)

  res = await fetch(`${server.http}/projects/doc/snapshot`)
  t.equal(res.status, 200)
  t.same(await res.json(), { project: 'doc', epoch, seq: 12, state: { upTo: 12 } })

  const page = await (await fetch(`${server.http}/projects/doc/ops?snapshot=true`)).json() as { snapshot: unknown, ops: Array<{ seq: number }>, seq: number }
  t.same(page.snapshot, { epoch, seq: 12, state: { upTo: 12 } }, 'the page starts at the snapshot')
  t.same(page.ops.map((op) => op.seq), [13, 14, 15], 'and its ops follow it')
  const later = await (await fetch(`${server.http}/projects/doc/ops?snapshot=true&since=13`)).json() as { snapshot: unknown, ops: Array<{ seq: number }> }
  t.equal(later.snapshot, null, 'no snapshot newer than since')
  t.same(later.ops.map((op) => op.seq), [14, 15])
  const plain = await (await fetch(`${server.http}/projects/doc/ops`)).json() as Record<string, unknown>
  t.notOk('snapshot' in plain, 'without the flag, no snapshot field (1.1 shape)')
})

t.test('the host reducer\'s snapshots are served over HTTP; read-only identities may read them and not write', async (t) => {
  const server = await startServer(t, {
    snapshots: counter,
    authenticate: async (request) => {
      const userId = (request.query as { userId?: string }).userId ?? 'anon'
      return { userId, allows: (_p, access) => access !== 'write' || userId !== 'viewer' }
    }
  })
  for (let i = 0; i < 25; i++) await post(server.http, 'board', i, {})
  let snapshot: { seq: number, state: { n: number } } | undefined
  for (let i = 0; i < 500 && snapshot?.seq !== 20; i++) {
    const res = await fetch(`${server.http}/projects/board/snapshot?userId=viewer`)
    if (res.status === 200) snapshot = await res.json() as typeof snapshot
    else await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.match(snapshot, { seq: 20, state: { n: 20 } }, 'the reducer folded 20 ops')
  const refused = await fetch(`${server.http}/projects/board/snapshot?userId=viewer`, {
    method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ epoch: 'e', seq: 1, state: {} })
  })
  t.equal(refused.status, 403, 'a read-only identity may not store one')
})
