/**
 * The hostile user's scenarios, end to end, as a user meets the server
 * (docs/protocol.md; the bounds of the "bounded by bytes and time" work):
 * one big read, a Redis that must not grow, a memory log that must forget,
 * an outage buffer bounded by bytes, fair replays. Real `npm start`
 * processes (node dist/server.js) where the point is memory or Redis state,
 * two of them sharing one Redis with all three flags on where the point is
 * the cluster. The adapters' own bounds are unit-tested in
 * test/adapters/*operation-log*; here each is met through the server.
 */
import { setTimeout as pace } from 'node:timers/promises'
import t from 'tap'
import { connect, type Frame, type TestClient } from '../helpers/client.js'
import { ensureBuilt, startEntry, type EntryServer } from '../helpers/process.js'
import { range, seqsOf, until } from '../helpers/protocol.js'
import { startProxy } from '../helpers/proxy.js'
import { keysUnder, redisClient, startRedis, uniquePrefix, type TestRedisClient } from '../helpers/redis.js'
import { waitFor, withDeadline } from '../helpers/wait.js'
import { redisKeys } from '../../adapters/redis/keys.js'

const KiB = 1024
const MiB = 1024 * KiB
/** Data of one large op: 63 KiB, so its frame fits the default 64 KiB frame limit. */
const BIG = 63 * KiB
/** The old space of the memory-mode server (MiB): what it keeps must fit. */
const HEAP_CAP_MIB = 192
/** Every port on Redis. */
// One test process plays every client, from one address: without authentication they would share one
// identity's byte budgets (test/protocol/identity-budgets.test.ts) and be one slow client. Not the point here.
const UNBUDGETED = {
  FLOW_IDENTITY_READ_BYTES_PER_SECOND: String(1024 * MiB),
  FLOW_IDENTITY_WRITE_BYTES_PER_SECOND: String(1024 * MiB)
}
const ON_REDIS = { USE_REDIS_COLLABORATION: 'true', USE_REDIS_WEBSOCKETS: 'true', USE_REDIS_EVENT_ORDERING: 'true' }

t.before(ensureBuilt)

interface Health {
  readonly status: string
  readonly ports: Record<string, { readonly circuit: string | null, readonly serving: string }>
}

interface Stats {
  readonly history?: { readonly bytes: number, readonly projects: number } | null
  readonly memory: { readonly rss: number }
}

interface HistoryPage {
  readonly epoch: string
  readonly seq: number
  readonly ops: ReadonlyArray<{ readonly seq: number, readonly id: string }>
  readonly reset: boolean
}

async function getJson<T> (url: string): Promise<{ status: number, body: T, bytes: number }> {
  const res = await fetch(url)
  const text = await res.text()
  return { status: res.status, body: JSON.parse(text) as T, bytes: Buffer.byteLength(text) }
}

async function stats (server: EntryServer): Promise<Stats> {
  return (await getJson<Stats>(`${server.http}/ws/stats`)).body
}

async function health (server: EntryServer): Promise<{ status: number, body: Health }> {
  return await getJson<Health>(`${server.http}/health`)
}

/** Waits until every server's /health says ok (each port on Redis, its circuit closed). */
async function allOk (servers: readonly EntryServer[], timeoutMs = 10_000): Promise<void> {
  await waitFor(async () => {
    const reports = await Promise.all(servers.map(health))
    return reports.every((r) => r.status === 200 && r.body.status === 'ok')
  }, { what: '/health to say ok on every instance', timeoutMs, intervalMs: 50 })
}

/**
 * Sends `count` ops of `bytes` bytes of data to `project` with ids
 * `${tag}-0`, `${tag}-1`, ..., at most `window` unacknowledged, and resolves
 * once every one is acked; rejects on an error frame or after `timeoutMs`.
 */
