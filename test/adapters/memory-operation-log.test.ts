import t from 'tap'
import { MemoryOperationLog, createMemoryOperationLog } from '../../adapters/memory/operation-log.js'
import type { NewOp } from '../../ports/operation-log.js'
import { operationLogContract } from '../contracts/operation-log.js'

operationLogContract(t, 'MemoryOperationLog', async (options) => {
  const log = createMemoryOperationLog(options)
  return { log, close: async () => { await log.close() } }
})

function op (project: string, id: string, data: unknown = id): NewOp {
  return { project, id, userId: 'u', sessionId: null, data, ts: 1 }
}

/** How many ops are readable: head minus the oldest since that is served. */
async function kept (log: MemoryOperationLog, project: string): Promise<number> {
  const { seq: head } = await log.head(project)
  for (let since = 0; since <= head; since++) {
    if (!(await log.read(project, since, 1)).reset) return head - since
  }
  throw new Error('even since = head resets')
}

t.test('MemoryOperationLog keeps exactly the last historyLimit ops', async t => {
  const historyLimit = 5
  const log = new MemoryOperationLog({ historyLimit })
  t.teardown(async () => { await log.close() })
  const counts: number[] = []
  for (let i = 1; i <= 6 * historyLimit; i++) {
    await log.append(op('p', `op-${i}`, i))
    counts.push(await kept(log, 'p'))
  }
  t.strictSame(counts, counts.map((_, i) => Math.min(i + 1, historyLimit)))
})

t.test('MemoryOperationLog keeps 1,000 ops by default', async t => {
  const log = createMemoryOperationLog()
  t.teardown(async () => { await log.close() })
  for (let i = 1; i <= 2500; i++) await log.append(op('p', `op-${i}`, i))
  t.equal((await log.read('p', 1500, 1)).reset, false, 'the last 1,000 ops are readable')
  t.equal((await log.read('p', 1499, 1)).reset, true, 'older ones are gone')
})

t.test('MemoryOperationLog rejects bounds below 1', async t => {
  for (const name of ['historyLimit', 'historyBytes', 'totalBytes', 'idRetention', 'pageBytes', 'idleTtlMs']) {
    t.throws(() => new MemoryOperationLog({ [name]: 0 }), RangeError, name)
  }
})

t.test('MemoryOperationLog rejects calls after close', async t => {
  const log = new MemoryOperationLog({ idleTtlMs: 60_000 })
  await log.close()
  await t.rejects(log.append(op('p', 'a')), /closed/)
  await t.rejects(log.read('p', 0, 1), /closed/)
  await t.rejects(log.head('p'), /closed/)
  await t.rejects(log.open('p'), /closed/)
  await t.rejects(log.touch(['p']), /closed/)
})
