import t, { type Test } from 'tap'
import { sessionStoreContract } from '../contracts/session-store.js'
import { RedisSessionStore, type RedisSessionStoreOptions } from '../../adapters/redis/session-store.js'
import { OPERATION_LOG_SCRIPTS, SESSION_FORGET_INSTANCE, SESSION_STORE_SCRIPTS, runScript, type RedisCommandClient } from '../../adapters/redis/scripts.js'
import { CLUSTER_SLOTS, crc16, keySlot } from '../../adapters/redis/slots.js'
import { partitionSlotRange, partitionTags, redisKeys } from '../../adapters/redis/keys.js'
import { keysUnder, redisClient, startRedis, uniquePrefix, type TestRedis, recording } from '../helpers/redis.js'
import { waitFor } from '../helpers/wait.js'
import type { ExpiredSession, SessionRef } from '../../ports/session-store.js'
import type { Member } from '../../lib/types.js'

const redis = await startRedis(t)

let n = 0
function member (): Member {
  n++
  return { sessionId: `s${n}`, userId: `u${n}`, presence: { n }, joinedAt: 1_700_000_000_000 + n }
}

/** A store on its own connection to `server`, closed at the end of `t`. */
async function store (t: Test, server: TestRedis, options: Omit<RedisSessionStoreOptions, 'client'>, client?: RedisCommandClient): Promise<RedisSessionStore> {
  const s = new RedisSessionStore({ client: client ?? await redisClient(t, server.url), ...options })
  t.teardown(async () => { await s.close() })
  return s
}

/** A redis-server in cluster mode that owns every slot: it refuses any command whose keys are in two slots (CROSSSLOT). */
async function startClusterNode (t: Test): Promise<TestRedis> {
  const node = await startRedis(t, { args: ['--cluster-enabled', 'yes'] })
  const admin = await redisClient(t, node.url)
  await admin.sendCommand(['CLUSTER', 'ADDSLOTSRANGE', '0', String(CLUSTER_SLOTS - 1)])
  await waitFor(async () => (await admin.sendCommand<string>(['CLUSTER', 'INFO'])).includes('cluster_state:ok'),
    { what: 'the one-node cluster to be up', timeoutMs: 10_000, intervalMs: 50 })
  admin.destroy()
  return node
}

// Every server is started before the first subtest is queued: tap ends the root test once its queue is empty.
const clusterNode = await startClusterNode(t)

// Two instances on two connections sharing one Redis.
sessionStoreContract(t, 'RedisSessionStore', async ({ ttlMs }) => {
  const keyPrefix = uniquePrefix()
  const a = new RedisSessionStore({ client: await redisClient(t, redis.url), keyPrefix, instanceId: 'a', ttlMs })
  const b = new RedisSessionStore({ client: await redisClient(t, redis.url), keyPrefix, instanceId: 'b', ttlMs })
  return { a, b, close: async () => { await Promise.all([a.close(), b.close()]) } }
})

// The same on a Redis Cluster node: any command or script whose keys span two slots fails there.
sessionStoreContract(t, 'RedisSessionStore on a Redis Cluster node', async ({ ttlMs }) => {
  const keyPrefix = uniquePrefix()
  const a = new RedisSessionStore({ client: await redisClient(t, clusterNode.url), keyPrefix, instanceId: 'a', ttlMs, partitions: 4 })
  const b = new RedisSessionStore({ client: await redisClient(t, clusterNode.url), keyPrefix, instanceId: 'b', ttlMs, partitions: 4 })
  return { a, b, close: async () => { await Promise.all([a.close(), b.close()]) } }
})

t.test('CRC16 and key slots are Redis Cluster\'s', async (t) => {
  t.equal(crc16('123456789'), 0x31c3, 'the CRC16/XMODEM check value')
  t.equal(keySlot('foo'), 12182)
  t.equal(keySlot('somekey'), 11058)
  t.equal(keySlot('{user1000}.following'), keySlot('{user1000}.followers'), 'the hash tag decides')
  t.equal(keySlot('{user1000}.following'), keySlot('user1000'))
  t.equal(keySlot('foo{}{bar}'), crc16('foo{}{bar}') % CLUSTER_SLOTS, 'an empty tag: the whole key')
  t.equal(keySlot('foo{{bar}}zap'), keySlot('{bar'), 'from the first { to the next }')
  t.equal(keySlot('foo{bar}{zap}'), keySlot('bar'), 'the first tag only')
  t.equal(keySlot('Zoë{é}'), crc16(Buffer.from('é', 'utf8')) % CLUSTER_SLOTS, 'UTF-8 bytes')
})