async function pump (client: TestClient, project: string, tag: string, count: number, bytes: number,
  { window = 16, timeoutMs = 30_000 } = {}): Promise<void> {
  const data = 'x'.repeat(bytes)
  let sent = 0
  let acked = 0
  const fill = (): void => {
    while (sent < count && sent - acked < window) {
      const id = `${tag}-${sent++}`
      client.send(`{"type":"op","project":"${project}","id":"${id}","ref":"${id}","data":"${data}"}`)
    }
  }
  const done = new Promise<void>((resolve, reject) => {
    const onMessage = (raw: Buffer): void => {
      if (raw.length > 1024) return
      const frame = JSON.parse(raw.toString('utf8')) as Frame
      if (typeof frame.ref !== 'string' || !frame.ref.startsWith(`${tag}-`)) return
      if (frame.type === 'error') {
        client.socket.off('message', onMessage)
        reject(new Error(`${String(frame.ref)} answered ${JSON.stringify(frame)}`))
        return
      }
      if (frame.type !== 'ack') return
      acked++
      if (acked === count) {
        client.socket.off('message', onMessage)
        resolve()
        return
      }
      fill()
    }
    client.socket.on('message', onMessage)
    void client.closed.then(({ code }) => { reject(new Error(`the connection closed (${code}) with ${acked} of ${count} acks of ${tag}`)) })
  })
  fill()
  await withDeadline(done, `${count} acks of ${tag}`, timeoutMs)
}

/**
 * Polls `/health` of every server until stopped (a monitor, not a wait:
 * the interval paces the probes) and resolves what was not a 200 `ok`.
 */
function watchHealth (servers: readonly EntryServer[]): { readonly probes: () => number, readonly stop: () => Promise<string[]> } {
  const bad: string[] = []
  let probes = 0
  let stopped = false
  const loop = (async () => {
    while (!stopped) {
      await Promise.all(servers.map(async (server, i) => {
        probes++
        try {
          const { status, body } = await health(server)
          if (status !== 200 || body.status !== 'ok') bad.push(`instance ${i}: ${status} ${JSON.stringify(body).slice(0, 300)}`)
        } catch (err) {
          bad.push(`instance ${i}: ${String(err)}`)
        }
      }))
      await pace(100)
    }
  })()
  return {
    probes: () => probes,
    stop: async () => {
      stopped = true
      await loop
      return bad
    }
  }
}

interface Paged {
  readonly pages: ReadonlyArray<{ readonly ops: number, readonly bytes: number }>
  readonly seqs: readonly number[]
  /** what stopped the reading before the head (an error, a reset, another epoch), or null */
  readonly problem: string | null
}

/**
 * Reads a project's whole history with GET ops and limit 1,000, each page
 * from the last seq of the one before, until the head; every page must be
 * of `epoch`.
 */
async function readHistory (server: EntryServer, project: string, epoch: string): Promise<Paged> {
  const pages: Array<{ ops: number, bytes: number }> = []
  const seqs: number[] = []
  try {
    for (let since = 0; ;) {
      const { status, body, bytes } = await getJson<HistoryPage>(`${server.http}/projects/${project}/ops?since=${since}&limit=1000`)
      if (status !== 200 || body.reset || body.epoch !== epoch) {
        return { pages, seqs, problem: `since ${since}: ${status} ${JSON.stringify({ ...body, ops: body.ops?.length })}` }
      }
      pages.push({ ops: body.ops.length, bytes })
      seqs.push(...body.ops.map((op) => op.seq))
      const last = body.ops.at(-1)
      if (last === undefined || last.seq >= body.seq) return { pages, seqs, problem: null }
      since = last.seq
    }
  } catch (err) {
    return { pages, seqs, problem: String(err) }
  }
}

/**
 * Two members of `project` taking turns to send an op and await its ack,
 * until stopped: the traffic of the other users while a test does harm.
 */
