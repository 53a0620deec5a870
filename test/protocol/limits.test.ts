import t, { type Test } from 'tap'
import type { Socket } from 'node:net'
import { startServer } from '../helpers/server.js'
import { connect, type Frame, type TestClient } from '../helpers/client.js'
import { assertAlive, expectError, fetchMembers, fetchOps, opsOf, range, until } from '../helpers/protocol.js'
import { waitFor, withDeadline } from '../helpers/wait.js'
import { closeCode, FrameReader, frameHeader, rawConnect, readSlowly, textFrame, type RawOptions } from '../helpers/raw-socket.js'

/** An op frame of exactly `size` bytes. */
function opOfSize (size: number, ref: string): string {
  const head = `{"type":"op","project":"doc","ref":"${ref}","data":"`
  return head + 'x'.repeat(size - head.length - 2) + '"}'
}

t.test('a frame over maxPayloadBytes closes the connection with 1009 and its sessions leave', async (t) => {
  const server = await startServer(t, { maxPayloadBytes: 2048 })
  const alice = await connect(t, server.ws)
  const bob = await connect(t, server.ws)
  await alice.join('doc')
  const bj = await bob.join('doc')
  const exact = opOfSize(2048, 'exact')
  t.equal(Buffer.byteLength(exact), 2048)
  const ack = bob.next((f) => f.ref === 'exact')
  bob.send(exact)
  t.match(await ack, { type: 'ack', seq: 1 }, 'a frame of exactly the limit is accepted')
  bob.send(opOfSize(2049, 'over'))
  const closed = await withDeadline(bob.closed, 'the close', 2000)
  t.equal(closed.code, 1009)
  t.notOk(bob.received.some((f) => f.ref === 'over'), 'the large frame got no answer')
  const leave = await alice.next((f) => f.type === 'member' && f.event === 'leave')
  t.equal((leave.member as { sessionId: string }).sessionId, bj.sessionId)
  t.same((await fetchOps(server, 'doc')).map((op) => op.seq), [1], 'the large op was not appended')
  await assertAlive(t, alice, 'the other connection is untouched')
})

/**
 * Writes `chunks()` to a raw socket as fast as it takes them, until the
 * socket is gone or `limit` bytes went: a client that does not stop
 * sending whatever the server does.
 */
function keepSending (socket: Socket, chunks: () => Buffer, limit: number): void {
  let sent = 0
  const more = (): void => {
    while (!socket.destroyed && socket.writable && sent < limit) {
      const chunk = chunks()
      sent += chunk.length
      if (!socket.write(chunk)) {
        socket.once('drain', more)
        return
      }
    }
  }
  more()
}

/** A raw client joined to `project` (seen joining by `watcher`), reading everything from now on into a FrameReader. */
async function rawMember (t: Test, url: string, project: string, watcher: TestClient, userId: string,
  options?: RawOptions): Promise<{ socket: Socket, reader: FrameReader, closed: Promise<unknown> }> {
  const socket = await rawConnect(t, `${url}?userId=${userId}`, options)
  const joined = watcher.next((f) => f.type === 'member' && f.event === 'join' && (f.member as { userId: string }).userId === userId)
  socket.write(textFrame({ type: 'join', project, ref: 'join' }))
  await joined
  const reader = new FrameReader()
  const closed = new Promise((resolve) => { socket.once('close', resolve) })
  socket.on('data', (chunk: Buffer) => { reader.push(chunk) })
  socket.resume()
  return { socket, reader, closed }
}

t.test('a client that sends a 2 MiB frame behind a ping, and keeps sending, receives close code 1009; its session leaves', async (t) => {
  const server = await startServer(t)
  const alice = await connect(t, server.ws + '?userId=alice')
  await alice.join('doc')
  const { socket, reader, closed } = await rawMember(t, server.ws, 'doc', alice, 'big')
  const leave = alice.next((f) => f.type === 'member' && f.event === 'leave')
  // One write: a ping (its pong is sent in the same turn as the close) and
  // the header of a 2 MiB frame (over the 64 KiB limit); the payload then
  // keeps coming, past the 2 MiB, until the server ends the connection.
  socket.write(Buffer.concat([textFrame({ type: 'ping', ref: 'p' }), frameHeader(0x1, 2 * 1024 * 1024)]))
  const payload = Buffer.alloc(64 * 1024, 0x78)
  keepSending(socket, () => payload, 32 * 1024 * 1024)
  await withDeadline(closed, 'the connection to end', 10_000)
  const close = reader.close
  t.ok(close !== undefined, `the client got a close frame (it read ${reader.bytes} bytes)`)
  t.equal(close === undefined ? null : closeCode(close), 1009, 'with code 1009')
  t.equal((await leave).event, 'leave', 'its session left')
  await assertAlive(t, alice, 'the other connection is untouched')
})