t.test('the partitions\' tags hash to distinct slots, one in each of N even slot ranges', async (t) => {
  for (const count of [1, 2, 3, 7, 16, 100]) {
    const tags = partitionTags(count)
    t.equal(tags.length, count)
    const slots = tags.map((tag) => keySlot(`{${tag}}`))
    t.equal(new Set(slots).size, count, `${count} partitions: distinct slots`)
    t.ok(slots.every((slot, i) => {
      const { from, to } = partitionSlotRange(i, count)
      return slot >= from && slot < to && to - from >= Math.floor(CLUSTER_SLOTS / count)
    }), `${count} partitions: partition i in [i * 16384 / ${count}, (i + 1) * 16384 / ${count})`)
  }
  t.strictSame(partitionTags(16).slice(0, 3), ['#0/16.63', '#1/16.20', '#2/16.10'], 'the tags are part of the stored layout: they never change')
  const keys = redisKeys('flow').sessionKeys()
  const partition = keys.of('board-1')
  t.equal(partition.expiry, 'flow:{#9/16.23}:expiry')
  t.ok([partition.expiry, partition.instances, partition.sessions('board-1'), partition.owned('web-1')].every((key) => keySlot(key) === keySlot(partition.expiry)), 'a partition\'s keys share one slot')
  t.throws(() => keys.partitions[(partition.index + 1) % 16]?.sessions('board-1'), TypeError, 'a project\'s sessions key exists only in its partition')
  t.throws(() => redisKeys('flow').sessionKeys(0), RangeError)
  t.throws(() => redisKeys('flow').sessionKeys(1025), RangeError)
  t.throws(() => redisKeys('flow').sessionKeys(2.5), RangeError)
})

/** The key argument of each `redis.call`/`redis.pcall` of a Lua source: its command, and the expression in key position. */
function keyArguments (source: string): Array<{ command: string, key: string | null }> {
  const out: Array<{ command: string, key: string | null }> = []
  const calls = source.matchAll(/redis\.p?call\(\s*'([A-Za-z]+)'\s*(?:,\s*([^,)]+))?(?:,\s*([^,)]+))?/g)
  for (const [, command = '', first, second] of calls) {
    const upper = command.toUpperCase()
    if (upper === 'TIME') out.push({ command: upper, key: null })
    else if (upper === 'PUBLISH') out.push({ command: upper, key: null }) // a channel, not a key
    else if (upper === 'XINFO') out.push({ command: upper, key: second?.trim() ?? '' })
    else out.push({ command: upper, key: first?.trim() ?? '' })
  }
  return out
}

t.test('no Lua script builds a key name: every key a script touches comes from KEYS', async (t) => {
  for (const script of [...OPERATION_LOG_SCRIPTS, ...SESSION_STORE_SCRIPTS]) {
    // Identifiers that hold a key: assigned from KEYS only.
    const fromKeys = new Set<string>()
    for (const [, name = '', value = ''] of script.source.matchAll(/(?:local\s+)?([A-Za-z_]\w*)\s*=\s*([^\n]+)/g)) {
      if (/^KEYS\[.+\]$/.test(value.trim())) fromKeys.add(name)
    }
    for (const [, name = '', value = ''] of script.source.matchAll(/(?:local\s+)?([A-Za-z_]\w*)\s*=\s*([^\n]+)/g)) {
      if (fromKeys.has(name)) t.match(value.trim(), /^KEYS\[.+\]$/, `${script.name}: ${name} is only ever a KEYS entry`)
    }
    const calls = keyArguments(script.source)
    t.ok(calls.length > 0, `${script.name} calls Redis`)
    t.equal(calls.length, script.source.match(/redis\.p?call\(/g)?.length, `${script.name}: every call names its command literally`)
    for (const { command, key } of calls) {
      if (key === null) continue
      t.ok(/^KEYS\[[^\]]+\]$/.test(key) || fromKeys.has(key), `${script.name}: ${command} gets its key from KEYS (${key})`)
      t.notMatch(key, /\.\.|ARGV/, `${script.name}: ${command}'s key is not built from ARGV`)
    }
    t.notMatch(script.source, /ARGV\[[^\]]+\]\s*\.\.\s*'[^']*:/, `${script.name}: no key-like string built from ARGV`)
  }
})

