/**
 * The README's shell examples, run against a started server (`node
 * dist/server.js`, as `npm start` runs it, on a free port).
 *
 * Convention: a fenced `console`, `sh` or `bash` block right after the HTML
 * comment `<!-- test: run -->` is run; `<!-- test: skip: why -->` says why
 * one is not. Blocks run in README order against one fresh server, so a
 * later block sees what an earlier one did (seqs go on). In a `console`
 * block a line `$ cmd` is a command and the lines up to the next `$` are
 * its output as shown, where `…` stands for any text: the command must exit
 * 0 and print that shape. In `sh` and `bash` blocks every line is a command
 * (exit 0, output not checked). `localhost:3000` and `127.0.0.1:3000` become
 * the test server's address.
 *
 * `npx wscat -c URL` is interactive (and npx would download it), so it is
 * played by a `ws` client here: each `> frame` line is sent, and each
 * `< frame` line must match the next frame received, in order; other lines
 * (wscat's `Connected ...`) are wscat's own and not checked. The connection
 * stays open until the end, as a terminal left open would.
 */
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import WebSocket from 'ws'
import { ensureBuilt, startEntry } from '../helpers/process.js'

export interface Block {
  /** line of the opening fence, 1-based */
  readonly line: number
  readonly lang: string
  /** what follows `test:` in the comment right before the fence, or null */
  readonly marker: string | null
  readonly lines: readonly string[]
}

