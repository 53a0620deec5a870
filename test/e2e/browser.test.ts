/**
 * The demo board in a real browser (Debian's Chromium, driven by
 * playwright-core) against two Flow instances sharing a real redis-server:
 * a note added on one instance's page appears on the other's, members show
 * across instances, and a page whose connection is cut shows `reconnecting`,
 * comes back `open` and receives the note added meanwhile.
 * Screenshots of the key steps go to .tap/e2e-screenshots/ (printed).
 */
import t from 'tap'
import type { BrowserContext, Page } from 'playwright-core'
import { startRedis } from '../helpers/redis.js'
import { startCluster } from '../helpers/cluster.js'
import { ensureBuilt } from '../helpers/process.js'
import { launchChromium, shot as screenshot, WAIT_MS } from './chromium.js'

// The page imports the client's single-file build, dist/browser/flow-client.js: build it first.
await ensureBuilt()

const redis = await startRedis(t)
const { instances } = await startCluster(t, redis.url, 2, { demo: true })
const [one, two] = instances
if (one === undefined || two === undefined) throw new Error('two instances expected')

const browser = await launchChromium(t)

/**
 * Runs in the page before its scripts: `window.__net.cut()` closes the
 * page's WebSockets and sends new ones to a closed port until
 * `window.__net.restore()`. (Chromium's offline emulation, context.setOffline,
 * neither closes an open WebSocket nor stops a new one to 127.0.0.1.)
 */
function netSwitch (): void {
  const Native = window.WebSocket
  const sockets = new Set<WebSocket>()
  const net = {
    down: false,
    cut (): void {
      net.down = true
      for (const ws of sockets) ws.close(4001, 'cut by the test')
    },
    restore (): void { net.down = false }
  }
  class Switched extends Native {
    constructor (url: string | URL, protocols?: string | string[]) {
      super(net.down ? 'ws://127.0.0.1:9/down' : url, protocols)
      sockets.add(this)
      this.addEventListener('close', () => { sockets.delete(this) })
    }
  }
  Object.assign(window, { __net: net, WebSocket: Switched })
}

/** A page of its own context, failing the test on page errors. */
async function open (base: string, project: string, userId: string): Promise<{ context: BrowserContext, page: Page }> {
  const context = await browser.newContext({ viewport: { width: 900, height: 520 } })
  await context.addInitScript(netSwitch)
  const page = await context.newPage()
  page.setDefaultTimeout(WAIT_MS)
  page.on('pageerror', (err) => { t.fail(`page error (${userId}): ${err.message}`) })
  await page.goto(`${base}/?project=${project}&userId=${userId}`)
  await page.locator('#status[data-status="open"]').waitFor()
  return { context, page }
}

async function addNote (page: Page, text: string): Promise<void> {
  await page.fill('#text', text)
  await page.click('button[type="submit"]')
}

async function shot (page: Page, name: string): Promise<void> {
  await screenshot(t, page, name)
}

const note = (page: Page, text: string) => page.locator('#notes .note:not(.pending)', { hasText: text })

t.test('two pages on two instances share a board and survive a cut connection', async (t) => {
  const project = `e2e-${Date.now().toString(36)}`
  const a = await open(one.http, project, 'ann')
  const b = await open(two.http, project, 'bob')

  await addNote(a.page, 'Hello from Ann')
  await note(b.page, 'Hello from Ann').waitFor()
  await b.page.locator('#members li[data-user-id="ann"]').waitFor()
  await a.page.locator('#members li[data-user-id="bob"]').waitFor()
  t.equal(await note(a.page, 'Hello from Ann').count(), 1, 'the note is on A once')
  t.equal(await note(b.page, 'Hello from Ann').count(), 1, 'and on B, served by the other instance')
  await shot(a.page, '1-a-note-added')
  await shot(b.page, '1-b-note-received')

  // Cut A's connection, and keep it down until restored.
  await a.page.evaluate(() => { (window as unknown as { __net: { cut: () => void } }).__net.cut() })
  await a.page.locator('#status[data-status="reconnecting"]').waitFor()
  await addNote(b.page, 'Added by Bob while Ann was away')
  await note(b.page, 'Added by Bob while Ann was away').waitFor()
  t.equal(await note(a.page, 'Added by Bob while Ann was away').count(), 0, 'A, cut off, has not seen it')
  await shot(a.page, '2-a-reconnecting')

  await a.page.evaluate(() => { (window as unknown as { __net: { restore: () => void } }).__net.restore() })
  await a.page.locator('#status[data-status="open"]').waitFor()
  await note(a.page, 'Added by Bob while Ann was away').waitFor()
  const texts = async (page: Page): Promise<string[]> => await page.locator('#notes .note').evaluateAll(
    (els) => els.map((el) => el.firstChild?.textContent ?? ''))
  t.same(await texts(a.page), ['Hello from Ann', 'Added by Bob while Ann was away'], 'A has both notes, in order, once each')
  t.same(await texts(b.page), await texts(a.page), 'A and B show the same board')
  await shot(a.page, '3-a-recovered')

  await a.context.close()
  await b.context.close()
})
