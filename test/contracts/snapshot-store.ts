/**
 * The SnapshotStore contract: the JSDoc of ports/snapshot-store.ts, as tests.
 * Every adapter's test file runs it, with the op log it is checked against.
 *
 * Written for a shared, long-lived store (a real redis-server): each test
 * uses its own project ids and never relies on timing.
 */
import type { Test } from 'tap'
import { randomBytes } from 'node:crypto'
import type { NewOp, OperationLog } from '../../ports/operation-log.js'
import type { SnapshotStore } from '../../ports/snapshot-store.js'
import { NO_EPOCH } from '../../lib/types.js'

export interface SnapshotStoreHarness {
  /** the op log the store is checked against (the one it lives beside) */
  readonly log: OperationLog
  readonly snapshots: SnapshotStore
  readonly close: () => Promise<void>
}

/** The op log's bounds, for the compaction tests; the store and the log share them. */
export interface SnapshotStoreOptions {
  readonly historyLimit: number
  readonly historyBytes?: number
}

export type SnapshotStoreFactory = (opts: SnapshotStoreOptions) => Promise<SnapshotStoreHarness>

let counter = 0

function uniqueId (prefix: string): string {
  counter += 1
  return `${prefix}-${counter}-${randomBytes(4).toString('hex')}`
}

function newOp (project: string, data: unknown = null): NewOp {
  counter += 1
  return { project, id: uniqueId('op'), userId: 'u', sessionId: null, data, ts: 1_700_000_000_000 + counter }
}

async function appendMany (log: OperationLog, project: string, count: number): Promise<string> {
  let epoch = ''
  for (let i = 0; i < count; i++) epoch = (await log.append(newOp(project, { i }))).epoch
  return epoch
}

/** The oldest since a read serves without reset. */
async function oldestServed (log: OperationLog, project: string): Promise<number> {
  const { seq: head } = await log.head(project)
  for (let since = 0; since <= head; since++) {
    if (!(await log.read(project, since, 1)).reset) return since
  }
  throw new Error('even since = head resets')
}

