import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { register } from 'prom-client'
import { startServer } from '../helpers/server.js'
import { connect } from '../helpers/client.js'
import { waitFor } from '../helpers/wait.js'
import { SECRET } from '../helpers/jwt.js'

interface StatsBody {
  instanceId: string
  uptimeSeconds: number
  connections: number
  projects: number
  sessions: number
  frames: { in: number, out: number }
  ops: { appended: number, duplicate: number }
  broadcasts: { published: number, received: number }
  fallbacks: number
  recoveries: number
  memory: { rss: number, heapUsed: number }
  eventLoop: { delayMs: { p50: number, p99: number, max: number }, utilization: number }
}

async function stats (app: FastifyInstance): Promise<StatsBody> {
  const res = await app.inject({ method: 'GET', url: '/ws/stats' })
  if (res.statusCode !== 200) throw new Error(`/ws/stats: ${res.statusCode}`)
  return res.json<StatsBody>()
}

/** Samples of a Prometheus text body, by metric name with labels. */
function samples (text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (-?[0-9.eE+-]+|NaN|Nan|[+-]Inf)$/.exec(line)
    if (match === null) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`)
    out.set(match[1] as string, Number(match[2]))
  }
  return out
}

async function metrics (app: FastifyInstance): Promise<Map<string, number>> {
  const res = await app.inject({ method: 'GET', url: '/metrics' })
  if (res.statusCode !== 200) throw new Error(`/metrics: ${res.statusCode}`)
  return samples(res.body)
}

t.test('/health answers ok with every port on memory and auth open', async (t) => {
  const { app } = await startServer(t, { instanceId: 'health-1' })
  const res = await app.inject({ method: 'GET', url: '/health' })
  t.equal(res.statusCode, 200)
  const body = res.json<Record<string, unknown>>()
  t.match(body, {
    status: 'ok',
    instanceId: 'health-1',
    auth: 'open',
    ports: {
      sessions: { adapter: 'memory', circuit: null },
      broadcaster: { adapter: 'memory', circuit: null },
      log: { adapter: 'memory', circuit: null }
    },
    redis: { configured: false, connected: null },
    seqScope: 'instance',
    draining: false
  })
  t.type(body.uptime, 'number')
  t.notOk((body.warnings as string[]).some((w) => /seqs are per instance/.test(w)), 'one instance on memory is not warned about per-instance seqs')
})

t.test('/health reports auth jwt when a secret is set, and needs no token', async (t) => {
  const { app } = await startServer(t, { jwtSecret: SECRET })
  const res = await app.inject({ method: 'GET', url: '/health' })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { status: 'ok', auth: 'jwt' })
})

t.test('/ws/stats counts connections, projects, sessions, frames and ops as a client joins and sends ops', async (t) => {
  const server = await startServer(t, { instanceId: 'stats-1' })
  const before = await stats(server.app)
  t.match(before, { instanceId: 'stats-1', connections: 0, projects: 0, sessions: 0, frames: { in: 0, out: 0 }, ops: { appended: 0, duplicate: 0 }, fallbacks: 0, recoveries: 0 })
  t.type(before.uptimeSeconds, 'number')
  t.ok(before.memory.rss > 0 && before.memory.heapUsed > 0, 'memory has rss and heap figures')
  t.type(before.eventLoop.delayMs.p99, 'number')
  t.type(before.eventLoop.utilization, 'number')
  t.type(before.broadcasts.published, 'number')

  const alice = await connect(t, server.ws + '?userId=alice')
  await alice.join('doc-1')
  await alice.request({ type: 'op', project: 'doc-1', id: 'a', data: 1 })
  await alice.request({ type: 'op', project: 'doc-1', id: 'b', data: 2 })
  await alice.request({ type: 'op', project: 'doc-1', id: 'a', data: 1 })
  const during = await stats(server.app)
  t.match(during, { connections: 1, projects: 1, sessions: 1, ops: { appended: 2, duplicate: 1 } })
  t.equal(during.frames.in, 4, 'join and three ops came in')
  t.ok(during.frames.out >= 4, 'joined and three acks went out')
  t.ok(during.broadcasts.published > before.broadcasts.published, 'the join and the ops were published')

  alice.close()
  const after = await waitFor(async () => {
    const s = await stats(server.app)
    return s.connections === 0 ? s : undefined
  }, { what: 'the connection to be counted closed', timeoutMs: 5000, intervalMs: 20 })
  t.match(after, { connections: 0, projects: 0, sessions: 0, ops: { appended: 2 } })
})

t.test('/metrics is Prometheus text whose flow_* figures move with the traffic', async (t) => {
  const server = await startServer(t, { instanceId: 'metrics-1' })
  const res = await server.app.inject({ method: 'GET', url: '/metrics' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  const typed = new Set([...res.body.matchAll(/^# TYPE (\S+) (counter|gauge|histogram|summary)$/gm)].map((m) => m[1]))
  const helped = new Set([...res.body.matchAll(/^# HELP (\S+) .+$/gm)].map((m) => m[1]))
  const before = samples(res.body)
  for (const name of before.keys()) {
    const sample = name.replace(/\{.*$/, '')
    // A histogram's or summary's samples carry suffixes of the declared name.
    const bare = typed.has(sample) ? sample : sample.replace(/_(bucket|sum|count)$/, '')
    t.ok(typed.has(bare) && helped.has(bare), `${bare} has HELP and TYPE`)
  }
  for (const name of ['flow_connections', 'flow_frames_in_total', 'flow_frames_out_total', 'flow_ops_appended_total', 'flow_ops_duplicate_total', 'flow_sessions', 'flow_projects']) {
    t.equal(before.get(name), 0, `${name} starts at 0`)
  }
  t.equal(before.get('flow_up{instance="metrics-1"}'), 1)
  for (const name of typed) {
    if (name?.startsWith('flow_') === true && name.endsWith('_total')) t.ok(res.body.includes(`# TYPE ${name} counter`), `${name} is a counter`)
  }

  const alice = await connect(t, server.ws + '?userId=alice')
  await alice.join('doc-1')
  await alice.request({ type: 'op', project: 'doc-1', data: 1 })
  await alice.request({ type: 'nonsense' })
  const after = await metrics(server.app)
  t.equal(after.get('flow_connections'), 1)
  t.equal(after.get('flow_sessions'), 1)
  t.equal(after.get('flow_projects'), 1)
  t.equal(after.get('flow_ops_appended_total'), 1)
  t.equal(after.get('flow_frames_in_total'), 3)
  t.equal(after.get('flow_frames_in_by_type_total{type="op"}'), 1)
  t.equal(after.get('flow_frames_rejected_total'), 1)
  t.equal(after.get('flow_errors_total{code="unknown_type"}'), 1)
  t.ok((after.get('flow_frames_out_total') ?? 0) >= 3)
  t.ok((after.get('flow_connections_opened_total') ?? 0) === 1)
})

