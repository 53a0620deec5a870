import t from 'tap'
import { startServer } from '../helpers/server.js'
import { connect } from '../helpers/client.js'
import { MemoryOperationLog } from '../../adapters/memory/operation-log.js'
import { MemorySessionStore } from '../../adapters/memory/session-store.js'
import type { NewOp, AppendResult } from '../../ports/operation-log.js'
import type { Member } from '../../lib/types.js'

/** A log whose appends fail while `down` is set, like a store that went away. */
class FlakyLog extends MemoryOperationLog {
  down = false
  override async append (op: NewOp): Promise<AppendResult> {
    if (this.down) throw new Error('connection refused')
    return await super.append(op)
  }
}

class FlakySessions extends MemorySessionStore {
  down = false
  override async add (project: string, member: Member): Promise<void> {
    if (this.down) throw new Error('connection refused')
    await super.add(project, member)
  }
}

t.test('an op the log cannot take is answered with unavailable, and the connection goes on', async (t) => {
  const log = new FlakyLog()
  const server = await startServer(t, { ports: { log } })
  const client = await connect(t, server.ws)
  await client.join('p')
  log.down = true
  const error = await client.request({ type: 'op', project: 'p', id: 'a1', data: 1 })
  t.match(error, { type: 'error', code: 'unavailable', project: 'p' })
  log.down = false
  const ack = await client.request({ type: 'op', project: 'p', id: 'a1', data: 1 })
  t.match(ack, { type: 'ack', id: 'a1', seq: 1 }, 'a retry with the same id is accepted once the log is back')
})

t.test('a join the session store cannot take is answered with unavailable and leaves no member behind', async (t) => {
  const sessions = new FlakySessions()
  const server = await startServer(t, { ports: { sessions } })
  const client = await connect(t, server.ws)
  sessions.down = true
  const error = await client.request({ type: 'join', project: 'p' })
  t.match(error, { type: 'error', code: 'unavailable', project: 'p' })
  const notJoined = await client.request({ type: 'op', project: 'p', data: 1 })
  t.match(notJoined, { type: 'error', code: 'not_joined' })
  sessions.down = false
  const joined = await client.join('p')
  t.equal((joined.members as unknown[]).length, 1)
})

t.test('an HTTP op the log cannot take is answered 503 unavailable', async (t) => {
  const log = new FlakyLog()
  const server = await startServer(t, { ports: { log } })
  log.down = true
  const res = await server.app.inject({ method: 'POST', url: '/projects/p/ops', payload: { data: 1 } })
  t.equal(res.statusCode, 503)
  t.match(res.json(), { statusCode: 503, code: 'unavailable' })
})
