/**
 * The demo board on the reducer path (protocol 1.2, Snapshots) in a real
 * browser: `npm start`'s entry (dist/server.js) on a real redis-server with
 * AOF, 25,000 ops posted to one board, then a new tab shows exactly the
 * board a reference fold gives (from the server's snapshot and the ops after
 * it: far more ops than the history keeps); Redis is restarted (SIGTERM, its
 * AOF keeps the data), and after a reload two tabs show the same board.
 */
import t from 'tap'
import WebSocket from 'ws'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { FlowClient } from '../../client/index.js'
import { startRedis, uniquePrefix } from '../helpers/redis.js'
import { ensureBuilt, startEntry } from '../helpers/process.js'
import { waitFor, withDeadline } from '../helpers/wait.js'
import { launchChromium, shot, WAIT_MS } from './chromium.js'

const OPS = 25_000
const NOTES = 300
/** Ops sent before waiting for their acks. */
const WINDOW = 2500
/** How long a tab may take to show the whole board. */
const BOARD_MS = 30_000

interface Note { readonly text: string, readonly userId: string }
type Change = { add: { id: string, text: string } } | { remove: string }

/**
 * OPS adds and removes (a fixed pseudo-random sequence over 700 ids), the
 * last ones chosen so that the board ends with exactly NOTES notes; and the
 * board they fold into, as demo/app.js folds it.
 */
function plan (userId: string): { changes: Change[], board: Map<string, Note> } {
  const board = new Map<string, Note>()
  const changes: Change[] = []
  const apply = (change: Change): void => {
    changes.push(change)
    if ('add' in change) board.set(change.add.id, { text: change.add.text, userId })
    else board.delete(change.remove)
  }
  let seed = 42
  const random = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return Math.floor(seed / 65536) % n }
  const free = 2 * 700
  while (changes.length < OPS - free) {
    const id = `n-${random(700)}`
    apply(random(3) === 0 ? { remove: id } : { add: { id, text: `note ${changes.length + 1}` } })
  }
  for (const id of [...board.keys()].slice(NOTES)) apply({ remove: id })
  for (let i = 0; board.size < NOTES; i++) {
    if (!board.has(`n-${i}`)) apply({ add: { id: `n-${i}`, text: `note ${changes.length + 1}` } })
  }
  // Whatever is left: removes of notes long gone (they change nothing).
  for (let i = 0; changes.length < OPS; i++) apply({ remove: `gone-${i}` })
  return { changes, board }
}

await ensureBuilt()
const redis = await startRedis(t, { appendOnly: true })
const entry = await startEntry(t, {
  REDIS_URL: redis.url,
  FLOW_KEY_PREFIX: uniquePrefix(),
  USE_REDIS_COLLABORATION: 'true',
  USE_REDIS_WEBSOCKETS: 'true',
  USE_REDIS_EVENT_ORDERING: 'true',
  // One writer sends the whole log as fast as it can; a stall of the loaded machine must not shed the page.
  FLOW_RATE_LIMIT: '1000000',
  FLOW_RATE_BURST: '1000000',
  FLOW_MAX_EVENT_LOOP_DELAY_MS: '0'
})
const browser: Browser = await launchChromium(t)

/** A tab of its own context on the board, failing the test on page errors. */
async function open (project: string, userId: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } })
  t.teardown(async () => { await context.close() })
  // Every status the page shows from its load on, for the log.
  await context.addInitScript(() => {
    const seen: string[] = []
    Object.assign(window, { __statuses: seen })
    document.addEventListener('DOMContentLoaded', () => {
      const el = document.getElementById('status')
      if (el === null) return
      new MutationObserver(() => { seen.push(el.dataset.status ?? '') }).observe(el, { attributes: true, attributeFilter: ['data-status'] })
    })
  })
  const page = await context.newPage()
  page.setDefaultTimeout(WAIT_MS)
  page.on('pageerror', (err) => { t.fail(`page error (${userId}): ${err.message}`) })
  await page.goto(`${entry.http}/?project=${project}&userId=${userId}`)
  return page
}

/** The board a tab shows, confirmed notes only: [id, text, author], in order. */
async function shown (page: Page): Promise<string[][]> {
  return await page.locator('#notes .note:not(.pending)').evaluateAll((els) => els.map((el) => [
    (el as HTMLElement).dataset.id ?? '', el.firstChild?.textContent ?? '', el.querySelector('.by')?.textContent ?? ''
  ]))
}

