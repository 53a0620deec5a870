/**
 * ClusterConnection (adapters/redis/cluster.ts) against a real Redis Cluster
 * of 3 masters and 3 replicas (test/helpers/redis-cluster.ts): routing of
 * commands and scripts by slot, sharded Pub/Sub, a slot moved under a
 * subscription (node-redis issue 3311's scenario) and a master killed and
 * failed over. The subtests share one cluster and run in order; the
 * failover comes last.
 */
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { ClusterConnection, routingKey } from '../../adapters/redis/cluster.js'
import { createRedisOperationLog } from '../../adapters/redis/operation-log.js'
import { redisKeys } from '../../adapters/redis/keys.js'
import { keySlot } from '../../adapters/redis/slots.js'
import { APPEND, runScript } from '../../adapters/redis/scripts.js'
import { CLIENT_OPTIONS } from '../../plugins/redis.js'
import type { AppendResult } from '../../ports/operation-log.js'
import { startRedisCluster, type ClusterNodeInfo } from '../helpers/redis-cluster.js'
import { uniquePrefix } from '../helpers/redis.js'
import { Recorder, waitFor } from '../helpers/wait.js'

const cluster = await startRedisCluster(t)
const keys = redisKeys('flow')

function ownerIn (nodes: readonly ClusterNodeInfo[], slot: number): ClusterNodeInfo {
  const owner = nodes.find((n) => n.role === 'master' && !n.failing && n.slots.some(([from, to]) => slot >= from && slot <= to))
  if (owner === undefined) throw new Error(`no master serves slot ${slot}`)
  return owner
}

/** A project id whose op log slot is served by the master on `port`. */
async function projectOn (port: number): Promise<string> {
  const nodes = await cluster.topology()
  for (;;) {
    const project = `p-${randomBytes(4).toString('hex')}`
    if (ownerIn(nodes, keySlot(keys.opLog(project).meta)).port === port) return project
  }
}

async function masters (): Promise<number[]> {
  return (await cluster.topology()).filter((n) => n.role === 'master' && !n.failing).map((n) => n.port).sort((a, b) => a - b)
}

function connection (): ClusterConnection {
  const { commandOptions, ...nodeOptions } = CLIENT_OPTIONS
  const conn = new ClusterConnection({
    rootNodes: cluster.rootNodes,
    nodeClientOptions: { ...nodeOptions, socket: { ...CLIENT_OPTIONS.socket, reconnectStrategy: () => 100 } },
    commandOptions,
    retryDelay: () => 50,
    topologyRefreshMs: 300
  })
  return conn
}

const conn = connection()
const events: string[] = []
conn.on('error', (err) => { events.push(`error: ${err.message}`) })
conn.on('ready', () => { events.push('ready') })
t.teardown(async () => { await conn.destroy() })
await conn.connect()

function accepted (result: AppendResult): number {
  if (result.duplicate) throw new Error(`expected an append, got a duplicate of seq ${result.seq}`)
  return result.op.seq
}

let opCounter = 0
function op (project: string): { project: string, id: string, userId: string, sessionId: string, data: unknown, ts: number } {
  opCounter += 1
  return { project, id: `op-${opCounter}`, userId: 'u', sessionId: 's', data: opCounter, ts: 1_700_000_000_000 + opCounter }
}

t.test('routingKey: the first of EVAL\'s KEYS, none for a keyless command, else the first argument', async (t) => {
  t.equal(routingKey(['EVALSHA', 'abc', '2', 'k1', 'k2', 'a']), 'k1')
  t.equal(routingKey(['eval', 'return 1', '0']), undefined)
  t.equal(routingKey(['SET', 'k', 'v']), 'k')
  t.equal(routingKey(['INFO', 'memory']), undefined)
  t.equal(routingKey(['SCRIPT', 'LOAD', 'return 1']), undefined)
  t.equal(routingKey(['WAIT', '1', '0']), undefined)
})

