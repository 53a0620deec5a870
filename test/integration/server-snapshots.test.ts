import t from 'tap'
import { buildServer } from '../../server.js'
import { connect } from '../helpers/client.js'
import { until, seqsOf } from '../helpers/protocol.js'
import { waitFor } from '../helpers/wait.js'
import type { Op } from '../../lib/types.js'

t.test('npm start\'s app (buildServer) takes the snapshots option and hands the reducer to the plugin', async (t) => {
  const snapshots = {
    initial: { n: 0 },
    every: 2,
    reduce: (state: unknown, _op: Op) => ({ n: (state as { n: number }).n + 1 })
  }
  const app = await buildServer({ env: {}, logLevel: 'silent', demo: false, maxEventLoopDelayMs: 0, snapshots })
  t.teardown(async () => { await app.close() })
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const ws = `${address.replace('http:', 'ws:')}/ws`
  const writer = await connect(t, ws)
  await writer.join('doc')
  for (let i = 0; i < 3; i++) await writer.request({ type: 'op', project: 'doc', data: i })
  // The fold runs in the background after op 2.
  await waitFor(async () => (await app.flow.ports.snapshots.get('doc'))?.seq === 2, { what: 'the snapshot at 2' })
  const reader = await connect(t, ws)
  await reader.join('doc', { snapshot: true })
  t.match(await reader.next('snapshot'), { seq: 2, state: { n: 2 } }, 'the reducer folded the first two ops')
  await until(reader, () => seqsOf(reader, 'doc').length === 1, 'the op after the snapshot')
  t.same(seqsOf(reader, 'doc'), [3])
})