function chatter (first: TestClient, second: TestClient, project: string): { rounds: () => number, problem: () => string | null, stop: () => Promise<void> } {
  let rounds = 0
  let problem: string | null = null
  let stopped = false
  const loop = (async () => {
    while (!stopped) {
      const sender = rounds % 2 === 0 ? first : second
      const reply = await sender.request({ type: 'op', project, data: rounds }).catch((err: unknown) => ({ type: String(err) }))
      if (reply.type !== 'ack') {
        problem = `op ${rounds} answered ${JSON.stringify(reply)}`
        return
      }
      rounds++
      // Paced gently: the point is that their ops keep flowing, not how fast.
      await pace(20)
    }
  })()
  return {
    rounds: () => rounds,
    problem: () => problem,
    stop: async () => {
      stopped = true
      await loop
    }
  }
}

/** Seqs of the `op` and `ack` frames of `client` for `project`, in arrival order: 1..n when it saw every op once, in order. */
function timeline (client: TestClient, project: string): number[] {
  return client.received.filter((f) => (f.type === 'op' || f.type === 'ack') && f.project === project).map((f) => f.seq as number)
}

/** Bytes Redis holds for `keys` (MEMORY USAGE, every element sampled). */
async function memoryUsage (redis: TestRedisClient, keys: readonly string[]): Promise<number> {
  let total = 0
  for (const key of keys) total += Number(await redis.sendCommand(['MEMORY', 'USAGE', key, 'SAMPLES', '0']) ?? 0)
  return total
}

/** The Redis keys under `prefix` that belong to `project` (its op log's, tagged `{project}`). */
async function projectKeys (redis: TestRedisClient, prefix: string, project: string): Promise<string[]> {
  return (await keysUnder(redis, prefix)).filter((key) => key.includes(`{${project}}`))
}