/** Checks the commands a store sent: each script's KEYS in one slot and under the prefix; plain commands on one key each. */
function assertOneSlotPerCommand (t: Test, commands: readonly string[][], prefix: string): Set<number> {
  const slots = new Set<number>()
  let scripts = 0
  for (const command of commands) {
    const [name = ''] = command
    if (name === 'EVAL' || name === 'EVALSHA') {
      scripts++
      const keys = command.slice(3, 3 + Number(command[2]))
      if (!keys.every((key) => key.startsWith(`${prefix}:{#`) && keySlot(key) === keySlot(keys[0] as string))) {
        t.fail('a script call with keys in more than one slot, or not of a partition', { keys })
        return slots
      }
      slots.add(keySlot(keys[0] as string))
    } else if (name === 'SET' || name === 'EXISTS' || name === 'SREM') {
      if (command[1]?.startsWith(`${prefix}:`) !== true || (name === 'EXISTS' && command.length !== 2)) {
        t.fail('a plain command on something other than one key of the store', { command })
        return slots
      }
    } else {
      t.fail(`an unexpected command ${name}`)
      return slots
    }
  }
  t.ok(scripts > 0, `${commands.length} commands, ${scripts} scripts, each on one slot`)
  return slots
}

t.test('every command touches one slot: the KEYS of each script share their partition\'s slot', async (t) => {
  const keyPrefix = uniquePrefix()
  const recorded = [recording(await redisClient(t, redis.url)), recording(await redisClient(t, redis.url)), recording(await redisClient(t, redis.url))]
  const [x, y, z] = await Promise.all(recorded.map(async ({ client }, i) => await store(t, redis, { keyPrefix, instanceId: `i${i}`, ttlMs: 60_000, leaseMs: 60_000 }, client)))
  if (x === undefined || y === undefined || z === undefined) throw new Error('three stores')
  const admin = await redisClient(t, redis.url)
  const projects = Array.from({ length: 40 }, (_, i) => `project-${i}`)
  const sessions: Array<SessionRef & { member: Member }> = []
  for (const project of projects) {
    const mine = member()
    await x.add(project, mine)
    sessions.push({ project, sessionId: mine.sessionId, member: mine })
    await y.add(project, member())
  }
  await x.setPresence('project-0', sessions[0]?.sessionId as string, { moved: true }, 1)
  await z.list('project-1')
  t.strictSame(await x.refresh(sessions.map(({ project, sessionId }) => ({ project, sessionId }))), [], 'refresh of sessions in every partition')
  await y.remove('project-2', sessions[2]?.sessionId as string)
  // x's lease lapses: z reaps its sessions, in every partition, in scripts that each stay in one slot.
  await admin.del(redisKeys(keyPrefix).instanceLease('i0'))
  const reaped = await z.reap()
  t.equal(reaped.length, sessions.length - 1, 'every session of the dead instance but the removed one')
  const slots = new Set(recorded.flatMap(({ commands }) => [...assertOneSlotPerCommand(t, commands, keyPrefix)]))
  t.strictSame([...slots].sort((a, b) => a - b), partitionTags(16).map((tag) => keySlot(`{${tag}}`)), 'the scripts ran in the 16 partitions\' slots')
})

