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
import { NO_EPOCH, type Op } from '../../lib/types.js'
import { storedOpJson } from '../../lib/protocol/op-frame.js'
import { waitFor } from '../helpers/wait.js'

export interface OperationLogHarness {
  readonly log: OperationLog
  /** frees everything the factory made (the log and its connections) */
  readonly close: () => Promise<void>
  /**
   * The log cannot tell which projects exist, so `create: false` appends like
   * any op (the failover log on its fallback, as the port says)
   */
  readonly createsAnyway?: boolean
}

/** The adapter options every adapter takes; those left out keep the adapter's defaults. */
export interface OperationLogOptions {
  readonly historyLimit: number
  readonly historyBytes?: number
  readonly idRetention?: number
  readonly pageBytes?: number
  readonly idleTtlMs?: number
}

export type OperationLogFactory = (opts: OperationLogOptions) => Promise<OperationLogHarness>

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

async function appendAll (log: OperationLog, project: string, count: number, data: (i: number) => unknown = (i) => ({ i })): Promise<Op[]> {
  const ops: Op[] = []
  for (let i = 1; i <= count; i++) ops.push(accepted(await log.append(newOp(project, data(i)))))
  return ops
}

/** An op's size as the port defines it: the UTF-8 length of its stored JSON. */
function sizeOf (op: Op): number {
  return Buffer.byteLength(storedOpJson(op))
}

function sum (values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0)
}

/** The oldest since a read serves (without reset): head - that = the ops kept. */
async function oldestServed (log: OperationLog, project: string): Promise<number> {
  const { seq: head } = await log.head(project)
  for (let since = 0; since <= head; since++) {
    if (!(await log.read(project, since, 1)).reset) return since
  }
  throw new Error('even since = head resets')
}

/** The lengths of the pages a byte budget cuts ops of these sizes into: as many as fit, at least one. */
function pageLengths (sizes: readonly number[], maxBytes: number): number[] {
  const lengths: number[] = []
  let length = 0
  let bytes = 0
  for (const size of sizes) {
    if (length > 0 && bytes + size > maxBytes) {
      lengths.push(length)
      length = 0
      bytes = 0
    }
    length++
    bytes += size
  }
  if (length > 0) lengths.push(length)
  return lengths
}

/** Every op after `since`, page by page, with a byte budget; the pages too. */
async function readPages (log: OperationLog, project: string, maxBytes: number | undefined, since = 0): Promise<Op[][]> {
  const pages: Op[][] = []
  for (;;) {
    const page = await log.read(project, since, 1000, undefined, maxBytes)
    if (page.reset) throw new Error(`unexpected reset reading ${project} since ${since}`)
    if (page.ops.length === 0) return pages
    pages.push([...page.ops])
    since = (page.ops.at(-1) as Op).seq
    if (since >= page.head) return pages
  }
}

