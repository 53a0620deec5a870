import t from 'tap'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { startServer } from '../helpers/server.js'
import { connect, type Frame } from '../helpers/client.js'
import { waitFor } from '../helpers/wait.js'

/** A small deterministic PRNG (mulberry32), so a failure can be replayed. */
function prng (seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6D2B79F5) | 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const SEED = Number(process.env.FLOW_FUZZ_SEED ?? 20261125)
const FRAMES = 8000
const random = prng(SEED)
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T
const int = (n: number): number => Math.floor(random() * n)

function deep (depth: number): unknown {
  let v: unknown = 'leaf'
  for (let i = 0; i < depth; i++) v = random() < 0.5 ? [v] : { k: v }
  return v
}

function weirdValue (): unknown {
  return pick<() => unknown>([
    () => null, () => true, () => -1, () => 1e308, () => -0, () => 2 ** 53 + 1, () => 1.5,
    () => '', () => 'x'.repeat(int(70_000)), () => '\u0000\uD800', () => '../../etc', () => '{}',
    () => [], () => ({}), () => deep(int(300)), () => ({ __proto__: { polluted: true } }),
    () => JSON.parse('{"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}}}') as unknown
  ])()
}

const TYPES = ['join', 'leave', 'op', 'presence', 'sync', 'ping', 'nope', '__proto__', 'constructor', 'toString', '']
const FIELDS = ['type', 'project', 'since', 'epoch', 'presence', 'ref', 'id', 'data', 'state']

/** One hostile message: [payload, binary?]. */
function hostile (): [Buffer | string, boolean] {
  switch (int(8)) {
    case 0: return [Buffer.from(Array.from({ length: int(300) }, () => int(256))), true]
    case 1: return [Buffer.from(Array.from({ length: 1 + int(200) }, () => int(256))), false]
    case 2: return [Buffer.from([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x7d]), false]
    case 3: return ['{"type":"op","project":"p","data":' + '['.repeat(5000) + ']'.repeat(5000) + '}', false]
    case 4: return [pick(['', 'null', '[]', '1', '"s"', '{', '}', '{"type":', 'true', '{"type":"join"']), false]
    default: {
      const frame: Record<string, unknown> = { type: random() < 0.8 ? pick(TYPES) : weirdValue() }
      for (let i = 0; i < int(5); i++) frame[pick(FIELDS)] = random() < 0.6 ? weirdValue() : pick(['p', 'good', `q${int(100)}`, 'a'.repeat(129), 0, -5, 'ok-id'])
      return [JSON.stringify(frame), false]
    }
  }
}

setFlagsFromString('--expose_gc')
const gc = runInNewContext('gc') as () => void
function heapAfterGc (): number {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

const ERROR_CODES = new Set(['bad_request', 'unknown_type', 'not_joined', 'limit_exceeded', 'rate_limited'])
const REPLY_TYPES = new Set(['error', 'joined', 'left', 'ack', 'pong', 'synced', 'reset', 'op', 'member', 'presence'])

t.test(`${FRAMES} hostile frames neither crash the server nor disturb a well-behaved client (seed ${SEED})`, async (t) => {
  const server = await startServer(t, { rateLimit: 1_000_000, rateBurst: 1_000_000, maxPayloadBytes: 65536 })
  const writer = await connect(t, server.ws, { timeoutMs: 20_000 })
  const reader = await connect(t, server.ws, { timeoutMs: 20_000 })
  await writer.join('good')
  await reader.join('good')
  const fuzzers = await Promise.all([0, 1, 2].map(async () => await connect(t, server.ws, { timeoutMs: 20_000 })))
  const baseline = heapAfterGc()

  let sent = 0
  let goodOps = 0
  const retired: typeof fuzzers = []
  let oversized = 0
  while (sent < FRAMES) {
    for (let i = 0; i < fuzzers.length; i++) {
      const fuzzer = fuzzers[i] as (typeof fuzzers)[number]
      if (fuzzer.socket.readyState !== fuzzer.socket.OPEN) {
        // Closed (an oversized frame): a new one takes its place.
        retired.push(fuzzer)
        fuzzers[i] = await connect(t, server.ws, { timeoutMs: 20_000 })
        continue
      }
      const [payload, binary] = hostile()
      if (Buffer.byteLength(payload) > 65536) oversized++
      fuzzer.socket.send(payload, { binary })
      sent++
    }
    if (sent % 100 < 3) {
      writer.send({ type: 'op', project: 'good', id: `g${goodOps}`, data: goodOps })
      goodOps++
      // Let the server breathe so the test measures correctness, not a backlog.
      await writer.next((f) => f.type === 'ack' && f.id === `g${goodOps - 1}`)
    }
  }
  await waitFor(() => reader.all('op').length >= goodOps, { what: 'every good op delivered', timeoutMs: 20_000, intervalMs: 20 })
  t.same(reader.all('op').map((f) => f.id), Array.from({ length: goodOps }, (_, n) => `g${n}`), 'the good client got every op, in order, once')

  const everyFuzzer = [...retired, ...fuzzers]
  const replies: Frame[] = everyFuzzer.flatMap((f) => f.received)
  t.ok(replies.length > FRAMES / 2, `the server answered (${replies.length} replies)`)
  const badTypes = replies.filter((f) => !REPLY_TYPES.has(f.type))
  t.same(badTypes.slice(0, 3), [], 'only protocol frame types come back')
  const badCodes = replies.filter((f) => f.type === 'error' && !ERROR_CODES.has(f.code as string))
  t.same(badCodes.slice(0, 3), [], 'errors carry documented codes (never internal)')
  const closes = await Promise.all(everyFuzzer.map(async (f) => {
    if (f.socket.readyState === f.socket.OPEN) return null
    return (await f.closed).code
  }))
  // An oversized frame closes with 1009; when the client is still writing it,
  // TCP may reset the connection before the close frame is read (1006).
  const closed = closes.filter((code) => code !== null)
  t.same(closed.filter((code) => code !== 1009 && code !== 1006), [], 'no fuzzer was closed for anything but an oversized frame')
  t.ok(closed.length <= oversized, `${closed.length} closes for ${oversized} oversized frames`)
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype was polluted')

  const health = await server.app.inject({ url: '/health' })
  t.equal(health.statusCode, 200, 'the server is healthy')
  for (const f of fuzzers) f.socket.terminate()
  await waitFor(() => server.app.flow.hub.connectionCount === 2, { what: 'fuzzers gone', timeoutMs: 5000, intervalMs: 20 })
  const growth = heapAfterGc() - baseline
  t.ok(growth < 16 * 1024 * 1024, `heap returns near its baseline (grew ${(growth / 1048576).toFixed(1)} MiB)`)
})
