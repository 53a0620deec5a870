/**
 * Durable acks (FLOW_ACK_DURABILITY=replica): an append resolves only once
 * a replica has the op (one WAIT per turn), so a failover to that replica
 * loses no acked op. Against a real primary and replica; the replica is
 * frozen (SIGSTOP) to make it lag.
 */
import t, { type Test } from 'tap'
import { createRedisOperationLog, type RedisOperationLog } from '../../adapters/redis/operation-log.js'
import { redisKeys } from '../../adapters/redis/keys.js'
import type { AppendResult } from '../../ports/operation-log.js'
import { recording, redisClient, startRedis, uniquePrefix } from '../helpers/redis.js'
import { newOp } from '../helpers/ops.js'
import { waitFor } from '../helpers/wait.js'

const primary = await startRedis(t)
const replica = await startRedis(t, { args: ['--replicaof', '127.0.0.1', String(primary.port)] })
const shared = await redisClient(t, primary.url)
const onReplica = await redisClient(t, replica.url)
await waitFor(async () => /master_link_status:up/.test(await onReplica.info('replication')),
  { what: 'the replica to sync', timeoutMs: 10_000, intervalMs: 20 })

function durableLog (t: Test, prefix: string, client = recording(shared)): { log: RedisOperationLog, commands: string[][] } {
  const log = createRedisOperationLog({ client: client.client, keyPrefix: prefix, durability: { replicas: 1, timeoutMs: 300 } })
  t.teardown(async () => { await log.close() })
  return { log, commands: client.commands }
}

/** The head the replica holds for `project`. */
async function replicaHead (prefix: string, project: string): Promise<number> {
  return Number(await onReplica.hGet(redisKeys(prefix).opLog(project).meta, 'seq') ?? 0)
}

const waits = (commands: readonly string[][]): number => commands.filter((c) => c[0] === 'WAIT').length

t.test('every op of a turn is acked after one WAIT, and the replica has it when the ack comes', async (t) => {
  const prefix = uniquePrefix()
  const { log, commands } = durableLog(t, prefix)
  const results = await Promise.all(Array.from({ length: 20 }, async (_, i) => await log.append(newOp(i % 2 === 0 ? 'a' : 'b'))))
  t.same(results.map((r) => r.duplicate ? -1 : r.op.seq), Array.from({ length: 20 }, (_, i) => Math.floor(i / 2) + 1), 'all appended')
  t.equal(waits(commands), 1, 'one WAIT for the turn\'s two APPEND calls')
  t.same(commands.map((c) => c[0]).slice(-1), ['WAIT'], 'sent after them')
  t.same([await replicaHead(prefix, 'a'), await replicaHead(prefix, 'b')], [10, 10], 'the replica had both projects\' ops at the ack')
})

t.test('with the replica frozen, an op is answered unavailable (it is on the primary), and acked by id once the replica is back', async (t) => {
  const prefix = uniquePrefix()
  const { log, commands } = durableLog(t, prefix)
  const plain = createRedisOperationLog({ client: shared, keyPrefix: prefix })
  await log.append(newOp('p'))
  replica.stop()
  t.teardown(() => { replica.cont() })

  const fast = await plain.append(newOp('p'))
  t.equal(fast.duplicate ? 0 : fast.op.seq, 2, 'without durable acks the primary alone acks it')
  const op = newOp('p')
  const started = Date.now()
  await t.rejects(log.append(op), { code: 'FLOW_ERR_UNAVAILABLE', message: /0 of 1 replicas confirmed/ }, 'the durable append is refused')
  t.ok(Date.now() - started >= 250, 'after waiting for the replica')

  // While the replica stays away, appends are refused without being sent (no WAIT holding the connection each time).
  await waitFor(async () => {
    const before = commands.length
    const refused = await log.append(newOp('p')).then(() => false, (err: { code?: string }) => err.code === 'FLOW_ERR_UNAVAILABLE')
    return refused && commands.slice(before).every((c) => c[0] === 'INFO')
  }, { what: 'appends to be refused at once', timeoutMs: 10_000, intervalMs: 50 })
  t.pass('refused at once, nothing appended, while INFO shows no replica in sync')

  replica.cont()
  let retried: AppendResult | undefined
  await waitFor(async () => {
    retried = await log.append(op).catch(() => undefined)
    return retried !== undefined
  }, { what: 'the retry to be acked', timeoutMs: 15_000, intervalMs: 100 })
  t.same(retried?.duplicate === true ? retried.seq : null, 3, 'the retry by id is acked with the seq the op got on the primary')
  t.ok(await replicaHead(prefix, 'p') >= 3, 'which the replica now has')
})

t.test('an APPEND sent again after NOSCRIPT, behind the turn\'s WAIT, waits for a WAIT of its own', async (t) => {
  const prefix = uniquePrefix()
  const { log, commands } = durableLog(t, prefix)
  await log.append(newOp('s'))
  await shared.sendCommand(['SCRIPT', 'FLUSH'])
  commands.length = 0
  const result = await log.append(newOp('s'))
  t.equal(result.duplicate ? 0 : result.op.seq, 2)
  t.same(commands.map((c) => c[0]), ['EVALSHA', 'WAIT', 'EVAL', 'WAIT'], 'the script sent again after the WAIT, then its own WAIT')
  t.equal(await replicaHead(prefix, 's'), 2, 'the replica has it')
})