t.test('commands and scripts reach the master of their key\'s slot; CROSSSLOT is Redis\' answer to a script over two slots', async (t) => {
  t.ok(conn.isReady)
  const ports = await masters()
  t.equal(ports.length, 3)
  t.same(conn.masters.map((a) => Number(a.split(':')[1])).sort((a, b) => a - b), ports, 'node-redis knows the three masters')
  const prefix = uniquePrefix()
  for (const port of ports) {
    const project = await projectOn(port)
    const key = `${prefix}:{${project}}:k`
    t.equal(await conn.sendCommand(['SET', key, String(port)]), 'OK')
    t.equal(String(await cluster.command(port, ['GET', key])), String(port), `the key of ${project} is on the master on ${port}`)
    const script = 'redis.call("SET", KEYS[2], ARGV[1]) return redis.call("GET", KEYS[1])'
    t.equal(String(await conn.sendCommand(['EVAL', script, '2', key, `${key}:2`, 'x'])), String(port), 'EVAL is routed by its first key')
    t.equal(String(await cluster.command(port, ['GET', `${key}:2`])), 'x')
  }
  const [a, b] = [await projectOn(ports[0] as number), await projectOn(ports[1] as number)]
  await t.rejects(conn.sendCommand(['EVAL', 'return 1', '2', `${prefix}:{${a}}:k`, `${prefix}:{${b}}:k`]), /CROSSSLOT/,
    'a script over two slots fails: the keys of one script must share a hash tag')

  await conn.sendCommand(['SCRIPT', 'LOAD', APPEND.source])
  for (const port of ports) {
    t.same(await cluster.command(port, ['SCRIPT', 'EXISTS', APPEND.sha1]), [1], `SCRIPT LOAD reached the master on ${port}`)
  }

  // The op log as it is, on the cluster: its scripts touch one project's slot.
  const log = createRedisOperationLog({ client: conn, keyPrefix: prefix })
  const projects = await Promise.all(ports.map(projectOn))
  for (let round = 1; round <= 3; round++) {
    const seqs = await Promise.all(projects.map(async (p) => accepted(await log.append(op(p)))))
    t.same(seqs, [round, round, round], `append round ${round}: one seq per project`)
  }
  for (const p of projects) {
    const read = await log.read(p, 0, 100)
    t.same(read.ops.map((o) => o.seq), [1, 2, 3], `${p} reads back its three ops`)
  }
  await log.close()
})

t.test('calls of one slot run in call order on one connection (200 EVALs sent at once)', async (t) => {
  const project = await projectOn((await masters())[2] as number)
  const key = `${uniquePrefix()}:{${project}}:list`
  const calls = Array.from({ length: 200 }, async (_, i) => await conn.sendCommand(['EVAL', 'return redis.call("RPUSH", KEYS[1], ARGV[1])', '1', key, String(i)]))
  t.same(await Promise.all(calls), Array.from({ length: 200 }, (_, i) => i + 1), 'each call saw the ones before it')
  const stored = (await conn.sendCommand(['LRANGE', key, '0', '-1']) as unknown[]).map(Number)
  t.same(stored, Array.from({ length: 200 }, (_, i) => i))
})

t.test('a sharded subscription receives SPUBLISH, and not a classic PUBLISH', async (t) => {
  const ports = await masters()
  const projects = await Promise.all(ports.map(projectOn))
  const inboxes = projects.map(() => new Recorder<string>())
  await Promise.all(projects.map(async (p, i) => { await conn.subscribe(keys.channel(p), (m) => { inboxes[i]?.push(m) }) }))
  for (const [i, p] of projects.entries()) {
    const channel = keys.channel(p)
    const shardChannels = (await cluster.command(ports[i] as number, ['PUBSUB', 'SHARDCHANNELS', channel]) as unknown[]).map(String)
    t.same(shardChannels, [channel], `subscribed on the master of its slot (${ports[i]})`)
    await conn.sendCommand(['PUBLISH', channel, 'classic'])
    t.equal(await conn.publish(channel, `sharded ${i}`), 1, 'SPUBLISH reaches one subscriber')
    await inboxes[i]?.until((m) => m.length >= 1, `the SPUBLISH on ${channel}`)
  }
  // The classic PUBLISHes went out before the SPUBLISHes: had they been delivered, they would be first.
  t.same(inboxes.map((r) => r.items), [['sharded 0'], ['sharded 1'], ['sharded 2']], 'a classic PUBLISH never reaches a sharded subscriber')
  await Promise.all(projects.map(async (p) => { await conn.unsubscribe(keys.channel(p)) }))
  t.equal(await conn.publish(keys.channel(projects[0] as string), 'after'), 0, 'unsubscribed')
})