/** The fenced blocks of a Markdown text, each with the `<!-- test: ... -->` marker of the line before it (blank lines between allowed). */
export function fencedBlocks (text: string): Block[] {
  const lines = text.split('\n')
  const blocks: Block[] = []
  for (let i = 0; i < lines.length; i++) {
    const open = /^(`{3,})([\w-]*)\s*$/.exec(lines[i] as string)
    if (open === null) continue
    const fence = open[1] as string
    let end = i + 1
    while (end < lines.length && (lines[end] as string).trim() !== fence) end++
    let before = i - 1
    while (before >= 0 && (lines[before] as string).trim() === '') before--
    const marker = before >= 0 ? /^<!--\s*test:\s*(.*?)\s*-->$/.exec((lines[before] as string).trim())?.[1] ?? null : null
    blocks.push({ line: i + 1, lang: open[2] as string, marker, lines: lines.slice(i + 1, end) })
    i = end
  }
  return blocks
}

/** A shown output as a pattern: the text literally, `…` for any text (across lines too). */
export function shape (shown: string): RegExp {
  const parts = shown.split('…').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
  return new RegExp(`^${parts.join('[\\s\\S]*?')}$`)
}

interface Step { readonly command: string, readonly output: readonly string[] }

/** The commands of a `console` block, each with the lines shown after it. */
export function consoleSteps (lines: readonly string[]): Step[] {
  const steps: Array<{ command: string, output: string[] }> = []
  for (const line of lines) {
    if (line.startsWith('$ ')) steps.push({ command: line.slice(2), output: [] })
    else if (steps.length > 0) steps.at(-1)?.output.push(line)
    else throw new Error(`output before any command: ${line}`)
  }
  return steps
}

const SHELL_LANGS = new Set(['console', 'sh', 'bash', 'shell'])
const LOCAL = /\b(?:localhost|127\.0\.0\.1):3000\b/

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
const blocks = fencedBlocks(readme).filter((b) => SHELL_LANGS.has(b.lang))

t.test('the harness: markers, console steps and shapes', async (t) => {
  const md = ['text', '', '<!-- test: run -->', '```console', '$ echo hi', 'hi', '```', '', '```sh', 'npm start', '```', '<!-- test: skip: needs Docker -->', '', '```bash', 'docker compose up', '```'].join('\n')
  const found = fencedBlocks(md)
  t.same(found.map((b) => [b.line, b.lang, b.marker]), [[4, 'console', 'run'], [9, 'sh', null], [14, 'bash', 'skip: needs Docker']])
  t.same(consoleSteps(['$ a', 'x', 'y', '$ b']), [{ command: 'a', output: ['x', 'y'] }, { command: 'b', output: [] }])
  t.match('{"seq":1,"id":"abc"}', shape('{"seq":1,…}'))
  t.notMatch('{"seq":2,"id":"abc"}', shape('{"seq":1,…}'), 'a shown value must be there')
  t.notMatch('{"seq":1} and more', shape('{"seq":1}'), 'the whole output must have the shape')
})

t.test('every README shell block that talks to the local server is marked run or skip', async (t) => {
  const unmarked = blocks.filter((b) => b.marker === null && b.lines.some((l) => LOCAL.test(l) && /\b(curl|wscat|websocat)\b/.test(l)))
  t.same(unmarked.map((b) => `README.md:${b.line}`), [], 'mark each with <!-- test: run --> or <!-- test: skip: why -->')
  t.ok(blocks.filter((b) => b.marker === 'run').length >= 3, 'the README has runnable examples')
})

await ensureBuilt()
const server = await startEntry(t)
const address = server.http.replace(/^http:\/\//, '')
const local = (s: string): string => s.replace(new RegExp(LOCAL.source, 'g'), address)
const cwd = tmpdir()

async function shell (command: string): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise((resolve) => {
    execFile('bash', ['-c', command], { cwd, timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
      resolve({ code, stdout, stderr })
    })
  })
}

/** Plays a wscat session: sends `>` lines, matches `<` lines against the frames received, in order. */
async function wscat (t: Test, url: string, transcript: readonly string[]): Promise<void> {
  const socket = new WebSocket(url)
  t.teardown(() => { socket.terminate() })
  const received: string[] = []
  const waiting: Array<() => void> = []
  socket.on('message', (data: Buffer) => {
    received.push(data.toString('utf8'))
    waiting.shift()?.()
  })
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => { resolve() })
    socket.once('error', reject)
  })
  let next = 0
  const frame = async (): Promise<string | null> => {
    if (next >= received.length) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 5000)
        waiting.push(() => { clearTimeout(timer); resolve() })
      })
    }
    return received[next++] ?? null
  }
  for (const line of transcript) {
    if (line.startsWith('> ')) socket.send(line.slice(2))
    else if (line.startsWith('< ')) {
      const got = await frame()
      t.match(got ?? '(no frame within 5 s)', shape(line.slice(2)), `wscat shows ${line.slice(0, 60)}…`)
    }
  }
}

for (const block of blocks.filter((b) => b.marker === 'run')) {
  t.test(`README.md:${block.line}: the example runs as shown`, async (t) => {
    if (block.lang !== 'console') {
      for (const command of block.lines.filter((l) => l.trim() !== '' && !l.trim().startsWith('#'))) {
        const run = await shell(local(command))
        t.equal(run.code, 0, `${command} exits 0${run.code === 0 ? '' : `: ${run.stderr}`}`)
      }
      return
    }
    for (const { command, output } of consoleSteps(block.lines)) {
      const ws = /^npx wscat -c '?([^'\s]+)'?$/.exec(command)
      if (ws !== null) {
        await wscat(t, local(ws[1] as string), output)
        continue
      }
      const run = await shell(local(command))
      t.equal(run.code, 0, `${command} exits 0${run.code === 0 ? '' : `: ${run.stderr}`}`)
      if (output.length > 0) t.match(run.stdout.replace(/\n$/, ''), shape(output.join('\n')), `${command} prints what the README shows`)
    }
  })
}

t.test('docs/operations.md shows /health with the fields it answers', async (t) => {
  const doc = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8')
  const block = fencedBlocks(doc.slice(doc.indexOf('## Health'))).find((b) => b.lang === 'json')
  t.ok(block, 'the Health section shows a JSON example')
  const shown = JSON.parse(block?.lines.join('\n') ?? '{}') as Record<string, unknown>
  const live = await (await fetch(`${server.http}/health`)).json() as Record<string, unknown>
  const fields = (o: unknown): string[] => Object.keys(o as object).sort()
  t.same(fields(shown), fields(live), 'the same fields')
  t.same(fields(shown.redis), fields(live.redis), 'the same redis fields')
  t.same(fields(shown.ports), fields(live.ports), 'the same ports')
})