t.test('one big read never looks like an outage: a 63 MB history is paged over HTTP and replayed to a joiner while other projects keep working', async (t) => {
  const redis = await startRedis(t)
  const env = {
    ...ON_REDIS,
    REDIS_URL: redis.url,
    FLOW_KEY_PREFIX: uniquePrefix(),
    // 1,000 ops of 63 KiB fit the history: the read is what is big.
    FLOW_HISTORY_BYTES: String(128 * MiB),
    // A watchdog of 300 ms (default 1 s): one reply of 63 MB keeps Redis silent for longer than that.
    FLOW_REDIS_COMMAND_TIMEOUT_MS: '300',
    // The 63 MB replay in about 2 s (the budget itself is tested below).
    FLOW_REPLAY_BYTES_PER_SECOND: String(32 * MiB),
    // Not the point here: a busy machine's stall must not answer 503, and the paging reader is one client.
    FLOW_MAX_EVENT_LOOP_DELAY_MS: '0',
    ...UNBUDGETED,
    FLOW_HTTP_RATE_LIMIT: '100000'
  }
  const [a, b] = await Promise.all([startEntry(t, { ...env, FLOW_INSTANCE_ID: 'a' }), startEntry(t, { ...env, FLOW_INSTANCE_ID: 'b' })])
  await allOk([a, b])
  const COUNT = 1000

  // The history is written through B: A meets the project first by the read.
  const writer = await connect(t, `${b.ws}?userId=writer`, { timeoutMs: 30_000 })
  const epoch = (await writer.join('big')).epoch as string
  await pump(writer, 'big', 'w', COUNT, BIG, { timeoutMs: 60_000 })
  writer.close()

  // Members of another project, two on A and one on B, exchanging ops all along.
  const alice = await connect(t, `${a.ws}?userId=alice`, { timeoutMs: 15_000 })
  const bob = await connect(t, `${a.ws}?userId=bob`, { timeoutMs: 15_000 })
  const carol = await connect(t, `${b.ws}?userId=carol`, { timeoutMs: 15_000 })
  for (const member of [alice, bob, carol]) await member.join('chat')
  const chat = chatter(alice, carol, 'chat')
  const monitor = watchHealth([a, b])
  let outcome: { read: Paged, replayed: string | null, joined: Frame }
  let joiner: TestClient
  let joinerClosed = false
  try {
    // The reader: GET ops with limit 1,000 on A, from the last seq it got until the head.
    const read = readHistory(a, 'big', epoch)
    // The joiner: join with since 0 on A.
    joiner = await connect(t, `${a.ws}?userId=joiner`, { timeoutMs: 60_000 })
    void joiner.closed.then(() => { joinerClosed = true })
    const joined = await joiner.join('big', { since: 0 })
    const replayed = until(joiner, () => joinerClosed || joiner.all('reset').length > 0 || seqsOf(joiner, 'big').length >= COUNT,
      `${COUNT} replayed ops`, 60_000).then(() => null, (err: unknown) => String(err))
    outcome = { read: await read, replayed: await replayed, joined }
  } finally {
    await chat.stop()
  }
  const unhealthy = await monitor.stop()
  const { read, replayed, joined } = outcome

  t.same(unhealthy, [], `/health answered 200 ok on both instances all along (${monitor.probes()} probes)`)
  t.equal(read.problem, null, 'the reader met no error, reset or other epoch')
  t.same(read.seqs, range(1, COUNT), 'the reader got every op, in order, across pages')
  const largest = Math.max(0, ...read.pages.map((p) => p.ops))
  t.ok(read.pages.length > 1 && largest < COUNT, `pages ended early by bytes (${read.pages.length} pages of at most ${largest} ops)`)
  t.ok(Math.max(0, ...read.pages.map((p) => p.bytes)) < 2 * MiB, `no page was a giant reply (largest ${Math.max(0, ...read.pages.map((p) => p.bytes))} bytes)`)
  t.equal(replayed, null, 'the replay ended')
  t.equal(joinerClosed, false, 'the joiner was not closed')
  t.match(joined, { epoch, seq: COUNT }, 'the joiner joined at the head, in the writer\'s epoch')
  t.same(seqsOf(joiner, 'big'), range(1, COUNT), 'the joiner got the whole replay, in order')
  t.equal(chat.problem(), null, 'every chat op was acked')
  t.ok(chat.rounds() > 0, `the other project kept exchanging ops meanwhile (${chat.rounds()} round trips)`)
  for (const [name, member] of Object.entries({ alice, bob, carol })) {
    const seen = await until(member, () => timeline(member, 'chat').length >= chat.rounds() ? timeline(member, 'chat') : undefined,
      `${name}: every chat op or its ack`, 10_000).catch(() => timeline(member, 'chat'))
    t.same(seen, range(1, chat.rounds()), `${name} got every chat op (or its ack) once, in order`)
  }
  for (const [name, member] of Object.entries({ alice, bob, carol, joiner })) t.same(member.all('reset'), [], `${name} got no reset`)
})