/** Waits until the tab shows `expected` exactly; when it does not, says what it shows and what the server has. */
async function boardIs (page: Page, expected: string[][], what: string, project: string): Promise<void> {
  const want = JSON.stringify(expected)
  try {
    await waitFor(async () => JSON.stringify(await shown(page)) === want, { what, timeoutMs: BOARD_MS, intervalMs: 100 })
  } catch (err) {
    const tab = await page.evaluate(() => {
      const flow = (window as unknown as { __flow: { board: { epoch: string, seq: number }, loaded: { seq: number } | undefined } }).__flow
      return { epoch: flow.board.epoch, seq: flow.board.seq, snapshot: flow.loaded?.seq, notice: document.getElementById('notice')?.textContent }
    })
    // What a joiner that takes state gets now.
    const probe = new FlowClient({ url: `${entry.ws}?userId=probe`, WebSocket })
    const got: { snapshot?: number, reset?: number } = {}
    probe.join(project, { snapshot: true, onSnapshot: (_state, { seq }) => { got.snapshot = seq }, onReset: ({ seq }) => { got.reset = seq } })
    probe.connect()
    await waitFor(() => got.snapshot ?? got.reset, { what: 'the probe\'s snapshot or reset', timeoutMs: 10_000 }).catch(() => null)
    probe.close()
    const detail = { tab, notes: (await shown(page)).length, probe: got }
    throw new Error(`${(err as Error).message}: ${JSON.stringify(detail)}\n${entry.proc.stdout.slice(-3000)}`)
  }
}

t.test('25,000 ops, then a new tab shows the board; after a Redis restart and a reload, two tabs show the same board', async (t) => {
  const project = `demo-${Date.now().toString(36)}`
  const { changes, board } = plan('writer')
  const expected = [...board].map(([id, note]) => [id, note.text, note.userId])
  t.equal(changes.length, OPS)
  t.equal(expected.length, NOTES)

  const writer = new FlowClient({ url: `${entry.ws}?userId=writer`, WebSocket })
  t.teardown(() => { writer.close() })
  writer.connect()
  const handle = writer.join(project)
  await withDeadline(handle.ready, 'the writer joined', 10_000)
  const posting = Date.now()
  for (let from = 0; from < OPS; from += WINDOW) {
    await withDeadline(Promise.all(changes.slice(from, from + WINDOW).map((change) => handle.send(change))), `ops ${from + 1}..`, 30_000)
  }
  const postMs = Date.now() - posting
  t.equal(handle.seq, OPS, 'every op is in the log')
  t.comment(`posted ${OPS} ops in ${postMs} ms (${Math.round(OPS / (postMs / 1000))} ops/s)`)
  await handle.leave()

  const opening = Date.now()
  const first = await open(project, 'ann')
  await boardIs(first, expected, `the ${NOTES} notes in a new tab`, project)
  const boardMs = Date.now() - opening
  t.comment(`a new tab showed the full board ${boardMs} ms after it was opened`)
  t.same(await shown(first), expected, 'the new tab shows exactly the reference fold')
  t.equal(await first.locator('#notice').isHidden(), true, 'no reset')
  const position = await first.evaluate(() => {
    const flow = (window as unknown as { __flow: { board: { seq: number }, loaded: { seq: number } | undefined } }).__flow
    return { seq: flow.board.seq, snapshot: flow.loaded?.seq }
  })
  t.equal(position.seq, OPS, 'the tab is at the head')
  t.ok(position.snapshot !== undefined && position.snapshot > 10_000, `built from a snapshot beyond the history (at ${position.snapshot})`)

  const dir = t.testdir()
  const png = join(dir, 'demo-board-25000.png')
  await first.screenshot({ path: png })
  const bytes = await readFile(png)
  t.ok(bytes.length > 1000, `a screenshot of ${bytes.length} bytes`)
  t.same([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG')
  await shot(t, first, 'snapshot-board-25000')
  t.ok((await stat(png)).size > 0)

  // Redis goes away cleanly and comes back with its AOF.
  await redis.restart('SIGTERM')
  await waitFor(async () => {
    const health = await (await fetch(`${entry.http}/health`)).json() as { ports: Record<string, { serving: string }> }
    return Object.values(health.ports).every((p) => p.serving === 'redis')
  }, { what: 'every port served by Redis again', timeoutMs: 20_000, intervalMs: 100 })
  await first.locator('#status[data-status="open"]').waitFor()
  t.comment(`the tab's statuses through the restart: ${JSON.stringify(await first.evaluate(() => (window as unknown as { __statuses: string[] }).__statuses))}`)
  await first.reload()
  await first.locator('#status[data-status="open"]').waitFor()
  const second = await open(project, 'bob')
  await boardIs(first, expected, 'the board after the reload', project)
  await boardIs(second, expected, 'the board in a second tab', project)
  t.same(await shown(first), await shown(second), 'both tabs show the same board')
  t.same(await shown(second), expected, 'the reference fold')
  await shot(t, second, 'snapshot-board-after-redis-restart')
})
