/**
 * The OperationLog contract: every sentence of the JSDoc in
 * ports/operation-log.ts, as tests. Every adapter's test file runs it.
 *
 * Written to run against a shared, long-lived store (a real redis-server):
 * each test uses its own project ids, never assumes a fresh store and never
 * relies on timing.
 */
import type { Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { isDeepStrictEqual } from 'node:util'
import type { AppendResult, NewOp, OperationLog, ReadResult } from '../../ports/operation-log.js'
import type { Op } from '../../lib/types.js'

export interface OperationLogHarness {
  readonly log: OperationLog
  /** frees everything the factory made (the log and its connections) */
  readonly close: () => Promise<void>
}

export type OperationLogFactory = (opts: { historyLimit: number }) => Promise<OperationLogHarness>

/** History bound of tests that do not exercise trimming: never reached by them. */
const LARGE_HISTORY = 1000

let counter = 0

/** A project or op id unique across runs: a counter and a random suffix. */
function uniqueId (prefix: string): string {
  counter += 1
  return `${prefix}-${counter}-${randomBytes(4).toString('hex')}`
}

function newOp (project: string, data: unknown = null, id: string = uniqueId('op')): NewOp {
  counter += 1
  return { project, id, userId: 'user-1', sessionId: 'session-1', data, ts: 1_700_000_000_000 + counter }
}

/** The op of a result that must be an append, not a duplicate. */
function accepted (result: AppendResult): Op {
  if (result.duplicate) throw new Error(`expected an append, got a duplicate of seq ${result.seq} (id ${result.id})`)
  return result.op
}

function range (from: number, to: number): number[] {
  const out: number[] = []
  for (let n = from; n <= to; n++) out.push(n)
  return out
}

function seqsOf (ops: readonly Op[]): number[] {
  return ops.map(op => op.seq)
}

function isIncreasing (values: readonly number[]): boolean {
  return values.every((value, i) => i === 0 || value > (values[i - 1] as number))
}

/**
 * Every op after `since`, page by page. Throws on a reset and on a page that
 * does not continue exactly where the previous one ended (so a read that
 * ignores `since` cannot loop forever).
 */
async function readAll (log: OperationLog, project: string, since = 0, pageSize = 100): Promise<Op[]> {
  const ops: Op[] = []
  for (;;) {
    const page: ReadResult = await log.read(project, since, pageSize)
    if (page.reset) throw new Error(`unexpected reset reading ${project} since ${since}`)
    const seqs = seqsOf(page.ops)
    if (!seqs.every((seq, i) => seq === since + 1 + i)) throw new Error(`reading since ${since} gave seqs ${seqs.join(',')}`)
    ops.push(...page.ops)
    const last = page.ops.at(-1)
    if (last === undefined || last.seq >= page.head) return ops
    since = last.seq
  }
}

async function appendAll (log: OperationLog, project: string, count: number): Promise<Op[]> {
  const ops: Op[] = []
  for (let i = 1; i <= count; i++) ops.push(accepted(await log.append(newOp(project, { i }))))
  return ops
}

export function operationLogContract (t: Test, name: string, factory: OperationLogFactory): void {
  t.test(`${name} fulfils the OperationLog contract`, async t => {
    async function open (t: Test, historyLimit = LARGE_HISTORY): Promise<OperationLog> {
      const { log, close } = await factory({ historyLimit })
      t.teardown(close)
      return log
    }

    t.test('assigns seqs 1, 2, 3, ... to a project and resolves the appended op', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      for (const seq of range(1, 5)) {
        const input = newOp(project, { seq })
        const result = await log.append(input)
        t.equal(result.duplicate, false, `append ${seq} is not a duplicate`)
        t.strictSame(accepted(result), { ...input, seq }, `append ${seq} gets seq ${seq}`)
      }
    })

    t.test('reports the head the appends reached', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      const before = await log.head(project)
      t.equal(before.seq, 0, 'head is 0 before the first append')
      for (const seq of range(1, 3)) {
        const result = await log.append(newOp(project))
        t.strictSame(await log.head(project), { epoch: result.epoch, seq }, `head after append ${seq}`)
      }
    })

    t.test('keeps the seqs of different projects independent', async t => {
      const log = await open(t)
      const first = uniqueId('project')
      const second = uniqueId('project')
      const seqs = new Map<string, number[]>([[first, []], [second, []]])
      for (let i = 0; i < 3; i++) {
        for (const project of [first, second]) seqs.get(project)?.push(accepted(await log.append(newOp(project))).seq)
      }
      t.strictSame(seqs.get(first), [1, 2, 3])
      t.strictSame(seqs.get(second), [1, 2, 3])
      t.equal((await log.head(first)).seq, 3)
      t.equal((await log.head(second)).seq, 3)
      const stored = await readAll(log, second)
      t.strictSame(stored.map(op => op.project), [second, second, second], 'a read returns only its project\'s ops')
    })

    t.test('assigns distinct contiguous seqs to 200 concurrent appends', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      const results = await Promise.all(range(1, 200).map(async i => await log.append(newOp(project, { i }))))
      const acked = results.map(accepted)
      t.strictSame(seqsOf(acked).sort((x, y) => x - y), range(1, 200), 'seqs are 1..200, each once')
      t.equal((await log.head(project)).seq, 200)
      const stored = await readAll(log, project)
      t.strictSame(stored, [...acked].sort((x, y) => x.seq - y.seq), 'the log holds each op at the seq it was acked with')
    })

    t.test('assigns increasing seqs to each caller\'s appends in call order, among concurrent callers', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      // Four callers issue 50 appends each without awaiting them one by one,
      // interleaved with each other.
      const callers: Array<Array<Promise<AppendResult>>> = [[], [], [], []]
      for (let i = 0; i < 50; i++) {
        for (const [caller, calls] of callers.entries()) calls.push(log.append(newOp(project, { caller, i })))
      }
      const perCaller = await Promise.all(callers.map(async calls => (await Promise.all(calls)).map(accepted)))
      for (const [caller, ops] of perCaller.entries()) {
        t.ok(isIncreasing(seqsOf(ops)), `caller ${caller} got increasing seqs in call order: ${seqsOf(ops).join(',')}`)
      }
      t.strictSame(perCaller.flatMap(seqsOf).sort((x, y) => x - y), range(1, 200), 'seqs are 1..200, each once')
    })

    t.test('answers a repeated id with the original seq and appends nothing', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      const original = accepted(await log.append(newOp(project, { v: 'original' })))
      const other = accepted(await log.append(newOp(project, { v: 'other' })))
      const before = await log.head(project)
      const retry: NewOp = { ...newOp(project, { v: 'retried' }, original.id), userId: 'user-2', sessionId: null }
      t.strictSame(await log.append(retry), { duplicate: true, epoch: before.epoch, seq: original.seq, id: original.id })
      t.strictSame(await log.head(project), before, 'the head did not move')
      t.strictSame(await readAll(log, project), [original, other], 'the log holds the original op only once')
    })

    t.test('accepts exactly one of concurrent appends with the same id', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      const input = newOp(project, { v: 1 })
      const results = await Promise.all(range(1, 5).map(async v => await log.append({ ...input, data: { v } })))
      const appended = results.filter(result => !result.duplicate)
      t.equal(appended.length, 1, 'one append went through')
      const seq = accepted(appended[0] as AppendResult).seq
      for (const result of results) {
        if (result.duplicate) t.strictSame(result, { duplicate: true, epoch: result.epoch, seq, id: input.id })
      }
      t.equal((await log.head(project)).seq, 1)
      t.equal((await readAll(log, project)).length, 1)
    })

    t.test('treats the same id in different projects as different ops', async t => {
      const log = await open(t)
      const id = uniqueId('op')
      const first = await log.append(newOp(uniqueId('project'), 'a', id))
      const second = await log.append(newOp(uniqueId('project'), 'b', id))
      t.equal(accepted(first).seq, 1)
      t.equal(accepted(second).seq, 1)
    })

    t.test('reads the ops after since up to the head, oldest first', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      const acked = await appendAll(log, project, 10)
      const { epoch } = await log.head(project)
      t.strictSame(await log.read(project, 0, 100), { epoch, head: 10, ops: acked, reset: false }, 'since 0')
      t.strictSame(await log.read(project, 3, 100), { epoch, head: 10, ops: acked.slice(3), reset: false }, 'since 3')
      t.strictSame(await log.read(project, 9, 100), { epoch, head: 10, ops: acked.slice(9), reset: false }, 'since 9')
      t.strictSame(await log.read(project, 10, 100), { epoch, head: 10, ops: [], reset: false }, 'since the head')
    })

    t.test('reads at most limit ops, so paging reproduces the whole range', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      const acked = await appendAll(log, project, 25)
      const first = await log.read(project, 0, 7)
      t.strictSame(first.ops, acked.slice(0, 7), 'a full page')
      t.equal(first.head, 25, 'the head, not the end of the page')
      t.equal(first.reset, false)
      t.strictSame((await log.read(project, 5, 1)).ops, acked.slice(5, 6), 'limit 1')
      t.strictSame((await log.read(project, 20, 7)).ops, acked.slice(20), 'a last page shorter than the limit')
      const pages: Op[][] = []
      for (let since = 0; since < 25 && pages.length < 25;) {
        const page = await log.read(project, since, 7)
        if (page.ops.length === 0) break
        pages.push([...page.ops])
        since = Math.max(since + 1, (page.ops.at(-1) as Op).seq)
      }
      t.strictSame(pages.map(page => page.length), [7, 7, 7, 4])
      t.strictSame(pages.flat(), acked, 'the pages together are the whole log')
    })

    t.test('reads a project that never had an op as head 0 with no ops and no reset', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      const read = await log.read(project, 0, 10)
      t.strictSame(read, { epoch: read.epoch, head: 0, ops: [], reset: false })
      t.strictSame(await log.head(project), { epoch: read.epoch, seq: 0 })
    })

    t.test('resets when since is above the head', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      const empty = await log.read(project, 1, 10)
      t.strictSame(empty, { epoch: empty.epoch, head: 0, ops: [], reset: true }, 'since 1 on an empty project')
      await appendAll(log, project, 3)
      const { epoch } = await log.head(project)
      t.strictSame(await log.read(project, 4, 10), { epoch, head: 3, ops: [], reset: true }, 'since head + 1')
      t.strictSame(await log.read(project, 1000, 10), { epoch, head: 3, ops: [], reset: true }, 'since far above the head')
      t.equal((await log.read(project, 3, 10)).reset, false, 'since the head is not a reset')
    })

    t.test('resets when the oldest kept op is newer than since + 1, and keeps at least historyLimit ops', async t => {
      const historyLimit = 5
      const log = await open(t, historyLimit)
      const project = uniqueId('project')
      // Far more than twice the bound, so that adapters trimming in batches or
      // approximately (Redis XADD MAXLEN ~) have trimmed too.
      const total = 50 * historyLimit
      const acked = await appendAll(log, project, total)
      const { epoch } = await log.head(project)

      t.strictSame(await log.read(project, 0, 10), { epoch, head: total, ops: [], reset: true }, 'since 0 is gone')
      t.strictSame(await log.read(project, total - historyLimit, total), { epoch, head: total, ops: acked.slice(-historyLimit), reset: false },
        'the last historyLimit ops are kept')

      // Every since either resets with no ops or reads exactly since+1..head,
      // and the resets are the sinces below the oldest kept op.
      const problems: string[] = []
      let oldestServed: number | undefined
      for (let since = 0; since <= total; since++) {
        const read = await log.read(project, since, total)
        if (read.head !== total) problems.push(`since ${since}: head ${read.head}`)
        if (read.reset) {
          if (read.ops.length > 0) problems.push(`since ${since}: a reset with ${read.ops.length} ops`)
          if (oldestServed !== undefined) problems.push(`since ${since}: a reset after since ${oldestServed} was served`)
        } else {
          oldestServed ??= since
          const expected = acked.slice(since)
          if (!isDeepStrictEqual(read.ops, expected)) problems.push(`since ${since}: seqs ${seqsOf(read.ops).join(',')}`)
        }
      }
      t.strictSame(problems, [], 'reads are exact or resets')
      t.ok(oldestServed !== undefined && oldestServed >= 1 && oldestServed <= total - historyLimit,
        `the oldest servable since (${oldestServed}) is between 1 and head - historyLimit`)
    })

    t.test('remembers the ids of at least the kept history', async t => {
      const historyLimit = 5
      const log = await open(t, historyLimit)
      const project = uniqueId('project')
      const acked = await appendAll(log, project, 4 * historyLimit + 1)
      const before = await log.head(project)
      for (const op of acked.slice(-historyLimit)) {
        const retry = await log.append(newOp(project, 'retried', op.id))
        t.strictSame(retry, { duplicate: true, epoch: before.epoch, seq: op.seq, id: op.id }, `op ${op.seq} is a duplicate`)
      }
      t.strictSame(await log.head(project), before, 'the head did not move')
    })

    t.test('resets when the given epoch is not the current one', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      const acked = await appendAll(log, project, 3)
      const { epoch } = await log.head(project)
      const other = `${epoch}x`
      t.strictSame(await log.read(project, 0, 10, epoch), { epoch, head: 3, ops: acked, reset: false }, 'the current epoch')
      t.strictSame(await log.read(project, 0, 10, other), { epoch, head: 3, ops: [], reset: true }, 'another epoch')
      t.strictSame(await log.read(project, 3, 10, other), { epoch, head: 3, ops: [], reset: true }, 'another epoch at the head')
    })

    t.test('names the epoch with a non-empty string that stays the same across calls', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      const { epoch } = await log.head(project)
      t.type(epoch, 'string')
      t.ok(epoch.length > 0, 'the epoch is not empty')
      t.equal((await log.read(project, 0, 10)).epoch, epoch, 'read before the first op')
      const first = await log.append(newOp(project))
      t.equal(first.epoch, epoch, 'the first append')
      t.equal((await log.append(newOp(project))).epoch, epoch, 'another append')
      t.equal((await log.append(newOp(project, null, accepted(first).id))).epoch, epoch, 'a duplicate')
      t.equal((await log.read(project, 0, 10)).epoch, epoch, 'read')
      t.equal((await log.head(project)).epoch, epoch, 'head')
      t.equal((await log.read(project, 0, 10, epoch)).reset, false, 'reading with it is not a reset')
    })

    t.test('round-trips op fields and data as JSON values', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      const values: unknown[] = [
        { nested: { deeper: { list: [1, 'two', { three: 3 }], flag: true, nothing: null } } },
        [1, [2, [3, []]], {}, 'x', null],
        'unicode: é ß € 日本語 𝄞 👩‍👩‍👧 "quoted" \\ \n \t \u0000',
        null,
        0,
        -1.5,
        0.1 + 0.2,
        Number.MAX_SAFE_INTEGER,
        1e21,
        true,
        false,
        '',
        {},
        [],
        { 'key with spaces': 1, ключ: 'значение', '': 'empty key', 'a.b': { '$c': [] } }
      ]
      const inputs = values.map((data, i) => ({ ...newOp(project, data), sessionId: i % 2 === 0 ? null : 'session-x' }))
      const acked: Op[] = []
      for (const input of inputs) acked.push(accepted(await log.append(input)))
      const expected = inputs.map((input, i) => ({ ...input, seq: i + 1 }))
      t.strictSame(acked, expected, 'the appended ops')
      t.strictSame(await readAll(log, project), expected, 'the ops read back')
    })

    t.test('shares no object with the caller', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      const data = { nested: { value: 'original' }, list: [1, 2] }
      const expected = { nested: { value: 'original' }, list: [1, 2] }
      const ack = accepted(await log.append(newOp(project, data)))
      data.nested.value = 'changed by the caller'
      data.list.push(3)
      t.strictSame(ack.data, expected, 'the resolved op is not the input')
      const acked = ack.data as typeof data
      acked.nested.value = 'changed through the resolved op'
      acked.list.push(4)
      const first = await log.read(project, 0, 10)
      t.strictSame(first.ops[0]?.data, expected, 'neither the input nor the resolved op is stored')
      const read = first.ops[0]?.data as typeof data
      read.nested.value = 'changed through a read'
      read.list.push(5)
      t.strictSame((await log.read(project, 0, 10)).ops[0]?.data, expected, 'a read op is not stored')
    })

    t.test('closes idempotently', async t => {
      const log = await open(t)
      await log.head(uniqueId('project'))
      await t.resolves(log.close(), 'first close')
      await t.resolves(log.close(), 'second close')
    })
  })
}
