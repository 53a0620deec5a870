/**
 * What the browser tests share: Debian's Chromium driven by playwright-core
 * (never a browser a test tool downloads), its flags, and the folder the
 * screenshots go to (.tap/e2e-screenshots/, printed by each test).
 */
import { mkdir } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import { chromium, type Browser, type Page } from 'playwright-core'
import { ROOT } from '../helpers/process.js'

export const CHROMIUM = '/usr/bin/chromium'
/** As the machine notes say: no GPU, no sandbox (root), no calls home. */
export const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync']
export const WAIT_MS = 10_000
export const SHOTS = join(ROOT, '.tap', 'e2e-screenshots')

/** Chromium with a fresh, empty profile of its own (playwright-core's launch()), closed at the end of `t`. */
export async function launchChromium (t: Test): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: the browser tests drive Debian's Chromium. ` +
      'Install it (`apt-get update && apt-get install chromium`) and run the tests again.')
  }
  await mkdir(SHOTS, { recursive: true })
  t.comment(`screenshots: ${SHOTS}`)
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, timeout: WAIT_MS })
  t.teardown(async () => { await browser.close() })
  return browser
}

/** A screenshot of `page` as .tap/e2e-screenshots/NAME.png; its path is printed. */
export async function shot (t: Test, page: Page, name: string): Promise<void> {
  const path = join(SHOTS, `${name}.png`)
  await page.screenshot({ path })
  t.comment(`screenshot: ${path}`)
}
