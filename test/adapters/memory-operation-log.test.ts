import t from 'tap'
import { MemoryOperationLog, createMemoryOperationLog } from '../../adapters/memory/operation-log.js'
import { operationLogContract } from '../contracts/operation-log.js'

operationLogContract(t, 'MemoryOperationLog', async ({ historyLimit }) => {
  const log = createMemoryOperationLog({ historyLimit })
  return { log, close: async () => { await log.close() } }
})

/** How many ops are readable: head minus the oldest since that is served. */
async function kept (log: MemoryOperationLog, project: string): Promise<number> {
  const { seq: head } = await log.head(project)
  for (let since = 0; since <= head; since++) {
    if (!(await log.read(project, since, 1)).reset) return head - since
  }
  throw new Error('even since = head resets')
}

t.test('MemoryOperationLog keeps at least historyLimit and fewer than 2 x historyLimit ops', async t => {
  const historyLimit = 5
  const log = new MemoryOperationLog({ historyLimit })
  t.teardown(async () => { await log.close() })
  const counts: number[] = []
  for (let i = 1; i <= 6 * historyLimit; i++) {
    await log.append({ project: 'p', id: `op-${i}`, userId: 'u', sessionId: null, data: i, ts: i })
    counts.push(await kept(log, 'p'))
  }
  const problems = counts.flatMap((count, i) => {
    const head = i + 1
    return count >= Math.min(head, historyLimit) && count < 2 * historyLimit ? [] : [`head ${head}: ${count} kept`]
  })
  t.strictSame(problems, [])
  t.ok(counts.includes(2 * historyLimit - 1) && counts.includes(historyLimit), 'it trims in batches, from 2 x historyLimit - 1 down to historyLimit')
})

t.test('MemoryOperationLog keeps 1,000 ops by default', async t => {
  const log = createMemoryOperationLog()
  t.teardown(async () => { await log.close() })
  for (let i = 1; i <= 2500; i++) await log.append({ project: 'p', id: `op-${i}`, userId: 'u', sessionId: null, data: i, ts: i })
  t.equal((await log.read('p', 1500, 1)).reset, false, 'the last 1,000 ops are readable')
  t.equal((await log.read('p', 0, 1)).reset, true, 'older ones are gone')
})

t.test('MemoryOperationLog remembers the last idRetention op ids and forgets those older than twice that', async t => {
  const log = new MemoryOperationLog({ historyLimit: 2, idRetention: 3 })
  t.teardown(async () => { await log.close() })
  const ids = ['a', 'b', 'c', 'd', 'e', 'f', 'g']
  for (const id of ids) await log.append({ project: 'p', id, userId: 'u', sessionId: null, data: id, ts: 1 })
  for (const [i, id] of ['e', 'f', 'g'].entries()) {
    t.match(await log.append({ project: 'p', id, userId: 'u', sessionId: null, data: id, ts: 1 }), { duplicate: true, seq: 5 + i }, `${id}, one of the last 3, is remembered`)
  }
  t.match(await log.append({ project: 'p', id: 'a', userId: 'u', sessionId: null, data: 'a', ts: 1 }), { duplicate: false, op: { seq: 8 } }, 'a, 7 ids back, is forgotten')
})

t.test('MemoryOperationLog rejects a historyLimit below 1', async t => {
  t.throws(() => new MemoryOperationLog({ historyLimit: 0 }), RangeError)
})

t.test('MemoryOperationLog rejects calls after close', async t => {
  const log = new MemoryOperationLog()
  await log.close()
  await t.rejects(log.append({ project: 'p', id: 'a', userId: 'u', sessionId: null, data: null, ts: 1 }), /closed/)
  await t.rejects(log.read('p', 0, 1), /closed/)
  await t.rejects(log.head('p'), /closed/)
})
