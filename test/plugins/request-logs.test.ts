import t, { type Test } from 'tap'
import { Writable } from 'node:stream'
import { startServer, type TestServer } from '../helpers/server.js'
import { connect } from '../helpers/client.js'
import { hs256, SECRET } from '../helpers/jwt.js'
import { waitFor } from '../helpers/wait.js'

type Line = Record<string, unknown>

interface Captured {
  readonly server: TestServer
  readonly lines: Line[]
  /** bytes written to the log */
  readonly bytes: () => number
}

/** Flow under /rt in a host with a route of its own, logging JSON at `level` into `lines`. */
async function logged (t: Test, level: string, options: Parameters<typeof startServer>[1] = {}): Promise<Captured> {
  const lines: Line[] = []
  let bytes = 0
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      bytes += chunk.length
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as Line)
      callback()
    }
  })
  const server = await startServer(t, { prefix: '/rt', ...options }, async (app) => {
    // startServer's own app has no logger: this one replaces it.
    app.get('/hello', async () => 'host')
  }, { logger: { level, stream } })
  return { server, lines, bytes: () => bytes }
}

/** A burst of the HTTP API: `rounds` times a POST, two GETs and the document. */
async function burst (server: TestServer, rounds: number): Promise<void> {
  const { app } = server
  for (let i = 0; i < rounds; i++) {
    await Promise.all([
      app.inject({ method: 'POST', url: '/rt/projects/doc-1/ops', payload: { data: i } }),
      app.inject({ method: 'GET', url: '/rt/projects/doc-1/ops?since=0&limit=5' }),
      app.inject({ method: 'GET', url: '/rt/projects/doc-1/members' }),
      app.inject({ method: 'GET', url: '/rt/docs/json' })
    ])
  }
}

const perRequest = (line: Line): boolean => line.msg === 'incoming request' || line.msg === 'request completed'

t.test('at info, a burst of HTTP API requests logs no per-request line; the host\'s own route still logs its own', async (t) => {
  const { server, lines, bytes } = await logged(t, 'info')
  const before = bytes()
  await burst(server, 50)
  t.same(lines.filter(perRequest), [], 'no line per request of Flow\'s')
  t.equal(bytes(), before, 'nothing at all was logged for 200 requests')
  await server.app.inject({ method: 'GET', url: '/hello' })
  t.same(lines.filter(perRequest).map((l) => l.msg), ['incoming request', 'request completed'], 'the host\'s route keeps Fastify\'s lines')
})

t.test('at debug, each HTTP API request logs one request completed line, without its query', async (t) => {
  const { server, lines } = await logged(t, 'debug')
  await burst(server, 5)
  const res = await server.app.inject({ method: 'GET', url: '/rt/projects/doc-1/ops?token=s3cr3t-value' })
  t.equal(res.statusCode, 200)
  const flowLines = lines.filter((l) => perRequest(l) && typeof l.path === 'string')
  t.equal(flowLines.length, 21, 'one line per request')
  t.ok(flowLines.every((l) => l.level === 20 && l.msg === 'request completed'), 'at debug')
  t.match(flowLines.at(-1), { method: 'GET', path: '/rt/projects/doc-1/ops', statusCode: 200, responseTime: Number, reqId: String })
  t.notMatch(JSON.stringify(lines), /s3cr3t-value/, 'the query never reaches a line')
  t.equal(lines.filter((l) => l.msg === 'incoming request').length, 0, 'not Fastify\'s two lines at info')
})

t.test('a host at error level gets no warn lines from Flow\'s routes', async (t) => {
  const { server, lines } = await logged(t, 'error')
  await burst(server, 3)
  t.same(lines.filter((l) => (l.level as number) < 50), [])
})

t.test('a WebSocket connection logs one info line when it opens and one when it closes, never its token', async (t) => {
  const token = hs256({ sub: 'alice' })
  const { server, lines } = await logged(t, 'info', { jwtSecret: SECRET })
  const from = lines.length
  const alice = await connect(t, `${server.ws}?token=${token}`)
  await alice.join('doc-1')
  await alice.request({ type: 'op', project: 'doc-1', id: 'o1', data: 1 })
  alice.close()
  await alice.closed
  const closed = await waitFor(() => lines.find((l) => l.msg === 'connection closed'), { what: 'the close line' })
  const info = lines.slice(from).filter((l) => l.level === 30)
  t.same(info.map((l) => l.msg), ['connection opened', 'connection closed'], 'exactly two info lines')
  const opened = info[0]
  t.match(opened, { component: 'websocket', conn: String, userId: 'alice', remoteAddress: '127.0.0.1', reqId: String })
  t.notOk('project' in (opened ?? {}), 'project-agnostic')
  t.match(closed, { conn: opened?.conn, code: 1005, durationMs: Number, framesIn: 2, framesOut: 2 })
  t.notMatch(JSON.stringify(lines), token, 'the token is never logged')
})
