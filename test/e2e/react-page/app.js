// The page of test/e2e/react.test.ts: a board of notes rendered by React
// through useFlowProject. The client and the hook come from the single-file
// builds a Flow instance serves ({flow}/client/flow-client.js and
// flow-react.js, another origin than this page's); React from the test's
// server. Query: ?flow=http://HOST:PORT&project=P&userId=U, and &since=N
// to start from a seq this page does not have (the server answers `reset`),
// or &snapshot=1 to take the board's state from the server (protocol 1.2).
// Plain JS, type-checked through JSDoc (tsconfig.json beside it).
import { createElement as h, Fragment, StrictMode, useState } from 'react'

/** @typedef {import('../../../client/react.js').FlowEntry} FlowEntry */
/** @typedef {{ id: string, text: string, userId: string }} Note */
/** @typedef {import('../../../client/index.js').FlowClient} FlowClient */

const params = new URLSearchParams(location.search)
const flow = params.get('flow') ?? ''
const userId = params.get('userId') ?? 'guest'
const first = params.get('project') ?? 'react'
const since = Number(params.get('since') ?? '0')
const takeState = params.get('snapshot') === '1'

/** @type {unknown} */
const clientModule = await import(`${flow}/client/flow-client.js`)
/** @type {unknown} */
const hookModule = await import(`${flow}/client/flow-react.js`)
const { FlowClient } = /** @type {typeof import('../../../client/index.js')} */ (clientModule)
const { useFlowProject } = /** @type {typeof import('../../../client/react.js')} */ (hookModule)

/**
 * The board's state, folded from the log: `{ add: Note }` and `{ remove: id }`.
 * @param {readonly Note[]} notes @param {FlowEntry} entry @returns {readonly Note[]}
 */
function notesReducer (notes, entry) {
  const change = /** @type {{ add?: { id: string, text: string }, remove?: string }} */ (entry.data)
  if (change.add !== undefined) return [...notes, { id: change.add.id, text: change.add.text, userId: entry.userId }]
  if (change.remove !== undefined) return notes.filter((n) => n.id !== change.remove)
  return notes
}

/** @type {readonly Note[]} */
const NO_NOTES = []

/**
 * What a real app would load from its own store or the HTTP API: here, a
 * marker of the reset, that the test can see.
 * @param {{ seq: number }} reset @returns {readonly Note[]}
 */
function reload ({ seq }) {
  return [{ id: 'reset', text: `Reloaded up to seq ${seq}`, userId: 'onReset' }]
}

/** The seq of the last snapshot the board started from, shown for the test. @type {number | undefined} */
let snapshotSeq

/**
 * The demo server's board state (its reducer, plugins/demo.ts:
 * `{ notes: { [id]: { text, userId } } }`) as this page's list.
 * @param {unknown} state @param {{ seq: number }} info @returns {readonly Note[]}
 */
function fromSnapshot (state, { seq }) {
  snapshotSeq = seq
  const notes = /** @type {{ notes?: Record<string, { text: string, userId: string }> } | null} */ (state)?.notes ?? {}
  return Object.entries(notes).map(([id, n]) => ({ id, text: n.text, userId: n.userId }))
}

/** @param {{ client: FlowClient, project: string }} props */
function Board ({ client, project }) {
  const board = useFlowProject(client, project, {
    reducer: notesReducer,
    initialState: NO_NOTES,
    presence: { name: userId },
    since: takeState ? undefined : since,
    onReset: reload,
    snapshot: takeState,
    onSnapshot: fromSnapshot
  })
  const [text, setText] = useState('')
  const pending = board.pending.flatMap(({ data }) => {
    const add = /** @type {{ add?: { id: string, text: string } }} */ (data).add
    return add === undefined ? [] : [h('li', { key: add.id, className: 'note pending' }, add.text, h('small', null, 'sending…'))]
  })
  return h('section', { id: 'board', 'data-project': project, 'data-status': board.status, 'data-ready': String(board.ready), 'data-seq': board.seq, 'data-snapshot': snapshotSeq ?? '' },
    h('header', null,
      h('h2', null, project),
      h('span', { className: 'status', 'data-status': board.status }, board.status),
      h('span', null, `you are ${userId}, seq ${board.seq}`)),
    h('div', null,
      h('form', {
        onSubmit: (/** @type {{ preventDefault (): void }} */ event) => {
          event.preventDefault()
          if (text.trim() === '') return
          void board.send({ add: { id: `n-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`, text: text.trim() } })
          setText('')
        }
      },
      h('input', { id: 'text', value: text, placeholder: 'Write a note', onChange: (/** @type {{ target: HTMLInputElement }} */ e) => { setText(e.target.value) } }),
      h('button', { type: 'submit' }, 'Add note')),
      h('ul', { id: 'notes' },
        ...board.state.map((n) => h('li', { key: n.id, className: 'note' }, n.text, h('small', null, n.userId))),
        ...pending),
      board.error === undefined ? null : h('p', { id: 'error' }, board.error.message)),
    h('aside', null,
      h('h3', null, 'Members'),
      h('ul', { id: 'members' }, board.members.map((m) =>
        h('li', { key: m.sessionId, 'data-user-id': m.userId }, m.sessionId === board.sessionId ? `${m.userId} (you)` : m.userId)))))
}

/** @param {{ client: FlowClient }} props */
function App ({ client }) {
  const [mounted, setMounted] = useState(true)
  const [project, setProject] = useState(first)
  return h(Fragment, null,
    h('nav', null,
      h('button', { id: 'toggle', onClick: () => { setMounted((m) => !m) } }, mounted ? 'Unmount the board' : 'Mount the board'),
      h('button', { id: 'switch', onClick: () => { setProject((p) => p === first ? `${first}-other` : first) } }, 'Switch project')),
    mounted ? h(Board, { client, project }) : h('p', { id: 'unmounted' }, 'The board is unmounted.'))
}

const ws = new URL('/ws', flow)
ws.protocol = ws.protocol === 'https:' ? 'wss:' : 'ws:'
ws.searchParams.set('userId', userId)
const client = new FlowClient({ url: ws.toString() })
client.connect()

/** window.ReactDOM: the UMD build's global (this page loads no react-dom module). */
/** @type {unknown} */
const umd = Reflect.get(window, 'ReactDOM')
const ReactDOM = /** @type {{ createRoot (el: Element): { render (node: import('react').ReactNode): void } }} */ (umd)
const root = document.getElementById('root')
if (root === null) throw new Error('#root missing')
// StrictMode mounts, unmounts and mounts every effect again in development: the join survives it.
ReactDOM.createRoot(root).render(h(StrictMode, null, h(App, { client })))
