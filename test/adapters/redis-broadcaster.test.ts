import t from 'tap'
import { broadcasterContract } from '../contracts/broadcaster.js'
import { RedisBroadcaster } from '../../adapters/redis/broadcaster.js'
import { redisClient, startRedis, uniquePrefix, type TestRedisClient } from '../helpers/redis.js'
import { Recorder } from '../helpers/wait.js'
import type { BroadcastMessage } from '../../ports/broadcaster.js'

const redis = await startRedis(t)

async function pair (): Promise<{ client: TestRedisClient, subscriber: TestRedisClient }> {
  const client = await redisClient(t, redis.url)
  const subscriber = await redisClient(t, redis.url)
  return { client, subscriber }
}

function broadcaster (clients: { client: TestRedisClient, subscriber: TestRedisClient }, keyPrefix: string, origin: string): RedisBroadcaster {
  return new RedisBroadcaster({ client: clients.client, subscriber: clients.subscriber, keyPrefix, origin })
}

// Three instances, each with its own command and subscriber connections.
broadcasterContract(t, 'RedisBroadcaster', async () => {
  const prefix = uniquePrefix()
  const [a, b, c] = [broadcaster(await pair(), prefix, 'a'), broadcaster(await pair(), prefix, 'b'), broadcaster(await pair(), prefix, 'c')]
  return { a, b, c, close: async () => { await Promise.all([a.close(), b.close(), c.close()]) } }
})

t.test('an instance subscribes to a project channel only while it has a handler for it', async (t) => {
  const prefix = uniquePrefix()
  const probe = await redisClient(t, redis.url)
  const a = broadcaster(await pair(), prefix, 'a')
  t.teardown(async () => { await a.close() })
  const channels = async (): Promise<string[]> => (await probe.pubSubChannels(`${prefix}:*`)).sort()
  t.same(await channels(), [])
  await a.subscribe('board-1', () => {})
  await a.subscribe('board-2', () => {})
  t.same(await channels(), [`${prefix}:{board-1}:ch`, `${prefix}:{board-2}:ch`])
  await a.unsubscribe('board-1')
  t.same(await channels(), [`${prefix}:{board-2}:ch`])
  await a.close()
  t.same(await channels(), [], 'close unsubscribes everything')
})

t.test('messages that are not Flow envelopes are ignored', async (t) => {
  const prefix = uniquePrefix()
  const probe = await redisClient(t, redis.url)
  const a = broadcaster(await pair(), prefix, 'a')
  const b = broadcaster(await pair(), prefix, 'b')
  t.teardown(async () => { await Promise.all([a.close(), b.close()]) })
  const got = new Recorder<BroadcastMessage>()
  await a.subscribe('p', (m) => { got.push(m) })
  await probe.publish(`${prefix}:{p}:ch`, 'not json')
  await probe.publish(`${prefix}:{p}:ch`, JSON.stringify({ o: 'x', m: { kind: 'evil' } }))
  await b.publish('p', { kind: 'presence', sessionId: 's', userId: 'u', state: { marker: true } })
  const items = await got.until((items) => items.length >= 1, 'the marker')
  t.equal(items.length, 1)
  t.match(items[0], { kind: 'presence', state: { marker: true } })
})

t.test('a project id that is not valid never reaches Redis', async (t) => {
  const a = broadcaster(await pair(), uniquePrefix(), 'a')
  t.teardown(async () => { await a.close() })
  await t.rejects(a.subscribe('bad id}', () => {}), TypeError)
  await t.rejects(a.publish('{x}', { kind: 'presence', sessionId: 's', userId: 'u', state: {} }), TypeError)
})