t.test('a subscription follows its slot to another master, and commands follow MOVED (node-redis issue 3311)', async (t) => {
  const ports = await masters()
  const [from, to] = ports as [number, number]
  const project = await projectOn(from)
  const channel = keys.channel(project)
  const slot = keySlot(channel)
  const inbox = new Recorder<string>()
  await conn.subscribe(channel, (m) => { inbox.push(m) })
  const log = createRedisOperationLog({ client: conn, keyPrefix: uniquePrefix() })
  t.teardown(async () => { await log.close() })
  t.equal(accepted(await log.append(op(project))), 1)
  t.equal(await conn.publish(channel, 'before'), 1)
  await inbox.until((m) => m.includes('before'), 'the message before the move')

  await cluster.moveSlot(slot, to)
  t.equal(await cluster.masterOf(slot), to, 'the slot moved')
  const movedAt = Date.now()
  // Messages published before node-redis subscribed again on the new owner are lost: publish until one gets through.
  let n = 0
  await waitFor(async () => {
    n += 1
    await conn.publish(channel, `probe ${n}`)
    return inbox.items.some((m) => m.startsWith('probe'))
  }, { what: 'a message published after the move to arrive', timeoutMs: 10_000, intervalMs: 50 })
  t.comment(`re-subscribed within ${Date.now() - movedAt} ms, ${n} publish(es)`)
  const shardChannels = (await cluster.command(to, ['PUBSUB', 'SHARDCHANNELS', channel]) as unknown[]).map(String)
  t.same(shardChannels, [channel], 'subscribed on the new owner')
  for (let i = 0; i < 20; i++) t.equal(await conn.publish(channel, `after ${i}`), 1, 'SPUBLISH goes to the new owner, which has the subscriber')
  await inbox.until((m) => m.filter((x) => x.startsWith('after')).length === 20, 'every message after the move')
  t.same(inbox.items.filter((x) => x.startsWith('after')), Array.from({ length: 20 }, (_, i) => `after ${i}`), 'in order')

  t.equal(accepted(await log.append(op(project))), 2, 'the op log goes on on the new owner (MOVED followed)')
  t.same((await log.read(project, 0, 10)).ops.map((o) => o.seq), [1, 2])
  t.ok(conn.isReady, 'a slot move is not an outage')
  await conn.unsubscribe(channel)
})

t.test('after a master is killed and its replica promoted, commands and subscriptions recover', async (t) => {
  const ports = await masters()
  const victim = ports[2] as number
  const project = await projectOn(victim)
  const channel = keys.channel(project)
  const inbox = new Recorder<string>()
  await conn.subscribe(channel, (m) => { inbox.push(m) })
  const log = createRedisOperationLog({ client: conn, keyPrefix: uniquePrefix() })
  t.teardown(async () => { await log.close() })
  t.equal(accepted(await log.append(op(project))), 1)
  // The replica has the op before the master dies (WAIT on the connection that appended it).
  t.equal(await conn.sendCommandFor(keys.opLog(project).meta, ['WAIT', '1', '2000']), 1, 'WAIT on the key\'s master counts its replica')
  t.equal(await conn.publish(channel, 'before'), 1)
  await inbox.until((m) => m.includes('before'), 'the message before the failover')
  const eventsBefore = events.length

  const killedAt = Date.now()
  const promoted = await cluster.killMaster(victim)
  t.not(promoted, victim)
  await waitFor(() => !conn.isReady || events.length > eventsBefore, { what: 'the connection to see the master gone', timeoutMs: 5000 })
  await waitFor(() => conn.isReady, { what: 'the connection to be ready again', timeoutMs: 15_000, intervalMs: 20 })
  t.comment(`ready again ${Date.now() - killedAt} ms after the kill`)
  const seen = events.slice(eventsBefore)
  t.ok(seen.some((e) => e.startsWith('error')), 'an error was emitted while a master was down')
  t.equal(seen.at(-1), 'ready', 'then ready')
  t.ok(conn.masters.includes(`127.0.0.1:${promoted}`), 'the promoted replica is a master for node-redis')
  t.notOk(conn.masters.includes(`127.0.0.1:${victim}`), 'the dead master is not')

  t.equal(accepted(await log.append(op(project))), 2, 'the op log goes on on the promoted replica, without a gap')
  let n = 0
  await waitFor(async () => {
    n += 1
    await conn.publish(channel, `probe ${n}`)
    return inbox.items.some((m) => m.startsWith('probe'))
  }, { what: 'a message published after the failover to arrive', timeoutMs: 10_000, intervalMs: 50 })
  const shardChannels = (await cluster.command(promoted, ['PUBSUB', 'SHARDCHANNELS', channel]) as unknown[]).map(String)
  t.same(shardChannels, [channel], 'subscribed again on the promoted replica')
  t.equal(await conn.publish(channel, 'after'), 1)
  await inbox.until((m) => m.includes('after'), 'the message after the failover')

  const other = await projectOn(ports[0] as number)
  const key = `${uniquePrefix()}:{${other}}:k`
  t.equal(await runScript(conn, { name: 'set', source: 'return redis.call("SET", KEYS[1], ARGV[1])', sha1: '', numberOfKeys: 1 }, [key], ['v']), 'OK',
    'a script on another master\'s slot')
})
