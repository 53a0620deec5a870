// The demo board: a shared list of sticky notes over the Flow client.
// Served at {prefix}/app.js, the client at {prefix}/client/flow-client.js
// (the single-file browser build, dist/browser/).
// Plain JS, type-checked through JSDoc (demo/tsconfig.json).
import { FlowClient } from './client/flow-client.js'

/** @typedef {import('./client/flow-client.js').Member} Member */
/** @typedef {import('./client/flow-client.js').Op} Op */
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
const input = $('text', HTMLInputElement)
$('project', HTMLElement).textContent = `· ${project}`
$('me', HTMLElement).textContent = `you are ${userId}`

/** The board, built from the project's ops in seq order. @type {Map<string, Note>} */
const notes = new Map()

/** @param {unknown} data @param {string} by */
function apply (data, by) {
  const change = /** @type {Change | null} */ (data)
  if (change === null || typeof change !== 'object') return
  if (change.add !== undefined) notes.set(change.add.id, { text: String(change.add.text), userId: by })
  if (change.remove !== undefined) notes.delete(change.remove)
}

/**
 * The ops up to `upTo` of `epoch` over HTTP, or null when the epoch moved on
 * (another reset follows).
 * @param {string} epoch @param {number} upTo @returns {Promise<Op[] | null>}
 */
async function history (epoch, upTo) {
  /** @type {Op[]} */
  const ops = []
  for (let since = 0; since < upTo;) {
    const res = await fetch(new URL(`projects/${encodeURIComponent(project)}/ops?since=${since}&limit=500`, base))
    if (!res.ok) throw new Error(`history: HTTP ${res.status}`)
    /** @type {unknown} */
    const body = await res.json()
    const page = /** @type {{ epoch: string, ops: Op[], reset: boolean }} */ (body)
    if (page.epoch !== epoch) return null
    if (page.reset) throw new Error('history no longer reaches back to the start')
    ops.push(...page.ops.filter((op) => op.seq <= upTo))
    const last = page.ops.at(-1)
    if (last === undefined) break
    since = last.seq
  }
  return ops
}

const client = new FlowClient({ url: wsUrl.toString() })
const board = client.join(project, {
  presence: { name: userId },
  // Live ops wait while this runs, then continue from seq + 1.
  onReset: async ({ epoch, seq }) => {
    const ops = await history(epoch, seq)
    if (ops === null) return
    notes.clear()
    for (const op of ops) apply(op.data, op.userId)
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

function render () {
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
Object.assign(window, { __flow: { client, board, notes } })
client.connect()
