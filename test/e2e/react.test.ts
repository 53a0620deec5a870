/**
 * useFlowProject in a real browser (Debian's Chromium, driven by
 * playwright-core): two pages, each on its own Flow instance (one Redis),
 * render a board component through the hook, in React's StrictMode. React 18
 * comes from node_modules, served by this test's own server with the page
 * (test/e2e/react-page/); the client and the hook come from the single-file
 * builds the instances serve at {prefix}/client/ (another origin: CORS).
 * Members and ops flow both ways; unmounting the board leaves (the other
 * page sees it), mounting it again replays the board; a change of project
 * leaves the old one and joins the new one; a join from a position the
 * server cannot place gets `reset`, and the hook's state is what `onReset`
 * returned, with the live ops folded after it.
 * Screenshots go to .tap/e2e-screenshots/react-*.png (printed).
 */
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import type { BrowserContext, Page } from 'playwright-core'
import { startRedis } from '../helpers/redis.js'
import { startCluster } from '../helpers/cluster.js'
import { ensureBuilt, ROOT } from '../helpers/process.js'
import { launchChromium, shot, WAIT_MS } from './chromium.js'
import { waitFor } from '../helpers/wait.js'

// The instances serve dist/browser/: build it first.
await ensureBuilt()

const require = createRequire(import.meta.url)
const PAGE = join(ROOT, 'test', 'e2e', 'react-page')
const JS = 'text/javascript; charset=utf-8'
/** A file of an installed package, past its `exports` (the UMD builds are not exported). */
const packageFile = (name: string, file: string): string => join(dirname(require.resolve(`${name}/package.json`)), file)

/** `export const { a, b } = window.React`: the UMD global as the module a bare `react` import needs. */
function reactModule (): string {
  const names = Object.keys(require('react') as Record<string, unknown>).filter((n) => /^[A-Za-z_$][\w$]*$/.test(n))
  return `const React = globalThis.React\nexport default React\nexport const { ${names.join(', ')} } = React\n`
}

/** The files this test's server serves, by path: the page, and React from node_modules. */
const files = new Map<string, { type: string, body: string }>([
  ['/', { type: 'text/html; charset=utf-8', body: await readFile(join(PAGE, 'index.html'), 'utf8') }],
  ['/app.js', { type: JS, body: await readFile(join(PAGE, 'app.js'), 'utf8') }],
  ['/vendor/react.development.js', { type: JS, body: await readFile(packageFile('react', 'umd/react.development.js'), 'utf8') }],
  ['/vendor/react-dom.development.js', { type: JS, body: await readFile(packageFile('react-dom', 'umd/react-dom.development.js'), 'utf8') }],
  ['/vendor/react.js', { type: JS, body: reactModule() }]
])

const server: Server = createServer((req, res) => {
  const file = files.get(new URL(req.url ?? '/', 'http://x').pathname)
  if (file === undefined) {
    res.writeHead(404).end()
    return
  }
  res.writeHead(200, { 'content-type': file.type }).end(file.body)
})
await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
t.teardown(async () => { await new Promise<void>((resolve) => { server.close(() => { resolve() }) }) })
const address = server.address()
if (address === null || typeof address === 'string') throw new Error('no address')
const site = `http://127.0.0.1:${address.port}`

const redis = await startRedis(t)
// The demo board's reducer folds each board every 2 ops: a page that takes state starts from a snapshot.
const { instances } = await startCluster(t, redis.url, 2, { demo: true, snapshotEvery: 2 })
const [one, two] = instances
if (one === undefined || two === undefined) throw new Error('two instances expected')

const browser = await launchChromium(t)

/** A page of its own context, failing the test on page errors, console errors and failed responses. */
async function open (flow: string, project: string, userId: string, query: Record<string, string> = {}): Promise<{ context: BrowserContext, page: Page }> {
  const context = await browser.newContext({ viewport: { width: 900, height: 480 } })
  const page = await context.newPage()
  page.setDefaultTimeout(WAIT_MS)
  page.on('pageerror', (err) => { t.fail(`page error (${userId}): ${err.message}`) })
  page.on('console', (msg) => { if (msg.type() === 'error') t.fail(`console error (${userId}): ${msg.text()}`) })
  page.on('response', (res) => { if (res.status() >= 400) t.fail(`${res.url()}: HTTP ${res.status()} (${userId})`) })
  await page.goto(`${site}/?${new URLSearchParams({ flow, project, userId, ...query }).toString()}`)
  await board(page, project).waitFor()
  return { context, page }
}

/** The board of `project`, mounted, joined and on an open connection. */
const board = (page: Page, project: string) => page.locator(`#board[data-project="${project}"][data-ready="true"][data-status="open"]`)
const note = (page: Page, text: string) => page.locator('#notes .note:not(.pending)', { hasText: text })
const texts = async (page: Page): Promise<string[]> => await page.locator('#notes .note:not(.pending)').evaluateAll(
  (els) => els.map((el) => el.firstChild?.textContent ?? ''))

/** Waits until exactly `count` elements match `selector`. */
async function count (page: Page, selector: string, count: number): Promise<void> {
  await page.waitForFunction(([s, n]) => document.querySelectorAll(s).length === n, [selector, count] as const)
}

async function addNote (page: Page, text: string): Promise<void> {
  await page.fill('#text', text)
  await page.click('button[type="submit"]')
}

