import t from 'tap'
import type { Member } from '../../lib/types.js'
import { MemorySessionStore, createMemorySessionStore } from '../../adapters/memory/session-store.js'
import { sessionStoreContract } from '../contracts/session-store.js'

// One MemorySessionStore stands for both instances: memory sessions are per
// process, so "two instances sharing the store" is the same object here.
// The contract still holds; only the cross-instance races become trivial.
sessionStoreContract(t, 'MemorySessionStore', async ({ ttlMs }) => {
  const store = createMemorySessionStore({ ttlMs })
  return { a: store, b: store, close: async () => { await store.close() } }
})

function member (sessionId: string, joinedAt = 1): Member {
  return { sessionId, userId: `user-of-${sessionId}`, presence: { n: 1 }, joinedAt }
}

/** A store whose clock the test moves by hand. */
function storeWithClock (ttlMs?: number): { store: MemorySessionStore, clock: { now: number } } {
  const clock = { now: 1_000_000 }
  const store = new MemorySessionStore({ ...(ttlMs === undefined ? {} : { ttlMs }), now: () => clock.now })
  return { store, clock }
}

t.test('MemorySessionStore expires a session ttlMs after it was added or last refreshed', async t => {
  const { store, clock } = storeWithClock(100)
  const start = clock.now
  await store.add('p', member('s1'))
  clock.now = start + 99
  t.strictSame(await store.list('p'), [member('s1')], 'listed just before the TTL')
  clock.now = start + 100
  t.strictSame(await store.list('p'), [], 'gone at the TTL')

  await store.add('p', member('s2'))
  clock.now = start + 150
  await store.refresh([{ project: 'p', sessionId: 's2' }])
  clock.now = start + 249
  t.strictSame(await store.list('p'), [member('s2')], 'a refresh restarts the TTL')
  t.equal(await store.setPresence('p', 's2', { n: 2 }), true)
  clock.now = start + 250
  t.equal(await store.setPresence('p', 's2', { n: 3 }), false, 'no presence for an expired session')
  await store.refresh([{ project: 'p', sessionId: 's2' }])
  t.strictSame(await store.list('p'), [], 'a refresh does not revive an expired session')

  t.strictSame(await store.reap(), [
    { project: 'p', member: member('s1') },
    { project: 'p', member: { ...member('s2'), presence: { n: 2 } } }
  ], 'reap resolves both expired sessions')
  t.strictSame(await store.reap(), [], 'once')
})

t.test('MemorySessionStore hands an expired session to remove or reap, once', async t => {
  const { store, clock } = storeWithClock(100)
  await store.add('p', member('s1'))
  await store.add('p', member('s2'))
  clock.now += 100
  t.strictSame(await store.remove('p', 's1'), member('s1'), 'remove resolves an expired session not yet reaped')
  t.strictSame(await store.reap(), [{ project: 'p', member: member('s2') }], 'reap resolves only the other one')
  t.equal(await store.remove('p', 's2'), null, 'after reap it is gone')
})

t.test('MemorySessionStore reaps only expired sessions', async t => {
  const { store, clock } = storeWithClock(100)
  await store.add('p', member('old'))
  clock.now += 50
  await store.add('p', member('new', 2))
  await store.add('q', member('other'))
  clock.now += 50
  t.strictSame(await store.reap(), [{ project: 'p', member: member('old') }])
  t.strictSame(await store.list('p'), [member('new', 2)])
  t.strictSame(await store.list('q'), [member('other')])
})

t.test('MemorySessionStore keeps sessions 30 s by default', async t => {
  const { store, clock } = storeWithClock()
  await store.add('p', member('s1'))
  clock.now += 29_999
  t.equal((await store.list('p')).length, 1, 'listed before 30 s')
  clock.now += 1
  t.equal((await store.list('p')).length, 0, 'gone at 30 s')
})

t.test('MemorySessionStore rejects calls after close', async t => {
  const store = new MemorySessionStore()
  await store.close()
  await t.rejects(store.add('p', member('s1')), /closed/)
  await t.rejects(store.remove('p', 's1'), /closed/)
  await t.rejects(store.setPresence('p', 's1', {}), /closed/)
  await t.rejects(store.list('p'), /closed/)
  await t.rejects(store.refresh([]), /closed/)
  await t.rejects(store.reap(), /closed/)
})