export function operationLogContract (t: Test, name: string, factory: OperationLogFactory): void {
  t.test(`${name} fulfils the OperationLog contract`, async t => {
    async function open (t: Test, historyLimit = LARGE_HISTORY, options: Omit<OperationLogOptions, 'historyLimit'> = {}): Promise<OperationLog> {
      return (await harness(t, { historyLimit, ...options })).log
    }

    async function harness (t: Test, options: OperationLogOptions): Promise<OperationLogHarness> {
      const made = await factory(options)
      t.teardown(made.close)
      return made
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
      t.strictSame(await log.head(project), { epoch: NO_EPOCH, seq: 0 }, 'no log before the first append')
      await log.open(project)
      t.equal((await log.head(project)).seq, 0, 'head is 0 before the first append')
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
      // A retry by the same sender, from another session.
      const retry: NewOp = { ...newOp(project, { v: 'retried' }, original.id), userId: original.userId, sessionId: null }
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

    t.test('treats the same id from two senders as two ops, and each sender\'s retry as a duplicate', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      const id = uniqueId('op')
      const ann = await log.append({ ...newOp(project, 'ann\'s', id), userId: 'ann' })
      const bob = await log.append({ ...newOp(project, 'bob\'s', id), userId: 'bob' })
      t.equal(accepted(ann).seq, 1)
      t.equal(accepted(bob).seq, 2, 'one user\'s id never absorbs another user\'s op')
      t.match(await log.append({ ...newOp(project, 'again', id), userId: 'bob' }), { duplicate: true, seq: 2 })
      t.match(await log.append({ ...newOp(project, 'again', id), userId: 'ann' }), { duplicate: true, seq: 1 })
      t.equal((await log.head(project)).seq, 2)
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

    t.test('reads a project that has a log but no op as head 0 with no ops and no reset', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      const { epoch } = await log.open(project)
      t.strictSame(await log.read(project, 0, 10), { epoch, head: 0, ops: [], reset: false })
      t.strictSame(await log.read(project, 0, 10, epoch), { epoch, head: 0, ops: [], reset: false }, 'with its epoch')
      t.strictSame(await log.head(project), { epoch, seq: 0 })
    })

    t.test('answers NO_EPOCH at head 0 for a project with no log, and creates nothing by head or read', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      t.strictSame(await log.head(project), { epoch: NO_EPOCH, seq: 0 }, 'head')
      t.strictSame(await log.read(project, 0, 10), { epoch: NO_EPOCH, head: 0, ops: [], reset: false }, 'since 0')
      t.strictSame(await log.read(project, 0, 10, NO_EPOCH), { epoch: NO_EPOCH, head: 0, ops: [], reset: false }, 'since 0 with NO_EPOCH')
      t.strictSame(await log.read(project, 0, 10, 'an-old-epoch'), { epoch: NO_EPOCH, head: 0, ops: [], reset: true }, 'another epoch resets')
      t.strictSame(await log.read(project, 3, 10, NO_EPOCH), { epoch: NO_EPOCH, head: 0, ops: [], reset: true }, 'since > 0 resets')
      t.strictSame(await log.head(project), { epoch: NO_EPOCH, seq: 0 }, 'still no log')
      const opened = await log.open(project)
      t.equal(opened.created, true, 'so open creates it: nothing did before')
    })

    t.test('opens a project: a new epoch at head 0 the first time, the same position afterwards', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      const first = await log.open(project)
      t.equal(first.created, true, 'created')
      t.equal(first.seq, 0, 'head 0')
      t.type(first.epoch, 'string')
      t.ok(first.epoch !== NO_EPOCH && first.epoch.length > NO_EPOCH.length, `a real epoch (${first.epoch}), longer than NO_EPOCH`)
      t.strictSame(await log.open(project), { epoch: first.epoch, seq: 0, created: false }, 'opened again: not created')
      const op = accepted(await log.append(newOp(project)))
      t.strictSame(await log.open(project), { epoch: first.epoch, seq: op.seq, created: false }, 'after an append: its head')
    })

    t.test('creates one epoch when a project is opened by concurrent calls, and says created to one of them', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      const opened = await Promise.all(range(1, 20).map(async () => await log.open(project)))
      t.equal(new Set(opened.map(o => o.epoch)).size, 1, 'one epoch')
      t.equal(opened.filter(o => o.created).length, 1, 'one call created it')
      t.strictSame(new Set(opened.map(o => o.seq)), new Set([0]), 'head 0')
    })

    t.test('creates the log on the first append and says so on that append only', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      const first = await log.append(newOp(project))
      t.match(first, { duplicate: false, created: true }, 'the first append created the log')
      t.not(first.epoch, NO_EPOCH, 'with a real epoch')
      t.match(await log.append(newOp(project)), { duplicate: false, created: false, epoch: first.epoch }, 'the next did not')
      t.strictSame(await log.head(project), { epoch: first.epoch, seq: 2 })
      const other = uniqueId('project')
      await log.open(other)
      t.match(await log.append(newOp(other)), { duplicate: false, created: false }, 'nor does the first append to an opened log')
    })

    t.test('appends with create: false only to a project that has a log', async t => {
      const { log, createsAnyway } = await harness(t, { historyLimit: LARGE_HISTORY })
      const project = uniqueId('project')
      const refused = await log.append({ ...newOp(project), create: false })
      if (createsAnyway === true) {
        t.match(refused, { duplicate: false, created: true }, 'this log cannot tell, so it takes the op')
        return
      }
      t.strictSame(refused, { duplicate: false, created: false, missing: true }, 'no log: missing')
      t.strictSame(await log.head(project), { epoch: NO_EPOCH, seq: 0 }, 'nothing was written')
      t.equal((await log.open(project)).created, true, 'not even the log')
      const op = newOp(project, 'kept')
      const appended = await log.append({ ...op, create: false })
      t.match(appended, { duplicate: false, created: false, op: { ...op, seq: 1 } }, 'once opened, appended')
      t.match(await log.append({ ...op, create: false }), { duplicate: true, seq: 1 }, 'and idempotent')
    })

    t.test('resets when since is above the head', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      const { epoch: opened } = await log.open(project)
      t.strictSame(await log.read(project, 1, 10), { epoch: opened, head: 0, ops: [], reset: true }, 'since 1 on an empty project')
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
      const { epoch } = await log.open(project)
      t.type(epoch, 'string')
      t.ok(epoch.length > 0, 'the epoch is not empty')
      t.equal((await log.head(project)).epoch, epoch, 'head before the first op')
      t.equal((await log.read(project, 0, 10)).epoch, epoch, 'read before the first op')
      const first = await log.append(newOp(project))
      t.equal(first.epoch, epoch, 'the first append')
      t.equal((await log.append(newOp(project))).epoch, epoch, 'another append')
      t.equal((await log.append(newOp(project, null, accepted(first).id))).epoch, epoch, 'a duplicate')
      t.equal((await log.read(project, 0, 10)).epoch, epoch, 'read')
      t.equal((await log.head(project)).epoch, epoch, 'head')
      t.equal((await log.read(project, 0, 10, epoch)).reset, false, 'reading with it is not a reset')
    })

    t.test('keeps at most historyBytes of history: the newest ops whose sizes fit, the oldest going first', async t => {
      const historyBytes = 10_000
      const log = await open(t, LARGE_HISTORY, { historyBytes })
      const project = uniqueId('project')
      // Sizes from about 300 to about 1,500 bytes, so the cut falls between ops.
      const acked = await appendAll(log, project, 60, (i) => 'x'.repeat(250 + (i * 397) % 1250))
      const sizes = acked.map(sizeOf)
      // The longest run of newest ops within the bound.
      let fits = 0
      while (fits < sizes.length && sum(sizes.slice(sizes.length - fits - 1)) <= historyBytes) fits++
      t.ok(fits > 1 && fits < 60, `${fits} ops fit`)
      const since = await oldestServed(log, project)
      t.equal(60 - since, fits, 'exactly the newest ops that fit are readable')
      t.ok(sum(sizes.slice(since)) <= historyBytes, 'their sizes are within historyBytes')
      t.strictSame((await log.read(project, since, 1000, undefined, Number.MAX_SAFE_INTEGER)).ops, acked.slice(since), 'and read back whole')
    })

    t.test('keeps the newest op even when it alone is larger than historyBytes', async t => {
      const historyBytes = 2_000
      const log = await open(t, LARGE_HISTORY, { historyBytes })
      const project = uniqueId('project')
      await appendAll(log, project, 3, () => 'small')
      const big = accepted(await log.append(newOp(project, 'y'.repeat(5_000))))
      t.ok(sizeOf(big) > historyBytes)
      t.strictSame((await log.read(project, 3, 10)).ops, [big], 'the big op is readable')
      t.equal((await log.read(project, 2, 10)).reset, true, 'the ops before it are gone')
      const small = accepted(await log.append(newOp(project, 'small again')))
      t.strictSame((await log.read(project, 4, 10)).ops, [small], 'the next op pushes the big one out')
      t.equal((await log.read(project, 3, 10)).reset, true)
    })

    t.test('ends a page before the op that would take it past maxBytes, and serves a first op larger than maxBytes alone', async t => {
      const log = await open(t)
      const project = uniqueId('project')
      const acked = await appendAll(log, project, 12, (i) => 'z'.repeat(900 + i))
      const sizes = acked.map(sizeOf)
      const three = sum(sizes.slice(0, 3))
      const page = await log.read(project, 0, 100, undefined, three)
      t.strictSame(page.ops, acked.slice(0, 3), 'exactly the ops that fit (the bound is inclusive)')
      t.equal(page.head, 12, 'the head, beyond the page')
      t.strictSame((await log.read(project, 0, 100, undefined, three - 1)).ops, acked.slice(0, 2), 'one byte less: one op less')
      t.strictSame((await log.read(project, 0, 2, undefined, three)).ops, acked.slice(0, 2), 'limit still bounds the page')
      const pages = await readPages(log, project, three)
      t.strictSame(pages.map(p => p.length), pageLengths(sizes, three), 'continuing from the last seq pages through the whole log')
      t.strictSame(pages.flat(), acked)
      const single = await readPages(log, project, 10)
      t.strictSame(single.map(p => p.length), Array(12).fill(1), 'ops larger than maxBytes come one per page')
      t.strictSame(single.flat(), acked, 'and all of them')
    })

    t.test('bounds a read by the log\'s pageBytes when no maxBytes is given', async t => {
      const log = await open(t, LARGE_HISTORY, { pageBytes: 2_500 })
      const project = uniqueId('project')
      const acked = await appendAll(log, project, 5, () => 'p'.repeat(1_000))
      t.strictSame((await log.read(project, 0, 100)).ops, acked.slice(0, 2), 'two ops of about 1,050 bytes fit in 2,500')
      t.strictSame((await log.read(project, 0, 100, undefined, 100_000)).ops, acked, 'maxBytes overrides it')
    })

    t.test('remembers at least the last idRetention op ids and at most twice that', async t => {
      const log = await open(t, 2, { idRetention: 3 })
      const project = uniqueId('project')
      const acked = await appendAll(log, project, 7)
      const before = await log.head(project)
      for (const op of acked.slice(-3)) {
        t.strictSame(await log.append(newOp(project, 'retried', op.id)), { duplicate: true, epoch: before.epoch, seq: op.seq, id: op.id },
          `op ${op.seq}, one of the last 3, is remembered`)
      }
      t.strictSame(await log.head(project), before, 'the head did not move')
      const first = acked[0] as Op
      t.match(await log.append(newOp(project, 'again', first.id)), { duplicate: false, op: { seq: 8 } }, 'the id 7 appends back (more than 2 x 3) is forgotten')
    })

    t.test('forgets a project idle for idleTtlMs whole: it comes back with a new epoch', async t => {
      const log = await open(t, LARGE_HISTORY, { idleTtlMs: 300 })
      const project = uniqueId('project')
      const acked = await appendAll(log, project, 3)
      const { epoch } = await log.head(project)
      // Reads neither keep it nor bring it back.
      await waitFor(async () => (await log.read(project, 0, 10)).epoch === NO_EPOCH, { what: 'the idle project to be forgotten', timeoutMs: 10_000, intervalMs: 50 })
      t.strictSame(await log.head(project), { epoch: NO_EPOCH, seq: 0 }, 'no log')
      t.strictSame(await log.read(project, 3, 10, epoch), { epoch: NO_EPOCH, head: 0, ops: [], reset: true }, 'its readers reset')
      const again = await log.append(newOp(project, 'again', (acked[0] as Op).id))
      t.match(again, { duplicate: false, created: true, op: { seq: 1 } }, 'appended anew: the ids were forgotten too')
      t.not(again.epoch, epoch, 'a new epoch')
    })

    t.test('keeps a project that appends, opens or touches reach within idleTtlMs, and touches nothing else', async t => {
      const idleTtlMs = 1_000
      const log = await open(t, LARGE_HISTORY, { idleTtlMs })
      const [touched, opened, idle, unknown] = [uniqueId('touched'), uniqueId('opened'), uniqueId('idle'), uniqueId('unknown')]
      for (const project of [touched, opened, idle]) await log.append(newOp(project))
      const epochs = await Promise.all([touched, opened].map(async (project) => (await log.head(project)).epoch))
      // The idle project is the clock: while it expires, the others are touched and opened.
      await waitFor(async () => {
        await log.touch([touched, unknown])
        await log.open(opened)
        return (await log.head(idle)).epoch === NO_EPOCH
      }, { what: 'the idle project to be forgotten', timeoutMs: 20_000, intervalMs: 50 })
      t.strictSame(await log.head(touched), { epoch: epochs[0], seq: 1 }, 'the touched project kept its log')
      t.strictSame(await log.head(opened), { epoch: epochs[1], seq: 1 }, 'the opened project kept its log')
      t.strictSame(await log.head(unknown), { epoch: NO_EPOCH, seq: 0 }, 'touch created nothing')
      t.equal((await log.read(touched, 0, 10)).ops.length, 1, 'with its history')
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
      await log.open(uniqueId('project'))
      await t.resolves(log.close(), 'first close')
      await t.resolves(log.close(), 'second close')
    })
  })
}