t.test('Redis does not grow without bound: reads create nothing, new projects are capped per identity, a project\'s history is bounded by bytes and expires', async (t) => {
  const redis = await startRedis(t)
  const client = await redisClient(t, redis.url)
  const prefix = uniquePrefix()
  const historyBytes = 4 * MiB
  const perMinute = 5
  const server = await startEntry(t, {
    ...ON_REDIS,
    REDIS_URL: redis.url,
    FLOW_KEY_PREFIX: prefix,
    FLOW_HISTORY_BYTES: String(historyBytes),
    FLOW_PROJECTS_PER_MINUTE: String(perMinute),
    FLOW_MAX_EVENT_LOOP_DELAY_MS: '0',
    ...UNBUDGETED
  })
  await allOk([server])
  const mentions = async (project: string): Promise<string[]> => (await keysUnder(client, prefix)).filter((key) => key.includes(project))

  t.test('a read of a project that does not exist creates no key', async (t) => {
    // The keys of op logs (tagged with a project id; the instance's own keys, its probe and lease, may come and go).
    const logKeys = async (): Promise<string[]> => (await keysUnder(client, prefix)).filter((key) => /\{[^#}]/.test(key))
    const before = await logKeys()
    const answers: unknown[] = []
    for (let i = 0; i < 20; i++) {
      const ops = await getJson<HistoryPage>(`${server.http}/projects/ghost-${i}/ops?since=0`)
      const members = await getJson<{ members: unknown[] }>(`${server.http}/projects/ghost-${i}/members`)
      answers.push({ ops: [ops.status, ops.body], members: [members.status, members.body.members] })
    }
    t.same(answers, range(0, 19).map((i) => ({ ops: [200, { project: `ghost-${i}`, epoch: 'none', seq: 0, ops: [], reset: false }], members: [200, []] })),
      'each was answered: no epoch, head 0, no member')
    const mentioned = (await keysUnder(client, prefix)).filter((key) => key.includes('ghost-'))
    t.same(mentioned, [], 'no key names any of them')
    t.same(await logKeys(), before, 'no op log key was made')
  })

  const created: string[] = []
  t.test(`one identity may create ${perMinute} projects a minute: the next are refused with 429 rate_limited and leave no key`, async (t) => {
    // Without authentication, every op posted over HTTP is the identity `api`.
    const answers: Array<{ project: string, status: number, code?: string }> = []
    for (let i = 0; i < perMinute + 3; i++) {
      const project = `new-${i}`
      const res = await fetch(`${server.http}/projects/${project}/ops`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ data: i })
      })
      const body = await res.json() as { code?: string }
      answers.push({ project, status: res.status, code: body.code })
    }
    t.same(answers.slice(0, perMinute).map((a) => a.status), range(1, perMinute).map(() => 201), `the first ${perMinute} are created`)
    t.same(answers.slice(perMinute).map((a) => [a.status, a.code]), [[429, 'rate_limited'], [429, 'rate_limited'], [429, 'rate_limited']], 'the next are refused')
    for (const { project, status } of answers) {
      const keys = await mentions(project)
      if (status === 201) {
        created.push(project)
        t.ok(keys.length > 0, `${project} has its keys`)
      } else {
        t.same(keys, [], `${project}, refused, has no key`)
      }
    }
    const existing = await fetch(`${server.http}/projects/new-0/ops`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ data: 'again' })
    })
    t.equal(existing.status, 201, 'an op to a project that exists is not a creation: still accepted')
  })

  t.test('2,000 ops of 60 KB to one project keep its keys within about FLOW_HISTORY_BYTES', async (t) => {
    const writer = await connect(t, `${server.ws}?userId=writer`, { timeoutMs: 30_000 })
    await writer.join('heavy')
    let highest = 0
    for (let batch = 0; batch < 20; batch++) {
      await pump(writer, 'heavy', `b${batch}`, 100, 60 * KiB)
      highest = Math.max(highest, await memoryUsage(client, await projectKeys(client, prefix, 'heavy')))
    }
    // Stream entries and the id hashes cost a little beyond the ops' bytes: 1 MiB of slack.
    t.ok(highest < historyBytes + MiB, `the project's keys never held more than FLOW_HISTORY_BYTES + 1 MiB (at most ${highest} bytes)`)
    t.ok(highest > historyBytes / 2, `and they did hold its history (${highest})`)
    const page = await getJson<HistoryPage>(`${server.http}/projects/heavy/ops?since=0&limit=1`)
    t.equal(page.body.seq, 2000, 'every op was appended')
    t.equal(page.body.reset, true, 'the oldest are gone')
    created.push('heavy')
  })

  t.test('every key of a project carries a TTL after an append', async (t) => {
    for (const project of created) {
      const keys = await projectKeys(client, prefix, project)
      const ttls = await Promise.all(keys.map(async (key) => [key.slice(prefix.length), await client.pTTL(key)] as const))
      t.ok(keys.length >= 3 && ttls.every(([, ttl]) => ttl > 0), `${project}: every key expires: ${JSON.stringify(ttls)}`)
    }
  })
})

