import t from 'tap'
import { guardPort } from '../../lib/hub/guard.js'
import { ProtocolError } from '../../lib/errors.js'
import { MemoryOperationLog } from '../../adapters/memory/operation-log.js'

t.test('a guarded port answers like the port while it works', async (t) => {
  const log = guardPort(new MemoryOperationLog(), 'op log')
  const r = await log.append({ project: 'p', id: 'a', userId: 'u', sessionId: null, data: 1, ts: 1 })
  t.equal(r.duplicate ? r.seq : r.op.seq, 1)
  t.same(await log.head('p'), { epoch: r.epoch, seq: 1 })
})

t.test('a port that rejects is seen as unavailable, with the cause kept and reported', async (t) => {
  const seen: unknown[] = []
  const broken = { async read (): Promise<never> { throw new Error('ECONNREFUSED') }, async close (): Promise<void> {} }
  const guarded = guardPort(broken, 'op log', (err) => { seen.push(err) })
  const err = await guarded.read().catch((e: unknown) => e)
  t.ok(err instanceof ProtocolError)
  t.equal((err as ProtocolError).code, 'unavailable')
  t.match((err as ProtocolError).message, 'op log')
  t.equal(((err as ProtocolError).cause as Error).message, 'ECONNREFUSED')
  t.equal(seen.length, 1)
})

t.test('a protocol error from a port passes through unchanged', async (t) => {
  const port = { async go (): Promise<never> { throw new ProtocolError('bad_request', 'nope') } }
  const err = await guardPort(port, 'x').go().catch((e: unknown) => e)
  t.equal((err as ProtocolError).code, 'bad_request')
})
