import t, { type Test } from 'tap'
import { startServer, type TestServer } from '../helpers/server.js'
import { connect, type Frame, type TestClient } from '../helpers/client.js'
import { collect, range, seqsOf, until } from '../helpers/protocol.js'
import { hs256, SECRET } from '../helpers/jwt.js'

// Budgets per identity (issue 12): one user's connections and requests share
// FLOW_IDENTITY_READ_BYTES_PER_SECOND and FLOW_IDENTITY_WRITE_BYTES_PER_SECOND,
// so opening more connections does not multiply what one client may take;
// other users do not wait for it. The lower bounds on time are what the
// budget promises (a slower machine only makes them longer); nothing here
// asserts that anything is fast.

const KiB = 1024
const BUDGET = 64 * KiB
const PER_CONN = 60

const as = (server: TestServer, user: string): string => `${server.ws}?token=${hs256({ sub: user })}`

/** `count` ops of ~`bytes` each in `project`, written by `client`, every one acked. */
async function fill (client: TestClient, project: string, count: number, bytes: number): Promise<void> {
  for (let i = 0; i < count; i++) await client.request({ type: 'op', project, data: 'x'.repeat(bytes) })
}

async function stats (server: TestServer): Promise<{ budgets: { writesPaused: number, readsDeferred: number } }> {
  return await (await fetch(`${server.http}/ws/stats`)).json() as { budgets: { writesPaused: number, readsDeferred: number } }
}

/** Six replays of ~45 KiB over three connections of one identity, and one replay of another identity meanwhile. */
async function replays (t: Test, server: TestServer, mallory: string[], bob: { url: string, localAddress?: string }): Promise<void> {
  const writer = await connect(t, as(server, 'writer'))
  const { epoch } = await writer.join('doc')
  await fill(writer, 'doc', 40, 1000)
  const conns = await Promise.all(mallory.map(async (url) => await connect(t, url, { timeoutMs: 30_000 })))
  const start = performance.now()
  let bobDone = Infinity
  let malloryDone = 0
  const hers = Promise.all(conns.map(async (c) => {
    await c.join('doc', { since: 0, epoch })
    await until(c, () => seqsOf(c, 'doc').length === 40, 'the join\'s replay', 30_000)
    const synced = await c.request({ type: 'sync', project: 'doc', since: 0, epoch })
    t.equal(synced.seq, 40)
    malloryDone = Math.max(malloryDone, performance.now())
  }))
  // Once her first replays have spent her budget.
  await until(conns[0] as TestClient, () => seqsOf(conns[0] as TestClient, 'doc').length > 0, 'her first replay', 30_000)
  const other = await connect(t, bob.url, { localAddress: bob.localAddress })
  await other.join('doc', { since: 0, epoch })
  await until(other, () => seqsOf(other, 'doc').length === 40, 'bob\'s replay', 10_000)
  bobDone = performance.now()
  await hers
  const took = malloryDone - start
  for (const c of conns) t.same(seqsOf(c, 'doc'), [...range(1, 40), ...range(1, 40)], 'each of her connections got every op twice, in order')
  t.same(seqsOf(other, 'doc'), range(1, 40), 'bob got every op')
  // 6 × ~45 KiB against 64 KiB a second: one second's worth goes at once, the last replay is not waited after.
  t.ok(took >= 2000, `her six replays over three connections took ${Math.round(took)} ms: the identity's budget, not three`)
  t.ok(bobDone < malloryDone, 'bob, another identity, was not held behind her budget')
  t.ok((await stats(server)).budgets.readsDeferred > 0, '/ws/stats counts the waits')
}

t.test('one user\'s replays share FLOW_IDENTITY_READ_BYTES_PER_SECOND across its connections; another user does not wait for it', async (t) => {
  const server = await startServer(t, { jwtSecret: SECRET, identityReadBytesPerSecond: BUDGET })
  const mallory = as(server, 'mallory')
  await replays(t, server, [mallory, mallory, mallory], { url: as(server, 'bob') })
})

t.test('without authentication, the clients of one address share the budget whatever user ids they name', async (t) => {
  const server = await startServer(t, { identityReadBytesPerSecond: BUDGET })
  await replays(t, server, ['m1', 'm2', 'm3'].map((u) => `${server.ws}?userId=${u}`), {
    url: `${server.ws}?userId=bob`, localAddress: '127.0.0.2'
  })
})