t.test('memory mode forgets: reads of unknown projects keep nothing; ops of 63 KB to 20 projects stay within FLOW_MEMORY_HISTORY_BYTES and the RSS stays bounded', async (t) => {
  const budget = 32 * MiB
  const server = await startEntry(t, {
    // The old space capped, as a container's memory limit would: what the
    // process keeps must fit, and the garbage of the flood is collected
    // before the heap grows far (V8 grows an uncapped heap to a few times
    // what it keeps before it collects, which would hide what is kept).
    NODE_OPTIONS: `--max-old-space-size=${HEAP_CAP_MIB}`,
    FLOW_MEMORY_HISTORY_BYTES: String(budget),
    FLOW_MAX_EVENT_LOOP_DELAY_MS: '0',
    ...UNBUDGETED,
    // The 1,000 reads below come from one address: the HTTP rate limit is not the point here.
    FLOW_HTTP_RATE_LIMIT: '100000'
  })
  const writer = await connect(t, `${server.ws}?userId=writer`, { timeoutMs: 30_000 })
  const projects = range(0, 19)
  for (const i of projects) await writer.join(`doc-${i}`)

  const before = await stats(server)
  const answers = new Map<string, number>()
  for (let i = 0; i < 1000; i += 50) {
    await Promise.all(range(i, i + 49).map(async (n) => {
      const res = await getJson<HistoryPage>(`${server.http}/projects/unknown-${n}/ops?since=0`)
      const answer = `${res.status} ${res.body.epoch} ${res.body.seq}`
      answers.set(answer, (answers.get(answer) ?? 0) + 1)
    }))
  }
  t.same(Object.fromEntries(answers), { '200 none 0': 1000 }, 'each of 1,000 unknown projects was read as no epoch, head 0')
  const after = await stats(server)
  t.equal(after.history?.projects, 20, 'history.projects counts the 20 joined projects')
  t.equal(after.history?.projects, before.history?.projects, 'the reads left history.projects unchanged')

  // One client floods its 20 projects with 63 KiB ops: 8 times the budget.
  const baseline = after.memory.rss
  const ROUNDS = 20
  const PER_ROUND = 10
  const seen = { bytes: 0, projects: 0, rss: 0, rounds: 0 }
  const rss: number[] = []
  let died: string | null = null
  try {
    for (let round = 0; round < ROUNDS; round++) {
      await Promise.all(projects.map(async (i) => { await pump(writer, `doc-${i}`, `p${i}r${round}`, PER_ROUND, BIG, { window: 4 }) }))
      const now = await stats(server)
      seen.bytes = Math.max(seen.bytes, now.history?.bytes ?? Infinity)
      seen.projects = Math.max(seen.projects, now.history?.projects ?? Infinity)
      seen.rss = Math.max(seen.rss, now.memory.rss)
      seen.rounds++
      rss.push(Math.round(now.memory.rss / MiB))
    }
  } catch (err) {
    const fatal = /FATAL ERROR[^\n]*/.exec(server.proc.stderr)?.[0] ?? server.proc.stderr.slice(-300)
    died = `${String(err)}; the server ${server.proc.running ? 'runs' : `exited: ${fatal}`}`
  }
  const sent = seen.rounds * PER_ROUND * projects.length * BIG
  t.comment(`RSS (MiB) from ${Math.round(baseline / MiB)}, after each round of ${PER_ROUND * projects.length} ops: ${rss.join(' ')}`)
  t.equal(died, null, 'the server took every op')
  t.ok(seen.bytes <= budget, `history.bytes never exceeded FLOW_MEMORY_HISTORY_BYTES (at most ${seen.bytes} in ${seen.rounds} samples)`)
  t.ok(seen.bytes > budget / 2, 'and the history did fill it')
  t.equal(seen.projects, 20, 'every project was kept (their oldest ops went first)')
  t.ok(seen.rss - baseline < budget + 128 * MiB, `the RSS grew by less than the budget + 128 MiB (${seen.rss - baseline} bytes, after ${sent} sent)`)
})