t.test('/metrics carries the default process metrics and the delivery latency histogram', async (t) => {
  const { startServer } = await import('../helpers/server.js')
  const { connect } = await import('../helpers/client.js')
  const server = await startServer(t)
  const a = await connect(t, server.ws)
  const b = await connect(t, server.ws)
  await a.join('m')
  await b.join('m')
  await a.request({ type: 'op', project: 'm', data: 1 })
  await b.next('op')
  const text = (await server.app.inject({ url: '/metrics' })).body
  t.match(text, /^process_cpu_user_seconds_total \d/m, 'prom-client default metrics')
  t.match(text, /^process_resident_memory_bytes \d/m)
  t.match(text, /^flow_delivery_latency_seconds_count 1$/m, 'one op delivered, one observation')
  t.match(text, /^flow_delivery_latency_seconds_bucket\{le="\+Inf"\} 1$/m)
})

t.test('two Flow apps in one process each serve their own figures, and their counters move with their own traffic', async (t) => {
  const one = await startServer(t, { instanceId: 'metrics-one' })
  const two = await startServer(t, { instanceId: 'metrics-two' })
  const before = await metrics(one.app)
  t.equal(before.get('flow_frames_in_total'), 0)
  t.equal(before.get('flow_ops_appended_total'), 0)

  const alice = await connect(t, one.ws + '?userId=alice')
  await alice.join('doc-1')
  await alice.request({ type: 'op', project: 'doc-1', data: 1 })
  const first = await metrics(one.app)
  const second = await metrics(two.app)
  // Counters of what came in: frames out may still be on their way.
  const counters = (m: Map<string, number>): Array<[string, number]> => [...m].filter(([name]) => /^flow_(frames_in|ops_appended|connections_opened)\w*_total\b/.test(name))
  t.same(counters(await metrics(one.app)), counters(first), 'a scrape without traffic between reads the same counters')
  t.equal(first.get('flow_frames_in_total'), 2, 'the join and the op moved the first app\'s counter')
  t.equal(first.get('flow_ops_appended_total'), 1)
  t.equal(first.get('flow_frames_in_by_type_total{type="join"}'), 1)
  t.equal(first.get('flow_connections'), 1)
  t.equal(second.get('flow_frames_in_total'), 0, 'the second app saw no frames')
  t.equal(second.get('flow_ops_appended_total'), 0)
  t.notOk(second.has('flow_frames_in_by_type_total{type="join"}'))
  t.equal(second.get('flow_connections'), 0)
  t.equal(first.get('flow_up{instance="metrics-one"}'), 1)
  t.notOk(first.has('flow_up{instance="metrics-two"}'))
  t.equal(second.get('flow_up{instance="metrics-two"}'), 1)
  t.notOk(second.has('flow_up{instance="metrics-one"}'))

  t.same(register.getMetricsAsArray().map((m) => m.name).filter((name) => name.startsWith('flow_')), [], 'nothing went to the global registry')

  alice.close()
  await one.close()
  const after = await metrics(two.app)
  t.equal(after.get('flow_up{instance="metrics-two"}'), 1, 'closing the first app leaves the second one\'s figures')
  t.equal(after.get('flow_frames_in_total'), 0)
})