t.test('one user writing past FLOW_IDENTITY_WRITE_BYTES_PER_SECOND over three connections is slowed, loses nothing, and others keep flowing', async (t) => {
  const server = await startServer(t, { jwtSecret: SECRET, identityWriteBytesPerSecond: BUDGET })
  const bob = await connect(t, as(server, 'bob'), { timeoutMs: 30_000 })
  await bob.join('doc')
  const conns = await Promise.all([1, 2, 3].map(async () => await connect(t, as(server, 'mallory'), { timeoutMs: 30_000 })))
  for (const c of conns) await c.join('doc')
  const start = performance.now()
  // 180 ops of ~3 KB as fast as her sockets take them, ~540 KiB against 64 KiB a second. Reading is paused
  // between the chunks the sockets deliver (up to 64 KiB each), so the budget holds over time, not per frame.
  conns.forEach((c, k) => {
    for (let i = 0; i < PER_CONN; i++) c.send({ type: 'op', project: 'doc', id: `m${k}-${i}`, data: 'y'.repeat(3000) })
  })
  const acked = Promise.all(conns.map(async (c) => await collect(c, (f) => f.type === 'ack', PER_CONN, 'her acks', 30_000)))
  await until(bob, () => seqsOf(bob, 'doc').length > 0, 'her first op reaching bob', 30_000)
  const mine = await bob.request({ type: 'op', project: 'doc', data: 'bob' })
  const bobAcked = performance.now()
  t.equal(mine.type, 'ack', 'bob\'s op is acked')
  await acked
  const took = performance.now() - start
  // At least (540 - 64 at once - 3 × 64 read before a pause) / 64 = 4.4 s: 2 s is well below it, and above
  // what three connections' own budgets would allow.
  t.ok(took >= 2000, `her ${3 * PER_CONN} ops took ${Math.round(took)} ms to be read: the identity's budget, not three`)
  t.ok(bobAcked < start + took, 'bob\'s op was acked while hers were still held back')
  await until(bob, () => seqsOf(bob, 'doc').length === 3 * PER_CONN, 'all her ops at bob', 30_000)
  t.same(seqsOf(bob, 'doc'), range(1, 3 * PER_CONN + 1).filter((s) => s !== mine.seq), 'bob got every one of her ops in order, none twice')
  t.same(conns.flatMap((c) => c.all('error')), [], 'no op of hers was refused: her writes waited')
  t.ok((await stats(server)).budgets.writesPaused > 0, '/ws/stats counts the pauses')
})

t.test('HTTP reads and writes spend the same budgets: 429 with retry-after past them, for that user only, never for the API key', async (t) => {
  const apiKey = 'flow-test-api-key-0123456789'
  const server = await startServer(t, {
    jwtSecret: SECRET, apiKey, identityReadBytesPerSecond: BUDGET, identityWriteBytesPerSecond: BUDGET
  })
  const writer = await connect(t, as(server, 'writer'))
  await writer.join('doc')
  await fill(writer, 'doc', 40, 1000)
  const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}`, 'content-type': 'application/json' })
  const mallory = bearer(hs256({ sub: 'mallory' }))
  const get = async (headers: Record<string, string>): Promise<Response> =>
    await fetch(`${server.http}/projects/doc/ops?since=0&limit=1000`, { headers })

  // Two pages of ~45 KiB: the second takes her into debt, the third is refused until it is paid.
  t.equal((await get(mallory)).status, 200)
  t.equal((await get(mallory)).status, 200)
  const refused = await get(mallory)
  t.equal(refused.status, 429, 'her third page in a row is refused')
  t.ok(Number(refused.headers.get('retry-after')) >= 1, 'with retry-after')
  t.match(await refused.json(), { statusCode: 429, code: 'rate_limited', message: /FLOW_IDENTITY_READ_BYTES_PER_SECOND/ })
  t.equal((await get(bearer(hs256({ sub: 'bob' })))).status, 200, 'bob still reads')

  const post = async (headers: Record<string, string>): Promise<Response> =>
    await fetch(`${server.http}/projects/doc/ops`, { method: 'POST', headers, body: JSON.stringify({ data: 'z'.repeat(60_000) }) })
  t.equal((await post(mallory)).status, 201)
  t.equal((await post(mallory)).status, 201, 'the post that takes her into debt is taken whole')
  const tooMuch = await post(mallory)
  t.equal(tooMuch.status, 429, 'the next post waits for the debt to be paid')
  t.match(await tooMuch.json(), { statusCode: 429, code: 'rate_limited', message: /FLOW_IDENTITY_WRITE_BYTES_PER_SECOND/ })
  for (let i = 0; i < 4; i++) t.equal((await post(bearer(apiKey))).status, 201, 'the API key spends no budget')
  const ops = await collect(writer, (f: Frame) => f.type === 'op' && typeof f.data === 'string' && f.data.startsWith('z'), 6, 'the posted ops')
  t.equal(ops.length, 6, 'what was refused was not appended: two of hers, four of the API key')
})