export function snapshotStoreContract (t: Test, name: string, factory: SnapshotStoreFactory): void {
  t.test(`${name} fulfils the SnapshotStore contract`, async t => {
    async function open (t: Test, options: SnapshotStoreOptions = { historyLimit: 1000 }): Promise<SnapshotStoreHarness> {
      const made = await factory(options)
      t.teardown(made.close)
      return made
    }

    t.test('a project without a log has no snapshot, and a put creates nothing', async t => {
      const { log, snapshots } = await open(t)
      const project = uniqueId('p')
      t.equal(await snapshots.get(project), null)
      t.strictSame(await snapshots.put({ project, epoch: 'abc', seq: 0, state: {} }), { stored: false, reason: 'epoch' })
      t.strictSame(await log.head(project), { epoch: NO_EPOCH, seq: 0 }, 'no log was created')
      t.equal(await snapshots.get(project), null)
    })

    t.test('stores a snapshot of the current epoch at a seq the log reached, and gives back a copy', async t => {
      const { log, snapshots } = await open(t)
      const project = uniqueId('p')
      const epoch = await appendMany(log, project, 3)
      const state = { notes: { a: { text: 'é ✓', n: [1, 2, null] } }, big: 'x'.repeat(10_000) }
      t.strictSame(await snapshots.put({ project, epoch, seq: 2, state }), { stored: true })
      const got = await snapshots.get(project)
      t.strictSame(got, { project, epoch, seq: 2, state })
      ;(got?.state as { notes: unknown }).notes = 'changed'
      t.strictSame((await snapshots.get(project))?.state, state, 'changing what get gave changes nothing stored')
      t.strictSame(await snapshots.put({ project, epoch, seq: 3, state: null }), { stored: true }, 'a snapshot at the head')
      t.strictSame(await snapshots.get(project), { project, epoch, seq: 3, state: null }, 'null is a state')
    })

    t.test('refuses a snapshot above the head, of another epoch, or not newer than the stored one', async t => {
      const { log, snapshots } = await open(t)
      const project = uniqueId('p')
      const epoch = await appendMany(log, project, 5)
      t.strictSame(await snapshots.put({ project, epoch, seq: 6, state: 'ahead' }), { stored: false, reason: 'ahead' })
      t.strictSame(await snapshots.put({ project, epoch: 'another-epoch', seq: 1, state: 'x' }), { stored: false, reason: 'epoch' })
      t.strictSame(await snapshots.put({ project, epoch: NO_EPOCH, seq: 1, state: 'x' }), { stored: false, reason: 'epoch' })
      t.equal(await snapshots.get(project), null, 'nothing refused was stored')
      t.strictSame(await snapshots.put({ project, epoch, seq: 4, state: 'four' }), { stored: true })
      t.strictSame(await snapshots.put({ project, epoch, seq: 4, state: 'four again' }), { stored: false, reason: 'older' })
      t.strictSame(await snapshots.put({ project, epoch, seq: 2, state: 'two' }), { stored: false, reason: 'older' })
      t.strictSame((await snapshots.get(project))?.state, 'four', 'an older snapshot never replaces a newer one')
      t.strictSame(await snapshots.put({ project, epoch, seq: 5, state: 'five' }), { stored: true })
      t.strictSame(await snapshots.get(project), { project, epoch, seq: 5, state: 'five' }, 'a newer one replaces the older')
    })

    t.test('rejects a malformed snapshot with a TypeError before the store is touched', async t => {
      const { log, snapshots } = await open(t)
      const project = uniqueId('p')
      const epoch = await appendMany(log, project, 2)
      const circular: Record<string, unknown> = {}
      circular.self = circular
      const bad = [
        { project: 'no spaces', epoch, seq: 1, state: 1 },
        { project: 'x'.repeat(129), epoch, seq: 1, state: 1 },
        { project, epoch: '', seq: 1, state: 1 },
        { project, epoch: 'a\nb', seq: 1, state: 1 },
        { project, epoch, seq: -1, state: 1 },
        { project, epoch, seq: 1.5, state: 1 },
        { project, epoch, seq: 1, state: undefined },
        { project, epoch, seq: 1, state: () => 1 },
        { project, epoch, seq: 1, state: 10n },
        { project, epoch, seq: 1, state: circular }
      ]
      for (const snapshot of bad) {
        await t.rejects(snapshots.put(snapshot), TypeError, `refused: ${String(snapshot.project).slice(0, 12)} ${snapshot.epoch.slice(0, 8)} ${snapshot.seq} ${typeof snapshot.state}`)
      }
      t.equal(await snapshots.get(project), null, 'nothing was stored')
      await t.rejects(snapshots.get('bad id!'), TypeError, 'get validates the project id too')
    })

    t.test('a snapshot never outlives its epoch', async t => {
      const { log, snapshots } = await open(t)
      const project = uniqueId('p')
      const epoch = await appendMany(log, project, 2)
      t.strictSame(await snapshots.put({ project, epoch, seq: 2, state: 'old life' }), { stored: true })
      // Another epoch of the same project id: another log (same store) whose project was never created.
      const other = uniqueId('p')
      t.equal(await snapshots.get(other), null, 'another project sees no snapshot')
      t.strictSame(await snapshots.put({ project: other, epoch, seq: 1, state: 'x' }), { stored: false, reason: 'epoch' },
        'an epoch is the project\'s own')
    })

    t.test('the ops after a snapshot stay readable up to twice the history bound; the ops it covers go first', async t => {
      const { log, snapshots } = await open(t, { historyLimit: 10 })
      const project = uniqueId('p')
      const control = uniqueId('p')
      const epoch = await appendMany(log, project, 10)
      await appendMany(log, control, 20)
      t.strictSame(await snapshots.put({ project, epoch, seq: 5, state: 's5' }), { stored: true })
      await appendMany(log, project, 10)
      t.equal(await oldestServed(log, control), 10, 'without a snapshot the history holds the bound: ops 11..20')
      t.equal(await oldestServed(log, project), 5, 'with a snapshot at 5 every op after it is kept: 6..20 (15 ops)')
      await appendMany(log, project, 5)
      t.equal(await oldestServed(log, project), 5, 'at twice the bound (6..25) still')
      await appendMany(log, project, 1)
      t.equal(await oldestServed(log, project), 6, 'past twice the bound the oldest goes: the snapshot no longer meets the history')
      t.strictSame(await snapshots.put({ project, epoch, seq: 24, state: 's24' }), { stored: true })
      t.equal(await oldestServed(log, project), 16, 'a newer snapshot lets the ops it covers go at once, down to the bound (17..26)')
      await appendMany(log, project, 3)
      t.equal(await oldestServed(log, project), 19, 'then the history keeps its bound as usual: 20..29')
      t.strictSame((await snapshots.get(project))?.seq, 24)
    })

    t.test('a byte bound works the same way', async t => {
      const { log, snapshots } = await open(t, { historyLimit: 1000, historyBytes: 4000 })
      const project = uniqueId('p')
      const big = 'y'.repeat(900)
      let epoch = ''
      for (let i = 0; i < 4; i++) epoch = (await log.append(newOp(project, big))).epoch
      t.strictSame(await snapshots.put({ project, epoch, seq: 2, state: 'two' }), { stored: true })
      for (let i = 0; i < 4; i++) await log.append(newOp(project, big))
      t.equal(await oldestServed(log, project), 2, '6 ops of ~1 KB (past 4000 bytes) kept: they follow the snapshot')
      for (let i = 0; i < 4; i++) await log.append(newOp(project, big))
      t.ok(await oldestServed(log, project) > 2, 'past twice the bytes the oldest go')
    })
  })
}
