/**
 * The client on protocol 1.3's joins (docs/protocol.md, Joins at scale),
 * against a real server: it asks for batched events and pages and ends with
 * the whole members list, and a connection cut under it resumes its session
 * silently.
 */
import t from 'tap'
import { startServer } from '../helpers/server.js'
import { startProxy } from '../helpers/proxy.js'
import { connect } from '../helpers/client.js'
import { flow, until } from '../helpers/flow-client.js'

t.test('the client pages the members list and applies batched events', async (t) => {
  const server = await startServer(t, { joinedMembersMax: 2 })
  const raws = await Promise.all(Array.from({ length: 5 }, async (_, i) => await connect(t, `${server.ws}?userId=r${i}`)))
  for (const raw of raws) await raw.join('doc')
  const ann = flow(t, `${server.ws}?userId=ann`)
  const handle = ann.join('doc')
  await handle.ready
  await until('the whole list', () => handle.members.length === 6)
  t.same(handle.members.map((m) => m.userId).sort(), ['ann', 'r0', 'r1', 'r2', 'r3', 'r4'])
  const more = await Promise.all(Array.from({ length: 3 }, async (_, i) => await connect(t, `${server.ws}?userId=n${i}`)))
  await Promise.all(more.map(async (c) => await c.join('doc')))
  await until('the joins', () => handle.members.length === 9)
  for (const raw of raws) raw.close()
  await until('the leaves', () => handle.members.length === 4)
  t.same(handle.members.map((m) => m.userId).sort(), ['ann', 'n0', 'n1', 'n2'])
})

t.test('a cut connection resumes its session: the others see no leave and no join', async (t) => {
  const server = await startServer(t, { resumeGraceMs: 5000 })
  const proxy = await startProxy(t, Number(new URL(server.http).port))
  const watcher = await connect(t, `${server.ws}?userId=watcher`)
  await watcher.join('doc')
  const ann = flow(t, `${proxy.ws()}?userId=ann`)
  const handle = ann.join('doc', { presence: { color: 'red' } })
  await handle.ready
  const first = handle.sessionId
  await until('the watcher hears ann', () => watcher.all('member').length === 1)
  proxy.cut()
  await until('ann reconnected', () => proxy.accepted === 2 && handle.sessionId !== undefined)
  await handle.send({ after: true }, { id: 'after-cut' })
  t.equal(handle.sessionId, first, 'the same session')
  await until('the watcher gets the op', () => watcher.all('op').length === 1)
  t.same(watcher.all('member').map((f) => f.event), ['join'], 'no leave, no second join')
  t.equal(watcher.all('presence').length, 0, 'the same presence: not sent again')
  ann.close()
  await until('a clean close leaves', () => watcher.all('member').some((f) => f.event === 'leave'), 2000)
})
