import { test, type Test } from 'tap'
import { EventEmitter } from 'node:events'
import websocket from '@fastify/websocket'
import WebSocket from 'ws'
import { textFrame } from '../../adapters/ws/transport.js'
import { startServer } from '../helpers/server.js'
import { connect, type Frame } from '../helpers/client.js'

/** ws's frame parser (exported by ws, not declared by @types/ws). */
interface FrameReceiver extends EventEmitter { write (chunk: Buffer): void }
const { Receiver } = WebSocket as unknown as { Receiver: new (options: { isServer: boolean, maxPayload: number }) => FrameReceiver }

/** Decodes server frames with ws's own parser, as a client would. */
function decode (bytes: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    // A client-side receiver: server frames are unmasked.
    const receiver = new Receiver({ isServer: false, maxPayload: 0 })
    receiver.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) reject(new Error('decoded as a binary frame'))
      else resolve(data.toString('utf8'))
    })
    receiver.on('error', reject)
    receiver.write(bytes)
  })
}

test('textFrame encodes every payload length ws can decode, with multi-byte UTF-8', async (t) => {
  // 7-bit, 16-bit and 64-bit length forms, at and around each boundary.
  for (const length of [0, 1, 125, 126, 127, 65_535, 65_536, 70_000]) {
    const text = 'x'.repeat(length)
    const bytes = textFrame(text)
    t.equal(bytes[0], 0x81, `${length} bytes: a final text frame`)
    t.equal(await decode(bytes), text, `${length} bytes decode to the same text`)
  }
  // Byte length, not string length: 'é' is 2 bytes, '🙂' 4.
  const wide = `${'é'.repeat(63)}🙂` // 130 bytes in 65 UTF-16 units
  t.equal(await decode(textFrame(wide)), wide, 'multi-byte text crosses the 126-byte form by its byte length')
})

async function opsFrom (t: Test, url: string, sizes: readonly number[]): Promise<void> {
  const alice = await connect(t, url)
  const bob = await connect(t, url)
  await alice.join('frames')
  await bob.join('frames')
  for (const [i, size] of sizes.entries()) {
    const data = { i, text: `${'ü'.repeat(size % 7)}${'x'.repeat(size)}` }
    alice.send({ type: 'op', project: 'frames', id: `op-${i}`, data })
  }
  for (const [i, size] of sizes.entries()) {
    const op = await bob.next((f: Frame) => f.type === 'op' && f.id === `op-${i}`)
    t.same(op.data, { i, text: `${'ü'.repeat(size % 7)}${'x'.repeat(size)}` }, `op ${i} (${size} bytes of data) arrives intact`)
    t.equal(op.seq, i + 1, `op ${i} in order`)
  }
}

test('ops of every size reach members intact and in order over real sockets', async (t) => {
  const server = await startServer(t, { maxPayloadBytes: 200_000 })
  await opsFrom(t, server.ws, [0, 10, 60, 120, 200, 65_000, 65_600, 100_000, 5])
})

test('with permessage-deflate negotiated by a host, shared frames are still sent (compressed by ws)', async (t) => {
  const server = await startServer(t, {}, async (app) => {
    await app.register(websocket, { options: { perMessageDeflate: { threshold: 0 } } })
  })
  const probe = new WebSocket(server.ws, { perMessageDeflate: true })
  t.teardown(() => { probe.terminate() })
  await new Promise((resolve, reject) => { probe.once('open', resolve); probe.once('error', reject) })
  t.match(probe.extensions, /permessage-deflate/, 'the extension is in use on this socket')
  probe.close()
  await opsFrom(t, server.ws, [5, 300, 60_000])
})
