import t from 'tap'
import { MemoryOperationLog, createMemoryOperationLog } from '../../adapters/memory/operation-log.js'
import type { NewOp } from '../../ports/operation-log.js'
import { NO_EPOCH } from '../../lib/types.js'
import { operationLogContract } from '../contracts/operation-log.js'
import { waitFor } from '../helpers/wait.js'

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

t.test('MemoryOperationLog holds 20 projects of 63 KB ops within totalBytes, dropping the history of the idlest first', async t => {
  const totalBytes = 1024 * 1024
  const log = new MemoryOperationLog({ totalBytes, historyBytes: 8 * 1024 * 1024 })
  t.teardown(async () => { await log.close() })
  const projects = Array.from({ length: 20 }, (_, i) => `p${i}`)
  const big = 'x'.repeat(63 * 1024)
  let highest = 0
  // Round after round, each project gets an op: a client writing to 20 projects for a while.
  for (let round = 0; round < 15; round++) {
    for (const project of projects) {
      await log.append(op(project, `r${round}-${project}`, big))
      highest = Math.max(highest, log.bytes)
    }
  }
  t.ok(highest <= totalBytes, `the log never held more than totalBytes (at most ${highest})`)
  t.ok(log.bytes > totalBytes - 2 * 64 * 1024, `and it used its budget (${log.bytes})`)
  t.equal(log.projects, 20, 'dropping history was enough: no project was forgotten')
  for (const project of projects) t.not((await log.head(project)).epoch, NO_EPOCH, `${project} keeps its epoch`)
  for (const project of projects.slice(10)) t.ok(await kept(log, project) >= 1, `${project}, among the last appended to, keeps its newest op`)
  t.equal(await kept(log, 'p0'), 0, 'the idlest lost its history, not its position')
  t.equal((await log.head('p0')).seq, 15)
  // One project writing alone takes the budget back from the idle ones.
  for (let i = 0; i < 12; i++) await log.append(op('p0', `alone-${i}`, big))
  t.equal(await kept(log, 'p0'), 12, 'its ops are kept while the idle projects lose theirs')
  t.ok(log.bytes <= totalBytes)
})

t.test('MemoryOperationLog forgets whole projects, idlest first, when dropping histories is not enough', async t => {
  const totalBytes = 50_000
  const log = new MemoryOperationLog({ totalBytes })
  t.teardown(async () => { await log.close() })
  const projects = Array.from({ length: 200 }, (_, i) => `p${i}`)
  for (const project of projects) {
    await log.open(project)
    t.ok(log.bytes <= totalBytes, `${project}: ${log.bytes} bytes`)
  }
  t.ok(log.projects < 200, `${log.projects} projects kept`)
  t.strictSame(await log.head('p0'), { epoch: NO_EPOCH, seq: 0 }, 'the first opened is forgotten')
  t.not((await log.head('p199')).epoch, NO_EPOCH, 'the last opened is kept')
  await log.touch(['p150'])
  for (let i = 200; i < 260; i++) await log.open(`p${i}`)
  t.not((await log.head('p150')).epoch, NO_EPOCH, 'a touched project is no longer among the idlest')
})

t.test('MemoryOperationLog keeps nothing for a project it was only asked about', async t => {
  const log = new MemoryOperationLog()
  t.teardown(async () => { await log.close() })
  for (let i = 0; i < 1000; i++) {
    await log.head(`unknown-${i}`)
    await log.read(`unknown-${i}`, 5, 100, 'some-epoch')
    await log.touch([`unknown-${i}`])
    await log.append({ ...op(`unknown-${i}`, 'a'), create: false })
  }
  t.equal(log.projects, 0, 'no project')
  t.equal(log.bytes, 0, 'no byte')
})

t.test('MemoryOperationLog frees the memory of idle projects on its own', async t => {
  const log = new MemoryOperationLog({ idleTtlMs: 200 })
  t.teardown(async () => { await log.close() })
  for (let i = 0; i < 5; i++) await log.append(op(`p${i}`, 'a', 'y'.repeat(10_000)))
  t.ok(log.bytes > 50_000)
  await waitFor(() => log.projects === 0, { what: 'the sweep to forget the idle projects', timeoutMs: 10_000, intervalMs: 20 })
  t.equal(log.bytes, 0)
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