t.test('a client refused with 1009 that never ends its side is dropped about 2 s after its close frame', async (t) => {
  const server = await startServer(t)
  const alice = await connect(t, server.ws + '?userId=alice')
  await alice.join('doc')
  // It keeps its sending side open when the server ends its own, and never answers the close.
  const { socket, reader, closed } = await rawMember(t, server.ws, 'doc', alice, 'stubborn', { allowHalfOpen: true })
  const ended = new Promise((resolve) => { socket.once('end', resolve) })
  socket.write(Buffer.concat([textFrame({ type: 'ping', ref: 'p' }), frameHeader(0x1, 2 * 1024 * 1024)]))
  const got = await waitFor(() => reader.close, { what: 'the close frame', timeoutMs: 5000 })
  const at = Date.now()
  t.equal(closeCode(got), 1009, 'the client got 1009')
  await withDeadline(ended, 'the server to end its side after the close frame', 5000)
  t.ok(!socket.destroyed, 'the client has not closed its side')
  // It keeps sending a little (the server discards it): once the server
  // has dropped the connection, the next write gets a reset.
  const trickle = setInterval(() => { if (socket.writable) socket.write(Buffer.alloc(1024, 0x78)) }, 20)
  t.teardown(() => { clearInterval(trickle) })
  await withDeadline(closed, 'the server to drop the connection', 10_000)
  clearInterval(trickle)
  const after = Date.now() - at
  t.ok(after >= 1500 && after < 5000, `dropped ${after} ms after the close frame (the handshake's 2 s)`)
})

t.test('a ws client that sends a 70 KiB frame right after a ping receives close code 1009', async (t) => {
  const server = await startServer(t)
  const alice = await connect(t, server.ws + '?userId=alice')
  const bob = await connect(t, server.ws + '?userId=bob')
  await alice.join('doc')
  await bob.join('doc')
  bob.send({ type: 'ping', ref: 'p' })
  bob.send(opOfSize(70 * 1024, 'big'))
  for (let i = 0; i < 10; i++) bob.send({ type: 'ping', ref: `p${i}` })
  const closed = await withDeadline(bob.closed, 'the close', 5000)
  t.equal(closed.code, 1009, 'the client sees 1009')
  t.notOk(bob.received.some((f) => f.ref === 'big'), 'the large frame got no answer')
  t.same((await fetchOps(server, 'doc')).length, 0, 'nothing was appended')
  await assertAlive(t, alice, 'the other connection is untouched')
})

t.test('joining more projects than maxProjectsPerConnection gets limit_exceeded', async (t) => {
  const server = await startServer(t, { maxProjectsPerConnection: 3 })
  const client = await connect(t, server.ws)
  const other = await connect(t, server.ws)
  for (const p of ['p1', 'p2', 'p3']) await client.join(p)
  const error = await expectError(t, client, { type: 'join', project: 'p4', ref: 'fourth' }, 'limit_exceeded', 'a fourth project')
  t.match(error, { project: 'p4', ref: 'fourth' })
  t.same(await fetchMembers(server, 'p4'), [], 'no session was made')
  t.equal((await client.join('p2')).type, 'joined', 'joining one of its projects again is not a new project')
  t.equal((await client.request({ type: 'leave', project: 'p1' })).type, 'left')
  t.equal((await client.join('p4')).type, 'joined', 'after a leave there is room again')
  for (const p of ['p2', 'p3', 'p4']) await other.join(p)
  t.match(await other.request({ type: 'join', project: 'p1' }), { type: 'error', code: 'limit_exceeded' }, 'the limit is per connection')
})