t.test('the outage buffer is bounded by bytes: cut off from Redis, an instance acks ops within FLOW_OUTAGE_BUFFER_BYTES, answers the rest unavailable, and appends every acked op once after recovery', async (t) => {
  const redis = await startRedis(t)
  const proxy = await startProxy(t, redis.port)
  const admin = await redisClient(t, redis.url)
  const prefix = uniquePrefix()
  const bufferBytes = MiB
  const server = await startEntry(t, {
    ...ON_REDIS,
    REDIS_URL: `redis://127.0.0.1:${proxy.port}`,
    FLOW_KEY_PREFIX: prefix,
    FLOW_OUTAGE_BUFFER_BYTES: String(bufferBytes),
    // An outage is seen, and left, within a second or two.
    FLOW_REDIS_COMMAND_TIMEOUT_MS: '300',
    FLOW_REDIS_PROBE_INTERVAL_MS: '200',
    FLOW_MAX_EVENT_LOOP_DELAY_MS: '0',
    ...UNBUDGETED
  })
  await allOk([server])
  const client = await connect(t, `${server.ws}?userId=sender`, { timeoutMs: 15_000 })
  await client.join('doc')
  const data = 'x'.repeat(60 * KiB)
  for (let i = 0; i < 3; i++) t.equal((await client.request({ type: 'op', project: 'doc', id: `before-${i}`, data })).type, 'ack', `before-${i} acked`)

  proxy.refuse(true)
  proxy.cut()
  await waitFor(async () => (await health(server)).body.ports.log?.serving === 'memory', { what: 'the op log to serve from memory', timeoutMs: 10_000, intervalMs: 20 })
  await client.next('reset')
  // Three times the buffer, one op at a time.
  const answers: Array<{ id: string, type: string, code?: unknown }> = []
  for (let i = 0; i < 50; i++) {
    const id = `during-${i}`
    const reply = await client.request({ type: 'op', project: 'doc', id, data })
    answers.push({ id, type: reply.type, code: reply.code })
  }
  const acked = answers.filter((a) => a.type === 'ack').map((a) => a.id)
  const refused = answers.filter((a) => a.type !== 'ack')
  const opBytes = Buffer.byteLength(data)
  t.ok(acked.length > 0 && refused.length > 0, `${acked.length} acked, ${refused.length} refused`)
  t.same(answers.slice(0, acked.length).map((a) => a.type), acked.map(() => 'ack'), 'the acked ones came first')
  t.same(refused.map((a) => [a.type, a.code]), refused.map(() => ['error', 'unavailable']), 'the others were answered unavailable')
  t.ok(acked.length * opBytes <= bufferBytes, `the acked ops fit FLOW_OUTAGE_BUFFER_BYTES (${acked.length} of ${opBytes} bytes of data)`)
  t.ok((acked.length + 2) * opBytes > bufferBytes, 'and they filled it')

  proxy.refuse(false)
  await allOk([server], 15_000)
  const entries = await admin.xRange(redisKeys(prefix).opLog('doc').ops, '-', '+') ?? []
  const ids = entries.map((entry) => (JSON.parse(entry.message.op as string) as { id: string }).id)
  const expected = ['before-0', 'before-1', 'before-2', ...acked]
  t.same(ids, expected, 'the Redis log holds the ops acked before and during the outage, each once, in order, and none refused')
})

