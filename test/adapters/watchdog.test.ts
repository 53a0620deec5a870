import t from 'tap'
import { setTimeout as delay } from 'node:timers/promises'
import { TimeoutError } from '../../lib/errors.js'
import { Watchdog } from '../../lib/watchdog.js'
import { FailoverOperationLog } from '../../adapters/failover/index.js'
import { MemoryOperationLog } from '../../adapters/memory/operation-log.js'
import { RedisOperationLog } from '../../adapters/redis/operation-log.js'
import { RedisBroadcaster } from '../../adapters/redis/broadcaster.js'
import { createRedisProbe, isRedisOutage } from '../../adapters/redis/connection-health.js'
import { encodeEnvelope } from '../../adapters/redis/codec.js'
import { redisKeys } from '../../adapters/redis/keys.js'
import type { RedisClient } from '../../adapters/redis/client.js'
import { CircuitBreaker } from '../../lib/breaker.js'
import { redisClient, startRedis, uniquePrefix } from '../helpers/redis.js'

// The watchdog's timer is unref'd (it never keeps a server alive): keep this process up meanwhile.
const alive = setInterval(() => {}, 1000)
t.teardown(() => { clearInterval(alive) })

const never = <T>(): Promise<T> => new Promise<T>(() => {})

/** Blocks the event loop, as a saturated or frozen process does. */
function freeze (ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) { /* busy */ }
}

t.test('a call Redis never answers fails with a TimeoutError once the connection has been silent for the timeout', async (t) => {
  const dog = new Watchdog(60)
  const start = performance.now()
  await t.rejects(dog.watch(never(), 'append'), TimeoutError)
  t.ok(performance.now() - start >= 60, 'not before the timeout')
  t.equal(dog.pending, 0, 'the call is no longer watched')
})

t.test('a call behind a busy connection is not failed while other calls keep settling', async (t) => {
  const dog = new Watchdog(60)
  let settled: unknown = 'pending'
  let release!: (v: string) => void
  const slow = dog.watch(new Promise<string>((resolve) => { release = resolve }), 'slow')
  slow.then((v) => { settled = v }, (err: unknown) => { settled = err })
  // Replies to later calls keep coming for 5 timeouts: Redis is there.
  for (let i = 0; i < 15; i++) await dog.watch(delay(20), 'quick')
  t.equal(settled, 'pending', 'the slow call still waits after 5 timeouts of traffic')
  release('done')
  t.equal(await slow, 'done', 'and gets its answer')
})

t.test('a call on a connection that otherwise works still fails after the hard limit', async (t) => {
  const dog = new Watchdog(20, { hardMs: 200 })
  const hung = dog.watch(never(), 'lost reply')
  let failed = false
  hung.catch(() => { failed = true })
  const start = performance.now()
  while (!failed && performance.now() - start < 2000) await dog.watch(delay(5), 'quick')
  await t.rejects(hung, TimeoutError)
  t.ok(performance.now() - start >= 200, 'after the hard limit, not the timeout')
})

t.test('Redis commands still in the socket when the event loop was frozen are not timed out', async (t) => {
  const redis = await startRedis(t)
  const client = await redisClient(t, redis.url)
  const dog = new Watchdog(100)
  const replies = Array.from({ length: 50 }, async (_v, i) => await dog.watch(client.sendCommand(['ECHO', `r${i}`]), 'echo'))
  // Redis answers within a millisecond; this process does not look for 3 timeouts.
  freeze(300)
  t.same(await Promise.all(replies), Array.from({ length: 50 }, (_v, i) => `r${i}`), 'every reply is taken, none timed out')
})

t.test('a Redis op log stays on Redis across an event-loop stall longer than the command timeout', async (t) => {
  const redis = await startRedis(t)
  const client = await redisClient(t, redis.url)
  const breaker = new CircuitBreaker({ probe: async () => {}, probeDelayMs: 60_000 })
  t.teardown(() => { breaker.dispose() })
  const { port: log, control } = FailoverOperationLog.create({
    breaker, watchdog: new Watchdog(100), timeoutMs: 100, isOutage: isRedisOutage,
    fallback: () => new MemoryOperationLog({ historyLimit: 100 }),
    primary: new RedisOperationLog({ client, keyPrefix: uniquePrefix() })
  })
  const appends = Array.from({ length: 20 }, async (_v, i) => await log.append({ project: 'p', id: `op${i}`, userId: 'u', sessionId: null, data: i, ts: Date.now() }))
  freeze(400)
  const results = await Promise.all(appends)
  t.same(results.map((r) => r.duplicate ? -1 : r.op.seq), Array.from({ length: 20 }, (_v, i) => i + 1), 'all 20 appended to Redis in order')
  t.equal(control.serving, 'primary', 'no fallback')
  t.equal(breaker.state, 'closed', 'the circuit stayed closed')
})

t.test('the Redis probe passes while its token waits behind a backlog of Pub/Sub messages the instance is still working through', async (t) => {
  const redis = await startRedis(t)
  const client = await redisClient(t, redis.url) as RedisClient
  const subscriber = await redisClient(t, redis.url) as RedisClient
  const keyPrefix = uniquePrefix()
  const subscriberWatchdog = new Watchdog(50)
  const broadcaster = new RedisBroadcaster({ client, subscriber, keyPrefix, origin: 'me', onMessage: () => { subscriberWatchdog.alive() } })
  let handled = 0
  // Each message costs this instance 20 us: 20,000 of them are 0.4 s of work,
  // in slices short enough (one socket read each) not to count as a stall.
  await broadcaster.subscribe('busy', () => { freeze(0.02); handled++ })
  const channel = redisKeys(keyPrefix).channel('busy')
  const message = encodeEnvelope('other', { kind: 'presence', sessionId: 's', userId: 'u', state: {} })
  // The command connection's watchdog, shared with the ports as in plugins/ports.ts.
  const watchdog = new Watchdog(50)
  const probe = createRedisProbe({ client, subscriber, keyPrefix, instanceId: 'me', watchdog, subscriberWatchdog })
  await probe() // subscribes the probe channel
  handled = 0
  // Queued on the probe's own connection ahead of its commands (as a port's
  // publishes would be), so Redis publishes the token after all of them: it
  // comes back behind the backlog.
  const published = Promise.all(Array.from({ length: 20_000 }, async () => await watchdog.watch(client.sendCommand(['PUBLISH', channel, message]), 'publish')))
  const start = performance.now()
  await probe()
  const took = performance.now() - start
  await published
  t.equal(handled, 20_000, 'the token came back after every message of the backlog')
  t.ok(took > 50, `the round trip took longer than the timeout (${Math.round(took)} ms): a per-call timer would have failed it`)
})
