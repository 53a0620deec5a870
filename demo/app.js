// The demo board: a shared list of sticky notes over the Flow client.
// Served at {prefix}/app.js, the client at {prefix}/client/flow-client.js
// (the single-file browser build, dist/browser/).
// Plain JS, type-checked through JSDoc (demo/tsconfig.json).
import { FlowClient } from './client/flow-client.js'

/** @typedef {import('./client/flow-client.js').Member} Member */
/** @typedef {{ add?: { id: string, text: string }, remove?: string }} Change */
/** @typedef {{ text: string, userId: string }} Note */

const params = new URLSearchParams(location.search)
const project = params.get('project') || 'demo'
const userId = params.get('userId') || `guest-${Math.random().toString(36).slice(2, 6)}`
const base = new URL('.', import.meta.url)
const wsUrl = new URL('ws', base)
wsUrl.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:'
wsUrl.searchParams.set('userId', userId)

/**
 * @template {HTMLElement} T
 * @param {string} id
 * @param {new () => T} type
 * @returns {T}
 */
function $ (id, type) {
  const el = document.getElementById(id)
  if (!(el instanceof type)) throw new Error(`#${id} missing`)
  return el
}
const statusEl = $('status', HTMLElement)
const notesEl = $('notes', HTMLUListElement)
const membersEl = $('members', HTMLUListElement)
const noticeEl = $('notice', HTMLElement)
const input = $('text', HTMLInputElement)
$('project', HTMLElement).textContent = `· ${project}`
$('me', HTMLElement).textContent = `you are ${userId}`

/** The board: the server's snapshot of it, then the project's ops after it in seq order. @type {Map<string, Note>} */
const notes = new Map()

/** @param {unknown} v @returns {v is Record<string, unknown>} */
const isObject = (v) => typeof v === 'object' && v !== null

/**
 * Folds one op into the board, exactly as the server's reducer does
 * (plugins/demo.ts, foldDemoBoard): anything but an add with a string id or
 * a remove of a string id changes nothing.
 * @param {unknown} data @param {string} by
 */
function apply (data, by) {
  if (!isObject(data)) return
  const { add, remove } = data
  if (isObject(add) && typeof add.id === 'string') notes.set(add.id, { text: String(add.text), userId: by })
  if (typeof remove === 'string') notes.delete(remove)
}

/** @param {string} text */
function notice (text) {
  noticeEl.textContent = text
  noticeEl.hidden = text === ''
}

/** Where the last snapshot the board was built from is (for tests and the console). @type {{ seq: number } | undefined} */
let loaded

const client = new FlowClient({ url: wsUrl.toString() })
const board = client.join(project, {
  presence: { name: userId },
  // The server folds the board (its reducer, plugins/demo.ts): every join and
  // reconnect the history cannot serve gets the board as a snapshot, then the ops after it.
  snapshot: true,
  onSnapshot: (state, { seq }) => {
    loaded = { seq }
    const held = isObject(state) && isObject(state.notes) ? state.notes : {}
    notes.clear()
    for (const [id, note] of Object.entries(held)) {
      if (isObject(note)) notes.set(id, { text: String(note.text), userId: String(note.userId) })
    }
    notice('')
    render()
  },
  // The last resort: neither a snapshot nor the history reaches back (the server keeps no snapshots).
  onReset: () => {
    notes.clear()
    notice('The board was reset: notes added before now are not shown.')
    render()
  }
})

/** @param {string} id @param {Note} note @param {boolean} pending */
function noteItem (id, note, pending) {
  const li = document.createElement('li')
  li.className = pending ? 'note pending' : 'note'
  li.dataset.id = id
  li.append(note.text)
  const by = document.createElement('span')
  by.className = 'by'
  by.textContent = pending ? 'sending…' : note.userId
  const remove = document.createElement('button')
  remove.type = 'button'
  remove.title = 'Remove'
  remove.textContent = '×'
  remove.onclick = () => { send({ remove: id }) }
  li.append(by, remove)
  return li
}

/** A redraw is asked for the next frame already. */
let drawing = false

/** Redraws the board at the next frame: a replay of thousands of ops draws it once, not once per op. */
function render () {
  if (drawing) return
  drawing = true
  requestAnimationFrame(() => {
    drawing = false
    draw()
  })
}

function draw () {
  const items = [...notes].map(([id, note]) => noteItem(id, note, false))
  // Own notes not acknowledged yet, drawn after the confirmed ones.
  for (const { data } of board.pending) {
    const add = /** @type {Change} */ (data).add
    if (add !== undefined && !notes.has(add.id)) items.push(noteItem(add.id, { text: add.text, userId }, true))
  }
  notesEl.replaceChildren(...items)
}

/** @param {readonly Member[]} members */
function renderMembers (members) {
  membersEl.replaceChildren(...members.map((m) => {
    const li = document.createElement('li')
    li.textContent = m.sessionId === board.sessionId ? `${m.userId} (you)` : m.userId
    li.dataset.userId = m.userId
    return li
  }))
}

/** @param {Change} change */
function send (change) {
  board.send(change)
    .catch((/** @type {Error} */ err) => { console.warn(`flow: not sent: ${err.message}`) })
    .finally(render)
  render()
}

client.on('op', (p, op) => {
  if (p !== project) return
  apply(op.data, op.userId)
  render()
})
client.on('ack', (p, ack) => {
  if (p !== project) return
  if (!ack.stale) apply(ack.data, userId)
  render()
})
client.on('members', (p, members) => { if (p === project) renderMembers(members) })
client.on('status', (status, retry) => {
  statusEl.dataset.status = status
  statusEl.textContent = retry === undefined ? status : `${status} (retry in ${Math.round(retry.delayMs)} ms)`
})
client.on('error', (err) => { console.warn(`flow: ${err.code}: ${err.message}`) })

$('add', HTMLFormElement).addEventListener('submit', (event) => {
  event.preventDefault()
  const text = input.value.trim()
  if (text === '') return
  input.value = ''
  send({ add: { id: `n-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`, text } })
})

// A hook for tests and the console.
Object.assign(window, { __flow: { client, board, notes, get loaded () { return loaded } } })
client.connect()