t.test('command counts: one script per add, remove, setPresence and list; lease + one per partition for refresh; one per partition for a quiet reap', async (t) => {
  const keyPrefix = uniquePrefix()
  const { client, commands } = recording(await redisClient(t, redis.url))
  const other = await store(t, redis, { keyPrefix, instanceId: 'other', ttlMs: 60_000 })
  // A long lease: its timer does not fire during the test.
  const s = await store(t, redis, { keyPrefix, instanceId: 'me', ttlMs: 60_000, leaseMs: 60_000 }, client)
  const counted = async (what: () => Promise<unknown>): Promise<string[][]> => {
    const from = commands.length
    await what()
    return commands.slice(from)
  }
  const m = member()
  await other.add('elsewhere', member())
  await s.add('p', member()) // the first add also sets the lease
  t.equal((await counted(async () => { await s.add('p', m) })).length, 1, 'add: one script')
  const perUpdate: string[][] = []
  for (let version = 1; version <= 10; version++) {
    const sent = await counted(async () => { await s.setPresence('p', m.sessionId, { version }, version) })
    perUpdate.push(sent.map((c) => c[0] === 'EVALSHA' ? 'EVAL' : c[0] as string))
  }
  t.strictSame(perUpdate, Array.from({ length: 10 }, () => ['EVAL']), 'setPresence: one script per update')
  t.equal((await counted(async () => { await s.setPresence('p', m.sessionId, { version: 0 }) })).length, 1, 'setPresence: one script, with a version or without')
  t.equal((await counted(async () => { await s.list('p') })).length, 1, 'list: one script')
  const refs = [{ project: 'p', sessionId: m.sessionId }, { project: 'p', sessionId: 'x' }]
  const first = await counted(async () => { await s.refresh(refs) })
  t.equal(first.length, 1 + 16, 'the first refresh sweeps every partition once (a previous life of the instance id may have left owned sets)')
  const refresh = await counted(async () => { await s.refresh(refs) })
  t.strictSame(refresh.map((c) => c[0] === 'EVALSHA' ? 'EVAL' : c[0]), ['SET', 'EVAL'], 'refresh of sessions of one partition: the lease, then one script')
  const reap = await counted(async () => { await s.reap() })
  t.equal(reap.filter((c) => c[0] === 'EVALSHA' || c[0] === 'EVAL').length, 16, 'a reap round with nothing expired: one script per partition')
  t.strictSame(reap.filter((c) => c[0] === 'EXISTS').map((c) => c[1]), [redisKeys(keyPrefix).instanceLease('other')], 'and one EXISTS per other instance')
  t.equal(reap.length, 17)
  t.equal((await counted(async () => { await s.remove('p', m.sessionId) })).length, 1, 'remove: one script')
})

t.test('sessions live in partition keys, the lease is the one global key', async (t) => {
  const keyPrefix = uniquePrefix()
  const client = await redisClient(t, redis.url)
  const s = await store(t, redis, { keyPrefix, instanceId: 'web-1', ttlMs: 30_000 }, client)
  const m: Member = { sessionId: 's-1', userId: 'Zoë "z" \\ 👩‍💻', presence: { cursor: [1.5, 2e-7], empty: [], none: {} }, joinedAt: 1_700_000_000_123 }
  await s.add('board-1', m)
  t.strictSame(await keysUnder(client, keyPrefix), [
    `${keyPrefix}:instance:web-1:lease`,
    `${keyPrefix}:{#9/16.23}:expiry`,
    `${keyPrefix}:{#9/16.23}:instances`,
    `${keyPrefix}:{#9/16.23}:owned:web-1`,
    `${keyPrefix}:{#9/16.23}:sessions:board-1`
  ])
  const ttl = await client.pTTL(`${keyPrefix}:instance:web-1:lease`)
  t.ok(ttl > 0 && ttl <= 5000, 'the lease expires on its own')
  const memberJson = '{"sessionId":"s-1","userId":"Zoë \\"z\\" \\\\ 👩‍💻","joinedAt":1700000000123}'
  t.equal(await client.hGet(`${keyPrefix}:{#9/16.23}:sessions:board-1`, 's-1'), `web-1\n${memberJson}\n0\n{"cursor":[1.5,2e-7],"empty":[],"none":{}}`)
  t.equal(await s.setPresence('board-1', 's-1', { a: [], b: 1e21 }, 7), true)
  t.equal(await client.hGet(`${keyPrefix}:{#9/16.23}:sessions:board-1`, 's-1'), `web-1\n${memberJson}\n7\n{"a":[],"b":1e+21}`,
    'the script replaced version and presence as strings: the member\'s JSON is byte for byte the same')
  t.strictSame(await s.list('board-1'), [{ ...m, presence: { a: [], b: 1e21 } }])
  t.equal(await client.zScore(`${keyPrefix}:{#9/16.23}:instances`, 'web-1') !== null, true, 'the instance is registered in the partition')
})