t.test('frames over the rate limit get rate_limited with their ref and are dropped; others are not disturbed', async (t) => {
  const server = await startServer(t, { rateLimit: 1, rateBurst: 8 })
  const alice = await connect(t, server.ws + '?userId=alice')
  const bob = await connect(t, server.ws + '?userId=bob')
  await alice.join('doc')
  await bob.join('doc')
  // Alice has 7 tokens left and gets about one a second: 12 ops at once overflow.
  const refs = range(0, 11).map((i) => `burst-${i}`)
  for (const ref of refs) alice.send({ type: 'op', project: 'doc', id: ref, data: ref, ref })
  const answers = await until(alice, () => {
    const found = refs.map((ref) => alice.received.filter((f) => f.ref === ref))
    return found.every((list) => list.length > 0) ? found : undefined
  }, 'an answer to each op')
  t.ok(answers.every((list) => list.length === 1), 'each op got exactly one answer')
  const kinds = answers.map((list) => (list[0] as Frame).type === 'ack' ? 'ack' : (list[0] as Frame).code)
  const acked = kinds.filter((k) => k === 'ack').length
  t.ok(acked >= 7 && acked <= 8, `the burst is acked (${acked})`)
  t.same(kinds, [...Array<string>(acked).fill('ack'), ...Array<string>(refs.length - acked).fill('rate_limited')], 'then every frame is rate_limited')
  const ackedIds = refs.slice(0, acked)
  t.match(alice.received.find((f) => f.type === 'error'), { code: 'rate_limited', message: String, project: 'doc' })
  t.same((await fetchOps(server, 'doc')).map((op) => op.id), ackedIds, 'the dropped ops were not appended')
  // Bob has his own bucket: his op is the next seq, and what he got is what was acked.
  t.match(await bob.request({ type: 'op', project: 'doc', id: 'bob-1', data: 1 }), { type: 'ack', seq: acked + 1 })
  t.same(opsOf(bob, 'doc').map((op) => op.id), ackedIds, 'the dropped ops were not broadcast')
  t.equal(alice.socket.readyState, alice.socket.OPEN, 'rate_limited does not close the connection')
})

t.test('a connection that keeps flooding for 5 s is closed with 1008; a well-behaved one is not disturbed', async (t) => {
  const server = await startServer(t, { rateLimit: 20, rateBurst: 20 })
  const flooder = await connect(t, server.ws + '?userId=flooder')
  const bob = await connect(t, server.ws + '?userId=bob')
  const carol = await connect(t, server.ws + '?userId=carol')
  await flooder.join('doc')
  await bob.join('doc')
  await carol.join('doc')
  let firstLimited = 0
  flooder.socket.on('message', () => {
    if (firstLimited === 0 && flooder.all('error').length > 0) firstLimited = Date.now()
  })
  // Load generators, paced by timers: the flood (1,000 frames a second)
  // and bob's steady 5 ops a second, well under the limit.
  const flood = setInterval(() => {
    if (flooder.socket.readyState !== flooder.socket.OPEN) return
    for (let i = 0; i < 10; i++) flooder.send({ type: 'op', project: 'doc', data: 'spam' })
  }, 10)
  let bobSent = 0
  const steady = setInterval(() => {
    bob.send({ type: 'op', project: 'doc', id: `bob-${bobSent}`, data: bobSent, ref: `bob-${bobSent}` })
    bobSent++
  }, 200)
  t.teardown(() => { clearInterval(flood); clearInterval(steady) })
  const closed = await withDeadline(flooder.closed, 'the flooder\'s close', 8000)
  const sustained = Date.now() - firstLimited
  clearInterval(flood)
  clearInterval(steady)
  t.equal(closed.code, 1008, 'closed for policy')
  t.ok(sustained >= 4500, `only after about 5 s of flooding (${sustained} ms)`)
  t.ok(flooder.all('error').every((f) => f.code === 'rate_limited'), 'until then, each dropped frame got rate_limited')
  t.ok(flooder.all('error').length > 100, 'and the connection stayed open through them')
  const leave = await carol.next((f) => f.type === 'member' && f.event === 'leave')
  t.equal((leave.member as { userId: string }).userId, 'flooder', 'the flooder\'s session left')

  const sent = bobSent
  const acks = await until(bob, () => {
    const found = bob.all('ack')
    return found.length === sent ? found : undefined
  }, `${sent} acks for bob`)
  t.ok(sent >= 20, `bob kept sending (${sent} ops)`)
  t.same(acks.map((a) => a.ref), range(0, sent - 1).map((i) => `bob-${i}`), 'bob got every ack, in order')
  t.same(bob.all('error'), [], 'bob got no error')
  await assertAlive(t, bob)
  // 20 at once, then 20 a second for the ~5 s it lasted.
  const spam = (await fetchOps(server, 'doc')).filter((op) => op.data === 'spam').length
  t.ok(spam <= 20 + 20 * Math.ceil((sustained + 1000) / 1000), `the flood was held to the rate limit (${spam} ops appended)`)
})

