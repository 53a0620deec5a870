import t from 'tap'
import { ensureBuilt, freePort, spawnNode } from '../helpers/process.js'
import { connect } from '../helpers/client.js'

t.test('npm run cluster starts Redis, instances and a balancer that carries WebSockets across instances', async (t) => {
  await ensureBuilt()
  const [port, i1, i2, redisPort] = [await freePort(), await freePort(), await freePort(), await freePort()]
  const proc = spawnNode(t, ['scripts/cluster.mjs', '--instance-ports', `${i1},${i2}`, '--port', String(port), '--redis-port', String(redisPort)], { LOG_LEVEL: 'warn' })
  await proc.waitFor(/\[cluster\] ready/, { timeoutMs: 30_000 })
  const a = await connect(t, `ws://127.0.0.1:${port}/ws?userId=a`)
  const b = await connect(t, `ws://127.0.0.1:${port}/ws?userId=b`)
  await a.join('demo')
  await b.join('demo')
  await a.request({ type: 'op', project: 'demo', data: 'hello' })
  t.match(await b.next('op'), { seq: 1, data: 'hello', userId: 'a' })
  const health = await (await fetch(`http://127.0.0.1:${port}/health`)).json() as { ports: { log: { adapter: string } } }
  t.equal(health.ports.log.adapter, 'redis')
  const instances = new Set<string>()
  for (let i = 0; i < 4; i++) {
    const stats = await (await fetch(`http://127.0.0.1:${port}/ws/stats`)).json() as { instanceId: string }
    instances.add(stats.instanceId)
  }
  t.same([...instances].sort(), ['flow-1', 'flow-2'], 'the balancer spreads requests over both instances')
  proc.child.kill('SIGTERM')
  const exit = await proc.exited
  t.equal(exit.code, 0, 'stops cleanly on SIGTERM')
})