t.test('after FLUSHALL, refresh reports every session missing and the instance is alive again', async (t) => {
  const dedicated = await startRedis(t) // FLUSHALL only ever on a server of this test's own
  const keyPrefix = uniquePrefix()
  const admin = await redisClient(t, dedicated.url)
  const a = await store(t, dedicated, { keyPrefix, instanceId: 'a', ttlMs: 60_000 })
  const b = await store(t, dedicated, { keyPrefix, instanceId: 'b', ttlMs: 60_000 })
  const refs: SessionRef[] = []
  for (let i = 0; i < 30; i++) {
    const m = member()
    await a.add(`project-${i % 10}`, m)
    refs.push({ project: `project-${i % 10}`, sessionId: m.sessionId })
  }
  await b.add('project-0', member())
  await admin.flushAll()
  t.strictSame(await a.refresh(refs), refs, 'every session is reported missing')
  t.equal(await admin.exists(redisKeys(keyPrefix).instanceLease('a')), 1, 'the lease was renewed first')
  t.strictSame(await b.list('project-0'), [], 'nothing was revived')
  for (const { project, sessionId } of refs) await a.add(project, { sessionId, userId: 'u', presence: {}, joinedAt: 1 })
  t.strictSame(await a.refresh(refs), [], 're-added, every session is there again')
  t.strictSame(await b.reap(), [], 'and nothing is reaped')
})

t.test('a lapsed lease makes another instance\'s reap return that instance\'s sessions exactly once; the instance learns it from refresh', async (t) => {
  const keyPrefix = uniquePrefix()
  const admin = await redisClient(t, redis.url)
  // A long lease and TTL: only the deleted lease can make these sessions go.
  const stalled = await store(t, redis, { keyPrefix, instanceId: 'stalled', ttlMs: 60_000, leaseMs: 60_000 })
  const y = await store(t, redis, { keyPrefix, instanceId: 'y', ttlMs: 60_000, leaseMs: 60_000 })
  const z = await store(t, redis, { keyPrefix, instanceId: 'z', ttlMs: 60_000, leaseMs: 60_000 })
  const mine: ExpiredSession[] = []
  const theirs: ExpiredSession[] = []
  for (let i = 0; i < 60; i++) {
    const project = `board-${i % 20}`
    const m = member()
    await (i % 3 === 0 ? y : stalled).add(project, m)
    ;(i % 3 === 0 ? theirs : mine).push({ project, member: m })
  }
  const moved = mine.pop() as ExpiredSession
  await y.add(moved.project, moved.member) // another instance took it over: it is y's now
  theirs.push(moved)
  await admin.del(redisKeys(keyPrefix).instanceLease('stalled'))
  const reaped: ExpiredSession[] = []
  await waitFor(async () => {
    reaped.push(...(await Promise.all([y.reap(), z.reap(), y.reap(), z.reap()])).flat())
    return reaped.length >= mine.length
  }, { what: 'the stalled instance\'s sessions to be reaped', timeoutMs: 5000 })
  reaped.push(...(await Promise.all([y.reap(), z.reap()])).flat())
  const bySession = (a: ExpiredSession, b: ExpiredSession): number => a.member.sessionId.localeCompare(b.member.sessionId)
  t.strictSame([...reaped].sort(bySession), [...mine].sort(bySession), 'each of its sessions once, across two reapers, and no other')
  const listed = (await Promise.all(Array.from({ length: 20 }, async (_, i) => await z.list(`board-${i}`)))).flat()
  t.strictSame(listed.map((m) => m.sessionId).sort(), theirs.map((e) => e.member.sessionId).sort(), 'the live instance keeps its sessions')

  const refs = mine.map(({ project, member }) => ({ project, sessionId: member.sessionId }))
  t.strictSame(await stalled.refresh(refs), refs, 'back from its stall, the instance learns that every session is gone')
  t.equal(await admin.exists(redisKeys(keyPrefix).instanceLease('stalled')), 1, 'and its lease is back')
  for (const { project, member } of mine) await stalled.add(project, member)
  t.strictSame(await stalled.refresh(refs), [], 're-added, they are there')
  t.strictSame([...await y.reap(), ...await z.reap()], [], 'and a live instance\'s sessions are not reaped')
})

t.test('an instance that registered again since the reaper looked is not forgotten', async (t) => {
  const keyPrefix = uniquePrefix()
  const client = await redisClient(t, redis.url)
  const s = await store(t, redis, { keyPrefix, instanceId: 'back', ttlMs: 60_000 })
  const m = member()
  await s.add('p', m)
  const partition = redisKeys(keyPrefix).sessionKeys().of('p')
  const seen = await client.zScore(partition.instances, 'back')
  const keys = [partition.instances, partition.owned('back'), partition.expiry]
  t.equal(await runScript(client, SESSION_FORGET_INSTANCE, keys, ['back', String((seen ?? 0) - 1)]), null, 'a registration the reaper did not see: nothing changes')
  t.strictSame(await s.refresh([{ project: 'p', sessionId: m.sessionId }]), [], 'the session is still there')
  const now = await client.zScore(partition.instances, 'back')
  t.strictSame(await runScript(client, SESSION_FORGET_INSTANCE, keys, ['back', String(now)]), [`p\n${m.sessionId}`], 'the registration it saw: its sessions expire')
  t.equal(await client.exists(partition.owned('back')), 0, 'its owned set is gone')
})

