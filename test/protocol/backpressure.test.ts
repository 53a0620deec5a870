import t from 'tap'
import type { AppendResult, NewOp } from '../../ports/operation-log.js'
import { TestLog } from '../helpers/logs.js'
import { startServer } from '../helpers/server.js'
import { connect, type Frame } from '../helpers/client.js'
import { assertAlive, until } from '../helpers/protocol.js'

/** A log whose appends wait until released: a slow or overloaded op log. */
class GatedLog extends TestLog {
  #open = false
  readonly #waiting: Array<() => void> = []

  constructor () { super({ scope: 'instance' }) }
  release (): void {
    this.#open = true
    for (const go of this.#waiting.splice(0)) go()
  }

  override async append (op: NewOp): Promise<AppendResult> {
    if (!this.#open) await new Promise<void>((resolve) => { this.#waiting.push(resolve) })
    return await super.append(op)
  }
}

t.test('ops beyond FLOW_MAX_OPS_IN_FLIGHT are refused with rate_limited, not queued; the accepted ones all land', async (t) => {
  const log = new GatedLog()
  const server = await startServer(t, { maxOpsInFlight: 5, ports: { log } })
  const alice = await connect(t, `${server.ws}?userId=alice`)
  const bob = await connect(t, `${server.ws}?userId=bob`)
  await alice.join('busy')
  await bob.join('busy')

  for (let i = 1; i <= 8; i++) alice.send({ type: 'op', project: 'busy', id: `op-${i}`, data: i, ref: `bp${i}` })
  const refused = await until(alice, () => {
    const errors = alice.all('error')
    return errors.length >= 3 ? errors : undefined
  }, 'three refusals')
  t.strictSame(refused.map((e) => [e.code, e.ref, e.project]), [['rate_limited', 'bp6', 'busy'], ['rate_limited', 'bp7', 'busy'], ['rate_limited', 'bp8', 'busy']],
    'the 6th to 8th op are refused at once, each named by its ref, while 5 wait for the log')

  const post = await fetch(`${server.http}/projects/busy/ops`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ data: 'http' }) })
  t.equal(post.status, 429, 'an HTTP op is refused too')

  const stats = await (await fetch(`${server.http}/ws/stats`)).json() as { ops: { shed: number, inFlight: number } }
  t.match(stats.ops, { shed: 4, inFlight: 5 }, '/ws/stats shows the shed ops and the ones waiting')

  log.release()
  const acks = await until(alice, () => {
    const got = alice.all('ack')
    return got.length >= 5 ? got : undefined
  }, 'five acks')
  t.strictSame(acks.map((a) => [a.id, a.seq]), [1, 2, 3, 4, 5].map((i) => [`op-${i}`, i]), 'the five accepted ops are acked in order')
  await until(bob, () => bob.all('op').length >= 5 ? true : undefined, 'five ops at bob')
  t.strictSame(bob.all('op').map((o: Frame) => o.data), [1, 2, 3, 4, 5], 'and delivered')

  // The refused op is retried, with its id: accepted now that the log keeps up.
  const retry = await alice.request({ type: 'op', project: 'busy', id: 'op-6', data: 6 })
  t.match(retry, { type: 'ack', id: 'op-6', seq: 6 }, 'a retry of a refused op is accepted')
  await assertAlive(t, alice, 'refusals are not held against the client: its connection is open')
})
