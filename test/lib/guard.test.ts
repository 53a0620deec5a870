import t from 'tap'
import { guardPort } from '../../lib/hub/guard.js'
import { BadRequestError, UnavailableError, wireCode, type FlowError } from '../../lib/errors.js'
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
  t.ok(err instanceof UnavailableError)
  t.equal(wireCode(err), 'unavailable')
  t.match((err as FlowError).message, 'op log')
  t.equal(((err as FlowError).cause as Error).message, 'ECONNREFUSED')
  t.equal(seen.length, 1)
})

t.test('a protocol error from a port passes through unchanged', async (t) => {
  const port = { async go (): Promise<never> { throw new BadRequestError('nope') } }
  const err = await guardPort(port, 'x').go().catch((e: unknown) => e)
  t.equal(wireCode(err), 'bad_request')
})
