/**
 * The demo board's server-side reducer (plugins/demo.ts): the same fold as
 * the page's `apply`, pure, never throwing, holding only what the board
 * holds; and `demo: true` serving boards on the reducer path.
 */
import t from 'tap'
import { demoBoard, foldDemoBoard, type DemoBoardState } from '../../plugins/demo.js'
import type { Op } from '../../lib/types.js'
import { startServer } from '../helpers/server.js'
import { connect } from '../helpers/client.js'
import { waitFor } from '../helpers/wait.js'

const op = (data: unknown, userId = 'ann', seq = 1): Op => ({ project: 'p', seq, id: `o${seq}`, userId, sessionId: null, data, ts: 0 })

/** demo/app.js's fold, on a Map. */
function apply (notes: Map<string, { text: string, userId: string }>, data: unknown, by: string): void {
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null
  if (!isObject(data)) return
  const { add, remove } = data
  if (isObject(add) && typeof add.id === 'string') notes.set(add.id, { text: String(add.text), userId: by })
  if (typeof remove === 'string') notes.delete(remove)
}

t.test('folds adds and removes as the page does, in the same order, and keeps only the notes on the board', async (t) => {
  let state: unknown = structuredClone(demoBoard.initial)
  const reference = new Map<string, { text: string, userId: string }>()
  let changed = 0
  let seed = 7
  const random = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n }
  for (let seq = 1; seq <= 5000; seq++) {
    const id = `n-${random(400)}`
    const data = random(3) === 0 ? { remove: id } : { add: { id, text: `note ${seq}` } }
    const by = random(2) === 0 ? 'ann' : 'bob'
    const previous = state
    const before = JSON.stringify(previous)
    state = foldDemoBoard(previous, op(data, by, seq))
    if (JSON.stringify(previous) !== before) changed++
    apply(reference, data, by)
  }
  const notes = (state as DemoBoardState).notes
  t.same(Object.entries(notes), [...reference.entries()], 'the same notes, in the same order')
  t.equal(changed, 0, 'no fold changed the state it was given')
  t.ok(Object.keys(notes).length <= 400, 'no more than the board holds')
  t.same(JSON.parse(JSON.stringify(state)), { notes: Object.fromEntries(reference) }, 'a JSON value')
})

t.test('is pure and never throws: malformed ops and states count as nothing', async (t) => {
  const state = { notes: { a: { text: 'A', userId: 'ann' } } }
  const frozen = JSON.stringify(state)
  const next = foldDemoBoard(state, op({ add: { id: 'b', text: 'B' } }, 'bob'))
  t.equal(JSON.stringify(state), frozen, 'the state given is not changed')
  t.same(next, { notes: { a: { text: 'A', userId: 'ann' }, b: { text: 'B', userId: 'bob' } } })
  for (const data of [null, 1, 'x', [], { add: null }, { add: 'x' }, { add: { id: 5 } }, { remove: 5 }, { remove: 'missing' }]) {
    t.equal(foldDemoBoard(state, op(data)), state, `${JSON.stringify(data)} changes nothing`)
  }
  t.same(foldDemoBoard(null, op({ add: { id: 'a', text: 1 } })), { notes: { a: { text: '1', userId: 'ann' } } }, 'a state that is not a board starts empty')
  const proto = foldDemoBoard(state, op({ add: { id: '__proto__', text: 'P' } }))
  t.same(Object.keys(proto.notes), ['a', '__proto__'], 'an id __proto__ is a note like any other')
  t.equal(JSON.stringify(proto), '{"notes":{"a":{"text":"A","userId":"ann"},"__proto__":{"text":"P","userId":"ann"}}}')
  t.same(foldDemoBoard(state, op({ remove: 'a' })), { notes: {} }, 'a remove')
})

t.test('demo: true folds the demo\'s boards on the server: a joiner that takes state gets the board; other projects are left alone', async (t) => {
  const server = await startServer(t, { demo: true, snapshotEvery: 5 })
  const writer = await connect(t, `${server.ws}?userId=ann`)
  for (const project of ['demo-board', 'app-doc']) {
    await writer.join(project)
    for (let i = 0; i < 20; i++) writer.send({ type: 'op', project, data: i % 4 === 3 ? { remove: `n${i - 1}` } : { add: { id: `n${i}`, text: `t${i}` } } })
    await writer.next((f) => f.type === 'ack' && f.project === project && f.seq === 20)
  }
  await waitFor(async () => (await server.app.flow.ports.snapshots.get('demo-board'))?.seq === 20, { what: 'the board folded up to 20', timeoutMs: 15_000 })
  const reader = await connect(t, `${server.ws}?userId=bob`)
  await reader.join('demo-board', { snapshot: true })
  const snapshot = await reader.next('snapshot') as unknown as { seq: number, state: DemoBoardState }
  t.equal(snapshot.seq, 20, 'the board the server folded')
  const expected = Array.from({ length: 20 }, (_, i) => i).filter((i) => i % 4 === 0 || i % 4 === 1).map((i) => `n${i}`)
  t.same(Object.keys(snapshot.state.notes), expected, 'its notes')
  t.equal(await server.app.flow.ports.snapshots.get('app-doc'), null, 'a project that is not the demo\'s gets no board snapshot')
})
