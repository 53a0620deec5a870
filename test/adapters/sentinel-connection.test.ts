import t from 'tap'
import { SentinelConnection } from '../../adapters/redis/sentinel.js'
import { CLIENT_OPTIONS } from '../../plugins/redis.js'
import { startSentinelGroup } from '../helpers/sentinel.js'
import { startProxy } from '../helpers/proxy.js'
import { waitFor } from '../helpers/wait.js'

t.test('a SentinelConnection keeps looking for a primary after node-redis gives up, and connects once a sentinel answers', async (t) => {
  const group = await startSentinelGroup(t)
  const proxy = await startProxy(t, group.sentinelPorts[0] as number)
  proxy.refuse(true)
  const conn = new SentinelConnection({
    name: group.name,
    sentinels: [{ host: '127.0.0.1', port: proxy.port }],
    nodeClientOptions: { disableOfflineQueue: true, pingInterval: CLIENT_OPTIONS.pingInterval, socket: { ...CLIENT_OPTIONS.socket } },
    retryDelay: () => 50,
    scanIntervalMs: 1000,
    maxRediscovers: 1
  })
  t.teardown(async () => { await conn.destroy() })
  const errors: Error[] = []
  let ends = 0
  conn.on('error', (err) => { errors.push(err) })
  conn.on('end', () => { ends++ })
  let connected = false
  const connecting = conn.connect().then(() => { connected = true })

  await waitFor(() => errors.filter((e) => /None of the sentinels/.test(e.message)).length >= 4,
    { what: 'node-redis to give up at least twice', timeoutMs: 20_000, intervalMs: 50 })
  t.notOk(connected, 'connect() has not settled: it keeps trying')
  t.ok(errors.every((e) => e instanceof Error), 'every error is an Error')
  t.notOk(conn.isReady)
  t.equal(conn.primary, null)
  await t.rejects(conn.sendCommand(['PING']), { code: 'FLOW_ERR_DISCONNECTED' }, 'calls are refused at once while no primary is connected')
  await t.rejects(conn.subscribe('x', () => {}), { code: 'FLOW_ERR_DISCONNECTED' })

  proxy.refuse(false)
  await connecting
  t.ok(conn.isReady, 'connected once a sentinel answers')
  t.equal(conn.primary, `127.0.0.1:${group.primary.port}`, 'to the primary the sentinels name')
  t.equal(await conn.sendCommand(['PING']), 'PONG')
  const got = new Promise<string>((resolve) => { void conn.subscribe('hello', (message) => { resolve(message) }) })
  await waitFor(async () => {
    await conn.publish('hello', 'world')
    return await Promise.race([got, new Promise<null>((resolve) => { setTimeout(() => { resolve(null) }, 100) })])
  }, { what: 'a message back through the Pub/Sub connection', timeoutMs: 5000 })
  t.equal(await got, 'world', 'Pub/Sub goes through the primary')

  await conn.close()
  t.notOk(conn.isOpen)
  t.notOk(conn.isReady)
  await conn.close()
  t.equal(ends, 1, 'end is emitted once, when closed')
})