t.test('a restarted instance sweeps the owned sets its previous life left', async (t) => {
  const keyPrefix = uniquePrefix()
  const client = await redisClient(t, redis.url)
  const before = await store(t, redis, { keyPrefix, instanceId: 'same', ttlMs: 60_000 })
  const other = await store(t, redis, { keyPrefix, instanceId: 'other', ttlMs: 60_000 })
  const m = member()
  await before.add('old-project', m)
  await before.close() // the process ends; its session is taken by someone else's remove
  t.strictSame(await other.remove('old-project', m.sessionId), m)
  const partition = redisKeys(keyPrefix).sessionKeys().of('old-project')
  t.equal(await client.sCard(partition.owned('same')), 1, 'the owned set still names it')
  const after = await store(t, redis, { keyPrefix, instanceId: 'same', ttlMs: 60_000 })
  t.strictSame(await after.refresh([]), [])
  t.equal(await client.exists(partition.owned('same')), 0, 'the first refresh of the new process swept it')
  t.equal(await client.zScore(partition.instances, 'same'), null, 'and left the partition')
})

t.test('owned sets shrink to the live sessions and an instance with none leaves the partition', async (t) => {
  const keyPrefix = uniquePrefix()
  const client = await redisClient(t, redis.url)
  const a = await store(t, redis, { keyPrefix, instanceId: 'a', ttlMs: 60_000 })
  const b = await store(t, redis, { keyPrefix, instanceId: 'b', ttlMs: 60_000 })
  const added: Array<{ project: string, m: Member }> = []
  for (let i = 0; i < 50; i++) {
    const project = `q-${i % 25}`
    const m = member()
    await a.add(project, m)
    added.push({ project, m })
  }
  const owned = async (): Promise<number> => {
    const keys = (await keysUnder(client, keyPrefix)).filter((key) => key.endsWith(':owned:a'))
    return (await Promise.all(keys.map(async (key) => await client.sCard(key)))).reduce((x, y) => x + y, 0)
  }
  t.equal(await owned(), 50)
  // Removed by the other instance (a's owned sets still name them), then a refresh of the rest.
  for (const { project, m } of added.slice(0, 30)) await b.remove(project, m.sessionId)
  t.strictSame(await a.refresh(added.slice(30).map(({ project, m }) => ({ project, sessionId: m.sessionId }))), [])
  t.equal(await owned(), 20, 'the refresh dropped the refs of removed sessions')
  for (const { project, m } of added.slice(30)) await b.remove(project, m.sessionId)
  t.strictSame(await a.refresh([]), [], 'a refresh naming nothing still sweeps the partitions where the instance owned sessions')
  t.equal(await owned(), 0, 'no owned set is left')
  const registered = await Promise.all(redisKeys(keyPrefix).sessionKeys().partitions.map(async (p) => await client.zScore(p.instances, 'a')))
  t.ok(registered.every((score) => score === null), 'the instance left every partition')
})

t.test('a project id that is not valid never reaches Redis', async (t) => {
  const { client, commands } = recording(await redisClient(t, redis.url))
  const s = await store(t, redis, { keyPrefix: uniquePrefix(), instanceId: 'a', ttlMs: 30_000, leaseMs: 60_000 }, client)
  await t.rejects(s.add('a}b', member()), TypeError)
  await t.rejects(s.list('../x'), TypeError)
  await t.rejects(s.setPresence('{x}', 's', {}, 1), TypeError)
  await t.rejects(s.refresh([{ project: 'ok', sessionId: 's' }, { project: 'not ok', sessionId: 's' }]), TypeError)
  t.strictSame(commands, [], 'nothing was sent')
  t.throws(() => new RedisSessionStore({ client, keyPrefix: 'x', instanceId: 'a', ttlMs: 1, partitions: 0 }), RangeError)
})
