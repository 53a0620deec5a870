import t, { type Test } from 'tap'
import { snapshotStoreContract } from '../contracts/snapshot-store.js'
import { MemoryOperationLog } from '../../adapters/memory/operation-log.js'
import { MemorySnapshotStore } from '../../adapters/memory/snapshot-store.js'
import { RedisOperationLog } from '../../adapters/redis/operation-log.js'
import { RedisSnapshotStore } from '../../adapters/redis/snapshot-store.js'
import { createFailoverPorts } from '../../adapters/failover/index.js'
import { MemorySessionStore } from '../../adapters/memory/session-store.js'
import { CircuitBreaker } from '../../lib/breaker.js'
import { Watchdog } from '../../lib/watchdog.js'
import { isRedisOutage } from '../../adapters/redis/connection-health.js'
import { redisClient, startRedis, uniquePrefix } from '../helpers/redis.js'
import { redisKeys } from '../../adapters/redis/keys.js'
import { keySlot } from '../../adapters/redis/slots.js'

const redis = await startRedis(t)
const client = await redisClient(t, redis.url)

snapshotStoreContract(t, 'MemorySnapshotStore', async (options) => {
  const log = new MemoryOperationLog(options)
  const snapshots = new MemorySnapshotStore(log)
  return { log, snapshots, close: async () => { await snapshots.close(); await log.close() } }
})

snapshotStoreContract(t, 'RedisSnapshotStore', async (options) => {
  const keyPrefix = uniquePrefix()
  const log = new RedisOperationLog({ client, keyPrefix, ...options })
  const snapshots = new RedisSnapshotStore({ client, keyPrefix, ...options })
  return { log, snapshots, close: async () => { await snapshots.close(); await log.close() } }
})

function breaker (t: Test, open: boolean): CircuitBreaker {
  const b = new CircuitBreaker({ probe: async () => {}, probeDelayMs: 60_000 })
  t.teardown(() => { b.dispose() })
  if (open) b.trip(new Error('test outage'))
  return b
}

/** The failover ports as plugins/ports.ts makes them: the log and its snapshots decorated together. */
function failoverHarness (t: Test, open: boolean) {
  return async (options: { historyLimit: number, historyBytes?: number }) => {
    const keyPrefix = uniquePrefix()
    const ports = createFailoverPorts({
      breaker: breaker(t, open),
      watchdog: new Watchdog(2000),
      timeoutMs: 2000,
      isOutage: isRedisOutage,
      maxBuffered: 1000,
      maxBufferedBytes: 1024 * 1024,
      primary: {
        log: new RedisOperationLog({ client, keyPrefix, ...options }),
        snapshots: new RedisSnapshotStore({ client, keyPrefix, ...options })
      },
      fallback: {
        sessions: () => new MemorySessionStore({ ttlMs: 1000 }),
        log: () => new MemoryOperationLog(options),
        snapshots: (log: MemoryOperationLog) => new MemorySnapshotStore(log)
      }
    })
    const log = ports.log as RedisOperationLog
    const snapshots = ports.snapshots as RedisSnapshotStore
    return { log, snapshots, close: async () => { await snapshots.close(); await log.close() } }
  }
}

// Closed circuit: the Redis store; open circuit: the store beside the fallback log.
snapshotStoreContract(t, 'FailoverSnapshotStore on Redis', failoverHarness(t, false))
snapshotStoreContract(t, 'FailoverSnapshotStore on its fallback', failoverHarness(t, true))

t.test('a snapshot stored during an outage is discarded at recovery, and counted', async t => {
  // The breaker's recover step is the ports' re-sync, as in plugins/ports.ts.
  const b = new CircuitBreaker({ probe: async () => {}, probeDelayMs: 60_000, recover: async () => { await ports.resync() } })
  t.teardown(() => { b.dispose() })
  const keyPrefix = uniquePrefix()
  const ports = createFailoverPorts({
    breaker: b,
    watchdog: new Watchdog(2000),
    timeoutMs: 2000,
    isOutage: isRedisOutage,
    maxBuffered: 1000,
    maxBufferedBytes: 1024 * 1024,
    primary: { log: new RedisOperationLog({ client, keyPrefix }), snapshots: new RedisSnapshotStore({ client, keyPrefix }) },
    fallback: {
      sessions: () => new MemorySessionStore({ ttlMs: 1000 }),
      log: () => new MemoryOperationLog(),
      snapshots: (log: MemoryOperationLog) => new MemorySnapshotStore(log)
    }
  })
  const log = ports.log as RedisOperationLog
  const snapshots = ports.snapshots as RedisSnapshotStore
  const op = (id: string) => ({ project: 'p', id, userId: 'u', sessionId: null, data: id, ts: 1 })
  const before = await log.append(op('a'))
  t.strictSame(await snapshots.put({ project: 'p', epoch: before.epoch, seq: 1, state: 'before' }), { stored: true })

  b.trip(new Error('test outage'))
  const during = await log.append(op('b'))
  t.not(during.epoch, before.epoch, 'the outage serves another epoch')
  t.equal(await snapshots.get('p'), null, 'the outage epoch has no snapshot yet')
  t.strictSame(await snapshots.put({ project: 'p', epoch: during.epoch, seq: 1, state: 'during' }), { stored: true })
  t.strictSame((await snapshots.get('p'))?.state, 'during', 'joiners of the outage epoch get it')

  const recovered = new Promise<[unknown[], number]>((resolve) => { ports.once('recovered', (left, n) => { resolve([left, n]) }) })
  b.probeNow()
  const [, discarded] = await recovered
  t.equal(discarded, 1, 'recovery reports the snapshot of the outage epoch as discarded')
  t.strictSame(ports.status().snapshots, 'primary')
  const after = await snapshots.get('p')
  t.strictSame(after, { project: 'p', epoch: before.epoch, seq: 1, state: 'before' }, 'the shared log keeps the snapshot it had')
  t.equal((await log.head('p')).seq, 2, 'the outage op moved to the shared log')
  t.strictSame(await snapshots.put({ project: 'p', epoch: during.epoch, seq: 1, state: 'late' }), { stored: false, reason: 'epoch' },
    'a snapshot of the outage epoch sent after recovery is refused')
})

t.test('Redis: a snapshot lives in its project\'s slot and goes when the log gets a new epoch', async t => {
  const keyPrefix = uniquePrefix()
  const log = new RedisOperationLog({ client, keyPrefix })
  const snapshots = new RedisSnapshotStore({ client, keyPrefix })
  const { epoch } = await log.append({ project: 'board', id: 'a', userId: 'u', sessionId: null, data: 1, ts: 1 })
  t.strictSame(await snapshots.put({ project: 'board', epoch, seq: 1, state: { a: 1 } }), { stored: true })
  const keys = redisKeys(keyPrefix).opLog('board')
  t.strictSame({ ...await client.hGetAll(keys.snap) }, { epoch, seq: '1', state: '{"a":1}' }, 'one hash: epoch, seq, state as JSON')
  t.equal(keySlot(keys.snap), keySlot(keys.meta), 'the snapshot shares the log\'s slot')
  // Redis lost the meta hash: the log gets a new epoch, and the old life's snapshot is dropped with its history.
  await client.del(keys.meta)
  const again = await log.append({ project: 'board', id: 'b', userId: 'u', sessionId: null, data: 2, ts: 2 })
  t.not(again.epoch, epoch)
  t.equal(await snapshots.get('board'), null, 'no snapshot of the new epoch')
  t.equal(await client.exists(keys.snap), 0, 'the old one is deleted')
})