t.test('two React pages on two instances share members and ops; unmount and a project change leave', async (t) => {
  const project = `react-${Date.now().toString(36)}`
  const a = await open(one.http, project, 'ann')
  const b = await open(two.http, project, 'bob')

  // Members, across instances (StrictMode's mount, unmount, mount leaves one session each).
  await count(a.page, '#members li[data-user-id="bob"]', 1)
  await count(b.page, '#members li[data-user-id="ann"]', 1)
  await count(a.page, '#members li', 2)
  await count(b.page, '#members li', 2)

  // Ops, both ways, folded by the page's reducer.
  await addNote(a.page, 'Hello from Ann')
  await note(b.page, 'Hello from Ann').waitFor()
  await note(a.page, 'Hello from Ann').waitFor()
  await addNote(b.page, 'Hello from Bob')
  await note(a.page, 'Hello from Bob').waitFor()
  await note(b.page, 'Hello from Bob').waitFor()
  t.same(await texts(a.page), ['Hello from Ann', 'Hello from Bob'], 'A folded both notes, in seq order, once each')
  t.same(await texts(b.page), await texts(a.page), 'B shows the same board')
  t.equal(await note(b.page, 'Hello from Ann').locator('small').textContent(), 'ann', 'B credits the note to ann')
  t.equal(await note(a.page, 'Hello from Ann').locator('small').textContent(), 'ann', 'A credits its own acknowledged note to ann')
  t.equal(await b.page.locator('#board').getAttribute('data-seq'), '2', 'two ops in the log')
  await shot(t, a.page, 'react-1-a-board')
  await shot(t, b.page, 'react-1-b-board')

  // Unmount A's board: the hook leaves, and B sees ann go.
  await a.page.click('#toggle')
  await a.page.locator('#unmounted').waitFor()
  await count(b.page, '#members li[data-user-id="ann"]', 0)
  t.equal(await b.page.locator('#members li').count(), 1, 'B is alone')
  await shot(t, b.page, 'react-2-b-after-ann-unmounted')

  // Mount it again: a new join from seq 0 replays the board, and B sees ann back.
  await a.page.click('#toggle')
  await board(a.page, project).waitFor()
  await count(a.page, '#notes .note:not(.pending)', 2)
  t.same(await texts(a.page), ['Hello from Ann', 'Hello from Bob'], 'the remounted board replayed the log')
  await count(b.page, '#members li[data-user-id="ann"]', 1)

  // Switch A to another project: it leaves this one (B sees it), and joins the other, empty.
  const other = `${project}-other`
  await a.page.click('#switch')
  await board(a.page, other).waitFor()
  await count(b.page, '#members li[data-user-id="ann"]', 0)
  t.equal(await a.page.locator('#notes .note').count(), 0, 'the other project has no notes')
  t.same(await a.page.locator('#members li').evaluateAll((els) => els.map((el) => el.getAttribute('data-user-id'))), ['ann'], 'and only ann')
  await addNote(a.page, 'Only in the other project')
  await note(a.page, 'Only in the other project').waitFor()
  await addNote(b.page, 'Bob, still on the first')
  await note(b.page, 'Bob, still on the first').waitFor()
  t.equal(await note(a.page, 'Bob, still on the first').count(), 0, 'A no longer gets the first project\'s ops')
  await shot(t, a.page, 'react-3-a-other-project')

  // And back: the first project's board, with what was added meanwhile.
  await a.page.click('#switch')
  await board(a.page, project).waitFor()
  await count(a.page, '#notes .note:not(.pending)', 3)
  t.same(await texts(a.page), ['Hello from Ann', 'Hello from Bob', 'Bob, still on the first'])
  await count(b.page, '#members li[data-user-id="ann"]', 1)
  t.equal(await a.page.locator('#error').count(), 0, 'no error on the way')
  await shot(t, a.page, 'react-4-a-back')

  // Carol claims to be at seq 1 with no epoch: the server cannot place that and answers reset at the head.
  const c = await open(two.http, project, 'carol', { since: '1' })
  await note(c.page, 'Reloaded up to seq 3').waitFor()
  t.equal(await c.page.locator('#board').getAttribute('data-seq'), '3', 'the hook\'s seq is the reset\'s')
  await addNote(b.page, 'After Carol\'s reset')
  await note(c.page, 'After Carol\'s reset').waitFor()
  t.same(await texts(c.page), ['Reloaded up to seq 3', 'After Carol\'s reset'], 'onReset\'s state, then the live ops folded into it')
  t.equal(await c.page.locator('#board').getAttribute('data-seq'), '4')
  await shot(t, c.page, 'react-5-c-after-reset')

  await a.context.close()
  await b.context.close()
  await c.context.close()
})

t.test('a page that takes state starts from the server\'s snapshot and folds the ops after it', async (t) => {
  const project = `demo-snap-${Date.now().toString(36)}`
  const a = await open(one.http, project, 'ann')
  for (const text of ['One', 'Two', 'Three']) {
    await addNote(a.page, text)
    await note(a.page, text).waitFor()
  }
  await waitFor(async () => (await one.app.flow.ports.snapshots.get(project))?.seq === 2, { what: 'the board folded at 2' })
  const d = await open(two.http, project, 'dan', { snapshot: '1' })
  await count(d.page, '#notes .note:not(.pending)', 3)
  t.equal(await d.page.locator('#board').getAttribute('data-snapshot'), '2', 'the hook started from the snapshot at 2')
  t.same(await texts(d.page), ['One', 'Two', 'Three'], 'its notes, then op 3 folded into them')
  await addNote(d.page, 'Four')
  await note(a.page, 'Four').waitFor()
  await note(d.page, 'Four').waitFor()
  t.same(await texts(d.page), await texts(a.page), 'the same board as a page that folded every op')
  await shot(t, d.page, 'react-6-d-from-snapshot')
  await a.context.close()
  await d.context.close()
})