t.test('replays are fair: a join that replays ~3 MiB keeps to FLOW_REPLAY_BYTES_PER_SECOND, is not closed for a backlog, and gets every op while another member\'s ops keep flowing', async (t) => {
  const perSecond = MiB
  const pageBytes = 256 * KiB
  const server = await startEntry(t, {
    FLOW_REPLAY_BYTES_PER_SECOND: String(perSecond),
    FLOW_REPLAY_PAGE_BYTES: String(pageBytes),
    // Smaller than the replay: a replay sent at once would be a slow consumer's backlog.
    FLOW_MAX_BUFFERED_BYTES: String(MiB),
    FLOW_MAX_EVENT_LOOP_DELAY_MS: '0',
    ...UNBUDGETED
  })
  const seeder = await connect(t, `${server.ws}?userId=seeder`, { timeoutMs: 15_000 })
  await seeder.join('doc')
  // 53 ops of 63 KiB: about 3.3 MiB of replay.
  const SEEDED = 53
  await pump(seeder, 'doc', 'seed', SEEDED, BIG)
  seeder.close()
  // Two members exchanging ops all along; each round trip must be answered within 5 s (their deadline).
  const writer = await connect(t, `${server.ws}?userId=writer`, { timeoutMs: 5000 })
  const watcher = await connect(t, `${server.ws}?userId=watcher`, { timeoutMs: 5000 })
  for (const member of [writer, watcher]) await member.join('doc')
  const chat = chatter(writer, watcher, 'doc')

  /** Joins with since 0 on a new connection; resolves how long until the replay was complete, and the connection. */
  const replaying = async (name: string): Promise<{ client: TestClient, ms: number, bytes: number, rounds: number, closed: () => boolean }> => {
    const client = await connect(t, `${server.ws}?userId=${name}`, { timeoutMs: 30_000 })
    let closed = false
    void client.closed.then(() => { closed = true })
    const started = Date.now()
    const rounds = chat.rounds()
    await client.join('doc', { since: 0 })
    await until(client, () => closed || seqsOf(client, 'doc').length >= SEEDED, `${name}'s replay`, 30_000)
    const ms = Date.now() - started
    const bytes = client.received.filter((f) => f.type === 'op' && (f.seq as number) <= SEEDED).reduce((sum, f) => sum + JSON.stringify(f).length, 0)
    return { client, ms, bytes, rounds: chat.rounds() - rounds, closed: () => closed }
  }
  let one: Awaited<ReturnType<typeof replaying>>
  let four: Array<Awaited<ReturnType<typeof replaying>>>
  try {
    one = await replaying('alone')
    four = await Promise.all(range(1, 4).map(async (i) => await replaying(`crowd${i}`)))
  } finally {
    await chat.stop()
  }
  const head = SEEDED + chat.rounds()
  t.equal(chat.problem(), null, 'every op of the two members was acked within its deadline')
  t.ok(one.rounds > 0 && four.every((r) => r.rounds > 0),
    `their round trips were answered during each replay (${[one, ...four].map((r) => r.rounds).join(', ')}; ${chat.rounds()} in all)`)
  for (const [name, member] of Object.entries({ writer, watcher })) {
    const seen = await until(member, () => timeline(member, 'doc').length >= chat.rounds() ? timeline(member, 'doc') : undefined,
      `${name}: every op or its ack`, 10_000).catch(() => timeline(member, 'doc'))
    t.same(seen, range(SEEDED + 1, head), `${name} got every op (or its ack) once, in order`)
  }

  // The budget: 1 s worth at once, then the rest at the rate (the last page may go as soon as the budget allows).
  const least = (bytes: number): number => 1000 * (bytes - perSecond - pageBytes - BIG) / perSecond - 50
  t.ok(one.bytes > 3 * MiB, `the replay was ${one.bytes} bytes`)
  t.ok(one.ms >= least(one.bytes), `the replay took ${one.ms} ms: at least ${Math.round(least(one.bytes))} ms at FLOW_REPLAY_BYTES_PER_SECOND`)
  for (const [name, r] of Object.entries({ alone: one, ...Object.fromEntries(four.map((r, i) => [`crowd${i + 1}`, r])) })) {
    const seen = await until(r.client, () => r.closed() || seqsOf(r.client, 'doc').length >= head ? seqsOf(r.client, 'doc') : undefined,
      `${name}: every op`, 10_000).catch(() => seqsOf(r.client, 'doc'))
    t.equal(r.closed(), false, `${name} was not closed`)
    t.same(seen, range(1, head), `${name} got the replay and every live op after it, once, in order`)
    t.same(r.client.all('reset'), [], `${name} got no reset`)
  }
  t.ok(four.every((r) => r.ms >= least(r.bytes)), `four at once kept to the budget each (${four.map((r) => r.ms).join(', ')} ms)`)
})
