/**
 * A store that lost the newest ops of a log and cannot tell (its epoch kept,
 * its head lower: a host's own log, or a Redis log whose instance forgot its
 * watermark) must not leave members waiting for seqs they think they have:
 * at the next re-sync the members get `reset` to the log's head, so the ops
 * the log gives those seqs next reach them.
 */
import t from 'tap'
import { startServer } from '../helpers/server.js'
import { connect } from '../helpers/client.js'
import { MemoryOperationLog } from '../../adapters/memory/operation-log.js'
import type { OpenedLog } from '../../ports/operation-log.js'

/** A memory log whose open() answers, once `lostAbove` is set, a head no higher than it in the same epoch. */
class ForgetfulLog extends MemoryOperationLog {
  lostAbove: number | null = null
  override async open (project: string): Promise<OpenedLog> {
    const position = await super.open(project)
    return this.lostAbove === null ? position : { ...position, seq: Math.min(position.seq, this.lostAbove) }
  }
}

t.test('a log below what the members have in the same epoch resets them to its head at the next re-sync', async (t) => {
  const log = new ForgetfulLog()
  const server = await startServer(t, { ports: { log } })
  const writer = await connect(t, `${server.ws}?userId=w`)
  const reader = await connect(t, `${server.ws}?userId=r`)
  const { epoch } = await writer.join('doc')
  await reader.join('doc')
  for (let i = 0; i < 5; i++) await writer.request({ type: 'op', project: 'doc', data: i })
  await reader.next((f) => f.type === 'op' && f.seq === 5)

  log.lostAbove = 3
  await server.app.flowHub.resyncAll()
  const reset = await reader.next('reset')
  t.same([reset.epoch, reset.seq], [epoch, 3], 'the reader is reset to the log\'s head, in its epoch')
  t.equal((await writer.next('reset')).seq, 3, 'so is the writer')
})
