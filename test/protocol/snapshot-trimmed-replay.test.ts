/**
 * A replay that the history is trimmed under, between two of its pages:
 * the joiner asked for state (`snapshot: true`) with a `since` the history
 * served when the replay began. It gets the ops of the first pages, then a
 * `snapshot` (which replaces its state and position, docs/protocol.md,
 * Snapshots) and every op after it once: never `reset`, and each run of ops
 * contiguous.
 */
import t from 'tap'
import { startServer } from '../helpers/server.js'
import { connect, type TestClient } from '../helpers/client.js'
import { opsOf, until } from '../helpers/protocol.js'
import type { Op } from '../../lib/types.js'

const reducer = { initial: 0, every: 50, reduce: (state: unknown, _op: Op) => (state as number) + 1 }
const PAD = 'x'.repeat(2000)

/** Ack-paced ops until `stop()`. */
async function writeUntil (client: TestClient, stop: () => boolean): Promise<void> {
  while (!stop()) await client.request({ type: 'op', project: 'p', data: PAD })
}

t.test('a joiner taking state whose replay is trimmed between pages gets the snapshot first, then every op after it once', async (t) => {
  // Pages of ~30 ops (64 KiB of ~2 KB ops), 64 KiB/s of replay per connection: a 100-op replay takes ~3 s,
  // while the writer moves the 100-op history on.
  const server = await startServer(t, { historyMemory: 100, replayPageBytes: 65536, replayBytesPerSecond: 65536, snapshots: reducer })
  const writer = await connect(t, server.ws, { timeoutMs: 20_000 })
  const { epoch } = await writer.join('p')
  for (let i = 0; i < 300; i++) await writer.request({ type: 'op', project: 'p', data: PAD })
  let stopped = false
  const writing = writeUntil(writer, () => stopped)
  const joiner = await connect(t, server.ws, { timeoutMs: 20_000 })
  const joined = await joiner.join('p', { since: 205, epoch, snapshot: true })
  const target = (joined.seq as number) + 20
  await until(joiner, () => (opsOf(joiner, 'p').at(-1)?.seq ?? 0) >= target || joiner.all('reset').length > 0, `op ${target}`, 20_000)
  stopped = true
  await writing
  const frames = joiner.received.slice(joiner.received.indexOf(joined) + 1).filter((f) => f.type !== 'member')
  const shown = frames.map((f) => f.type === 'op' ? f.seq : `${f.type}@${String(f.seq)}`)
  t.comment(JSON.stringify(shown))
  t.same(joiner.all('reset'), [], 'no reset')
  const at = frames.findIndex((f) => f.type === 'snapshot')
  const before = (at === -1 ? frames : frames.slice(0, at)).map((f) => f.seq)
  t.same(before, Array.from({ length: before.length }, (_, i) => 206 + i), 'the replay\'s ops, contiguous from since + 1')
  if (at === -1) return
  const snapshot = frames[at] as unknown as { seq: number, state: number }
  t.equal(snapshot.state, snapshot.seq, 'the snapshot is the fold of ops 1..seq')
  t.ok(before.length === 0 || snapshot.seq > (before.at(-1) as number), 'it is newer than what was replayed')
  const after = frames.slice(at + 1).map((f) => f.type === 'op' ? f.seq : f.type)
  t.same(after, Array.from({ length: after.length }, (_, i) => snapshot.seq + 1 + i), 'then every op after it once, in order')
})
