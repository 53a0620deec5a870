import t from 'tap'
import { readFileSync } from 'node:fs'
import { startRedis, redisClient, keysUnder } from '../helpers/redis.js'
import { startCluster } from '../helpers/cluster.js'
import { connect } from '../helpers/client.js'
import { waitFor } from '../helpers/wait.js'

/** A row of docs/redis.md's "Keys and channels" table. */
interface Row { readonly name: string, readonly type: string, readonly pattern: RegExp }

/**
 * The rows of the keys table, each name turned into a pattern for `prefix`
 * and `instance`: the table is written for prefix `flow`, project `board-1`,
 * instance `flow-1` and `T` a session partition's tag (`#i/16.j`).
 */
function documentedKeys (prefix: string, instance: string): Row[] {
  const doc = readFileSync(new URL('../../docs/redis.md', import.meta.url), 'utf8')
  const section = doc.slice(doc.indexOf('## Keys and channels'), doc.indexOf('## Inspecting'))
  const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
  const rows: Row[] = []
  for (const line of section.split('\n')) {
    const cells = /^\| `(flow:[^`]+)` \| ([a-z ]+) \|/.exec(line)
    if (cells === null) continue
    const name = cells[1] as string
    const source = escape(name)
      .replace(/^flow:/, `${escape(prefix)}:`)
      .replace(escape('{T}'), '\\{#\\d+/16\\.\\d+\\}')
      .replace(/flow-1/g, escape(instance))
    rows.push({ name, type: cells[2] as string, pattern: new RegExp(`^${source}$`) })
  }
  return rows
}

/** Redis' TYPE reply for a type as the table names it. */
const TYPES: Record<string, string> = { hash: 'hash', stream: 'stream', list: 'list', set: 'set', 'sorted set': 'zset', string: 'string' }

t.test('docs/redis.md lists every key and channel a live instance uses, with its type', async (t) => {
  const redis = await startRedis(t)
  const admin = await redisClient(t, redis.url)
  const { instances: [server], keyPrefix } = await startCluster(t, redis.url, 1)
  const rows = documentedKeys(keyPrefix, 'i0')
  t.ok(rows.length >= 13, `the table was read (${rows.length} rows)`)

  const ann = await connect(t, `${server!.ws}?userId=ann`)
  await ann.join('board-1', { presence: { name: 'Ann' } })
  await ann.request({ type: 'op', project: 'board-1', id: 'k-1', data: 1 })
  // The probe runs every second while healthy: its stream and channel show up.
  const keys = await waitFor(async () => {
    const found = await keysUnder(admin, keyPrefix)
    return found.includes(`${keyPrefix}:probe`) ? found : null
  }, { what: 'the probe stream', timeoutMs: 10_000, intervalMs: 50 })
  const channels = (await admin.sendCommand<string[]>(['PUBSUB', 'CHANNELS', `${keyPrefix}:*`])).sort()
  t.ok(keys.length >= 8 && channels.length >= 2, `keys (${keys.length}) and channels (${channels.length}) were found`)

  for (const key of keys) {
    const row = rows.find((r) => r.type !== 'channel' && r.pattern.test(key))
    if (row === undefined) {
      t.fail(`${key} is not in docs/redis.md's keys table`)
      continue
    }
    t.equal(await admin.type(key), TYPES[row.type], `${key} is a ${row.type}, as ${row.name} says`)
  }
  for (const channel of channels) {
    t.ok(rows.some((r) => r.type === 'channel' && r.pattern.test(channel)), `channel ${channel} is in docs/redis.md's keys table`)
  }
})