t.test('a connection that does not read is closed with 1008 and its sessions leave', async (t) => {
  const server = await startServer(t, { maxBufferedBytes: 64 * 1024 })
  const writer = await connect(t, server.ws + '?userId=writer', { timeoutMs: 10_000 })
  const watcher = await connect(t, server.ws + '?userId=watcher')
  const slow = await connect(t, server.ws + '?userId=slow')
  await writer.join('doc')
  await watcher.join('doc')
  const sj = await slow.join('doc')
  slow.socket.pause()
  // Large ops until the unsent data for the slow reader passes the bound
  // (the kernel's socket buffers take several MiB first).
  const data = 'x'.repeat(60 * 1024)
  const isLeave = (f: Frame): boolean => f.type === 'member' && f.event === 'leave'
  let sent = 0
  while (!watcher.received.some(isLeave) && sent < 1000) {
    for (let i = 0; i < 10; i++) writer.send({ type: 'op', project: 'doc', data })
    sent += 10
    await until(writer, () => writer.all('ack').length >= sent, `${sent} acks`, 10_000)
  }
  const leave = await watcher.next(isLeave)
  t.equal((leave.member as { sessionId: string }).sessionId, sj.sessionId, `the slow session left (after ${sent} ops of 60 KiB)`)
  slow.socket.resume()
  t.equal((await withDeadline(slow.closed, 'the close', 5000)).code, 1008, 'closed for policy once it reads again')
  t.ok(opsOf(slow, 'doc').length < sent, 'it did not get every op')
  await assertAlive(t, writer, 'the writer is untouched')
  await assertAlive(t, watcher, 'the watcher is untouched')
})

t.test('a client that stops reading gets close code 1008 ahead of its backlog when it reads again, slowly; the others are unaffected', async (t) => {
  // The default bound (8 MiB): the close frame must not wait behind it.
  const server = await startServer(t)
  const writer = await connect(t, server.ws + '?userId=writer', { timeoutMs: 10_000 })
  const watcher = await connect(t, server.ws + '?userId=watcher', { timeoutMs: 10_000 })
  await writer.join('doc')
  await watcher.join('doc')
  // A raw client: joined, then it reads nothing until the server has closed it.
  const slow = await rawConnect(t, server.ws + '?userId=slow')
  const joined = watcher.next((f) => f.type === 'member' && f.event === 'join')
  slow.write(textFrame({ type: 'join', project: 'doc', ref: 'join' }))
  await joined
  const isLeave = (f: Frame): boolean => f.type === 'member' && f.event === 'leave'
  const data = 'x'.repeat(60 * 1024)
  let sent = 0
  while (!watcher.received.some(isLeave) && sent < 1000) {
    for (let i = 0; i < 10; i++) writer.send({ type: 'op', project: 'doc', data })
    sent += 10
    await until(writer, () => writer.all('ack').length >= sent, `${sent} acks`, 10_000)
  }
  t.ok(watcher.received.some(isLeave), `the slow session left (after ${sent} ops of 60 KiB)`)
  // 2 MiB a second: the 8 MiB backlog alone would take 4 s to read, past the close handshake's 2 s.
  const reader = new FrameReader()
  const ended = await withDeadline(readSlowly(slow, reader, 2 * 1024 * 1024), 'the slow client to read to the end', 30_000)
  const close = reader.close
  t.ok(close !== undefined, `the client got a close frame (it read ${reader.bytes} bytes, then the connection saw '${ended}')`)
  t.equal(close === undefined ? null : closeCode(close), 1008, 'with code 1008')
  const ops = reader.json().filter((f) => f.type === 'op')
  t.ok(ops.length < sent, `it got part of the ops (${ops.length} of ${sent}), then the close`)
  t.same(ops.map((op) => op.seq), range(1, ops.length), 'those it got are the first ones, in order, intact')
  // The others got everything, in order.
  const seen = await until(watcher, () => opsOf(watcher, 'doc').length >= sent ? opsOf(watcher, 'doc') : undefined, `${sent} ops at the watcher`, 10_000)
  t.same(seen.map((op) => op.seq), range(1, sent), 'the watcher got every op, in order')
  await assertAlive(t, writer, 'the writer is untouched')
  await assertAlive(t, watcher, 'the watcher is untouched')
})
