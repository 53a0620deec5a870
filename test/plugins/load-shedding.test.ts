import t from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { startServer } from '../helpers/server.js'
import { refusedUpgrade } from '../helpers/upgrade.js'
import { waitFor } from '../helpers/wait.js'

interface ErrorBody {
  readonly statusCode: number
  readonly code: string
  readonly error: string
  readonly message: string
}

t.test('over the heap limit, the API and upgrades answer 503 naming it, while /metrics, /ws/stats and /health stay up', async (t) => {
  // Any heap is over a 1-byte limit: from under-pressure's first sample (1 s) on, the process is overloaded.
  const server = await startServer(t, { maxHeapUsedBytes: 1 })
  const { app } = server
  const shed = await waitFor(async () => {
    const res = await app.inject({ method: 'GET', url: '/projects/doc-1/ops' })
    return res.statusCode === 503 ? res : undefined
  }, { what: 'the API to be shed', timeoutMs: 5000, intervalMs: 20 })
  const body = shed.json<ErrorBody>()
  t.same(Object.keys(body).sort(), ['code', 'error', 'message', 'statusCode'], 'the error body of every other error')
  t.match(body, { statusCode: 503, code: 'unavailable', error: 'Service Unavailable' })
  t.match(body.message, /heap used [\d.]+ MiB is over FLOW_MAX_HEAP_USED_BYTES \(1 bytes\)/, 'the message names the limit and the reading')
  t.equal(shed.headers['retry-after'], '10')
  const posted = await app.inject({ method: 'POST', url: '/projects/doc-1/ops', payload: { data: 1 } })
  t.equal(posted.statusCode, 503, 'a POST is shed too')
  t.equal(await refusedUpgrade(server.ws + '?userId=alice'), 503, 'and upgrades')

  const metrics = await app.inject({ method: 'GET', url: '/metrics' })
  t.equal(metrics.statusCode, 200, '/metrics answers')
  t.match(metrics.body, /^flow_up\{instance="[^"]+"\} 1$/m)
  const stats = await app.inject({ method: 'GET', url: '/ws/stats' })
  t.equal(stats.statusCode, 200, '/ws/stats answers')
  t.match(stats.json(), { connections: 0, memory: { heapUsed: Number } })

  const health = await app.inject({ method: 'GET', url: '/health' })
  t.equal(health.statusCode, 503, '/health runs, and says 503 for the balancer')
  t.equal(health.headers['retry-after'], '10')
  t.match(health.json(), {
    statusCode: 503,
    code: 'unavailable',
    error: 'Service Unavailable',
    message: /FLOW_MAX_HEAP_USED_BYTES/,
    status: 'overloaded',
    overload: { limit: 'heapUsedBytes', setting: 'FLOW_MAX_HEAP_USED_BYTES', value: Number, max: 1 },
    instanceId: String,
    ports: { log: { adapter: 'memory' } },
    warnings: Array
  }, 'the error body, the limit, and the whole report')
})

t.test('over the event-loop delay limit, the 503 names FLOW_MAX_EVENT_LOOP_DELAY_MS', async (t) => {
  const server = await startServer(t, { maxEventLoopDelayMs: 1 })
  const { app } = server
  const shed = await waitFor(async () => {
    // Holds the event loop (the load under test, not a wait): the next sample sees the delay.
    const until = Date.now() + 150
    while (Date.now() < until);
    const res: LightMyRequestResponse = await app.inject({ method: 'GET', url: '/projects/doc-1/members' })
    return res.statusCode === 503 ? res : undefined
  }, { what: 'the event-loop delay to trip', timeoutMs: 10_000, intervalMs: 1 })
  t.match(shed.json(), {
    statusCode: 503,
    code: 'unavailable',
    message: /event-loop delay \d+ ms is over FLOW_MAX_EVENT_LOOP_DELAY_MS \(1 ms\)/
  })
})

t.test('under the limits, /health answers 200 without an overload', async (t) => {
  const server = await startServer(t)
  const health = await server.app.inject({ method: 'GET', url: '/health' })
  t.equal(health.statusCode, 200)
  const body = health.json<Record<string, unknown>>()
  t.equal(body.status, 'ok')
  t.notOk('overload' in body)
  t.notOk('statusCode' in body)
})
