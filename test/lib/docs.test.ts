import t from 'tap'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { SETTINGS } from '../../lib/config.js'

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')

t.test('the README documents every setting with its variable, option and default', async (t) => {
  for (const [option, setting] of Object.entries(SETTINGS)) {
    const row = readme.split('\n').find((line) => line.startsWith(`| \`${setting.env}\` |`))
    if (row === undefined) {
      t.fail(`${setting.env} is missing from the README configuration table`)
      continue
    }
    t.match(row, `\`${option}\``, `${setting.env} names its option`)
    if ('default' in setting) t.match(row, `\`${String(setting.default)}\``, `${setting.env} shows its default`)
  }
})

t.test('the README shows the two commands: start on memory adapters, and test', async (t) => {
  t.match(readme, /npm ci && npm start/)
  t.match(readme, /npm test/)
})

// ---------------------------------------------------------------- links

/** The repository's root: every relative link must stay inside it. */
const root = fileURLToPath(new URL('../../', import.meta.url))

/** Folders no Markdown link is checked in (dot-folders are skipped too). */
const SKIPPED = new Set(['node_modules', 'dist'])

/** Every Markdown file under `dir`, as absolute paths, sorted. */
function markdownFiles (dir: string): string[] {
  const found: string[] = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.') || SKIPPED.has(entry.name)) continue
    const path = join(dir, entry.name)
    if (entry.isDirectory()) found.push(...markdownFiles(path))
    else if (entry.isFile() && entry.name.endsWith('.md')) found.push(path)
  }
  return found.sort()
}

/** The text with fenced code blocks blanked out, line breaks kept: their lines are no links or headings. */
function withoutFences (text: string): string {
  let fence: string | null = null
  return text.split('\n').map((line) => {
    const marker = /^ {0,3}(`{3,}|~{3,})/.exec(line)?.[1]
    if (fence === null && marker !== undefined) {
      fence = marker
      return ''
    }
    if (fence !== null) {
      if (marker !== undefined && marker[0] === fence[0] && marker.length >= fence.length && line.trim() === marker) fence = null
      return ''
    }
    return line
  }).join('\n')
}

/**
 * The text with code blocks, code spans and HTML comments blanked out, line
 * breaks kept (so line numbers still hold): what they hold is not a link.
 */
function withoutCode (text: string): string {
  const blank = (s: string): string => s.replace(/[^\n]/g, ' ')
  return withoutFences(text)
    .replace(/<!--[\s\S]*?-->/g, blank)
    .replace(/(`+)[\s\S]*?[^`]\1(?!`)|(`+)\2(?!`)/g, blank)
}

/** GitHub's anchor of a heading: lowercase, punctuation dropped but `-` and `_`, spaces to `-`. */
function slug (heading: string): string {
  return heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/<[^>]+>/g, '')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-')
}

/** The anchors a Markdown file has: one per heading (repeats get -1, -2, ...) and HTML ids. */
function anchorsOf (text: string): Set<string> {
  const anchors = new Set<string>()
  const seen = new Map<string, number>()
  const add = (heading: string): void => {
    const base = slug(heading)
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    anchors.add(n === 0 ? base : `${base}-${n}`)
  }
  // Code spans keep their text in a heading (their backticks are punctuation).
  const lines = withoutFences(text).split('\n')
  lines.forEach((line, i) => {
    const atx = /^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/.exec(line)
    if (atx !== null) add(atx[1] as string)
    else if (line.trim() !== '' && !line.includes('|') && /^ {0,3}(=+|-+)[ \t]*$/.test(lines[i + 1] ?? '') && !/^ {0,3}[-*+>#]/.test(line)) add(line.trim())
  })
  for (const match of text.matchAll(/<a\s[^>]*?(?:name|id)="([^"]+)"/g)) anchors.add(match[1] as string)
  return anchors
}

interface Link { readonly line: number, readonly target: string }

/** The destinations of inline links and images, and of reference definitions. */
function linksOf (text: string): Link[] {
  const clean = withoutCode(text)
  const lineOf = (index: number): number => clean.slice(0, index).split('\n').length
  const links: Link[] = []
  const inline = /!?\[(?:[^[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^\s)]+)(?:\s+(?:"[^"]*"|'[^']*'|\([^)]*\)))?\s*\)/g
  for (const match of clean.matchAll(inline)) links.push({ line: lineOf(match.index), target: (match[1] as string).replace(/^<|>$/g, '') })
  for (const match of clean.matchAll(/^ {0,3}\[[^\]]+\]:[ \t]*(<[^>]*>|\S+)/gm)) links.push({ line: lineOf(match.index), target: (match[1] as string).replace(/^<|>$/g, '') })
  return links
}

/** A link's path or anchor with %-escapes decoded; null when they are malformed. */
function decoded (part: string): string | null {
  try {
    return decodeURIComponent(part)
  } catch {
    return null
  }
}

/**
 * What is wrong with the links of the Markdown files under `base`: a target
 * that does not exist, one outside `base`, a link with a scheme other than
 * http, https and mailto, and an #anchor that names no heading of the
 * Markdown file it points at. One line per problem, `file:line: why`.
 */
function brokenLinks (base: string): { problems: string[], files: string[], checked: number } {
  const problems: string[] = []
  const files = markdownFiles(base)
  const anchors = new Map<string, Set<string>>()
  const anchorsFor = (file: string): Set<string> => {
    let set = anchors.get(file)
    if (set === undefined) {
      set = anchorsOf(readFileSync(file, 'utf8'))
      anchors.set(file, set)
    }
    return set
  }
  let checked = 0
  for (const file of files) {
    const name = relative(base, file)
    for (const { line, target } of linksOf(readFileSync(file, 'utf8'))) {
      const where = `${name}:${line}: ${target}`
      if (/^(https?|mailto):/i.test(target)) continue
      checked++
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) {
        problems.push(`${where}: not a relative link (only http, https and mailto may leave the repo)`)
        continue
      }
      const hash = target.indexOf('#')
      const path = decoded((hash === -1 ? target : target.slice(0, hash)).replace(/\?.*$/, ''))
      const anchor = hash === -1 ? '' : decoded(target.slice(hash + 1))
      if (path === null || anchor === null) {
        problems.push(`${where}: bad percent-encoding`)
        continue
      }
      const resolved = path === '' ? file : path.startsWith('/') ? join(base, path) : resolve(dirname(file), path)
      const inside = relative(base, resolved)
      if (inside === '..' || inside.startsWith(`..${sep}`) || isAbsolute(inside)) {
        problems.push(`${where}: points outside the repo`)
        continue
      }
      if (!existsSync(resolved)) {
        problems.push(`${where}: no such file or folder`)
        continue
      }
      if (anchor !== '' && resolved.endsWith('.md') && statSync(resolved).isFile() && !anchorsFor(resolved).has(anchor)) {
        problems.push(`${where}: no heading #${anchor} in ${relative(base, resolved)}`)
      }
    }
  }
  return { problems, files: files.map((f) => relative(base, f)), checked }
}

t.test('headings become anchors by GitHub\'s rules: lowercase, punctuation dropped but - and _, spaces to -', async (t) => {
  t.equal(slug('Configuration that is part of the contract'), 'configuration-that-is-part-of-the-contract')
  t.equal(slug('Stage 1: sessions — USE_REDIS_COLLABORATION=true'), 'stage-1-sessions--use_redis_collaborationtrue')
  t.equal(slug('new FlowClient(options)'), 'new-flowclientoptions')
  t.equal(slug('Saturation: step the per-member rate until p99 > 50 ms or loss > 0.1 %'), 'saturation-step-the-per-member-rate-until-p99--50-ms-or-loss--01-')
  t.equal(slug('See [the docs](docs/x.md)'), 'see-the-docs')
  t.same([...anchorsOf('# A\n\n## A\n\n```\n# not a heading\n```\n\nB\n---\n')], ['a', 'a-1', 'b'], 'a repeated heading gets -1; fenced lines are no headings; setext headings count')
})

t.test('the link check reports a missing file, a path outside the repo, a foreign scheme and an unknown anchor', async (t) => {
  const dir = t.testdir({
    'README.md': [
      '# Title',
      '',
      '[ok](docs/a.md#the-part) [self](#title) [folder](docs) [web](https://example.com/x) [mail](mailto:a@b.c)',
      '[gone](docs/missing.md)',
      '[out](../elsewhere/PROTOCOL.md)',
      '[file](file:///etc/hosts)',
      '[anchor](docs/a.md#no-such-part)',
      '`[code](not/checked.md)`',
      '',
      '```',
      '[fenced](not/checked/either.md)',
      '```',
      '',
      '[ref]: docs/b.md'
    ].join('\n'),
    docs: { 'a.md': '# A\n\n## The part\n' }
  })
  const { problems, checked } = brokenLinks(dir)
  t.same(problems, [
    'README.md:4: docs/missing.md: no such file or folder',
    'README.md:5: ../elsewhere/PROTOCOL.md: points outside the repo',
    'README.md:6: file:///etc/hosts: not a relative link (only http, https and mailto may leave the repo)',
    'README.md:7: docs/a.md#no-such-part: no heading #no-such-part in docs/a.md',
    'README.md:14: docs/b.md: no such file or folder'
  ])
  t.equal(checked, 8, 'links in code are not checked; http, https and mailto are skipped')
})

t.test('every relative link in the repo\'s Markdown resolves inside the repo, and every #anchor names a heading of its file', async (t) => {
  const { problems, files, checked } = brokenLinks(root)
  t.ok(files.includes('README.md') && files.includes(join('docs', 'protocol.md')), 'the walk finds the README and the protocol')
  t.notOk(files.some((f) => f.split(sep).some((part) => SKIPPED.has(part) || part.startsWith('.'))), 'node_modules, dist and dot-folders are not walked')
  t.ok(checked >= 20, `links were checked (${checked})`)
  t.same(problems, [], 'no broken link')
})

t.test('the README and the docs link the protocol inside the repo, docs/protocol.md', async (t) => {
  const protocol = readFileSync(join(root, 'docs', 'protocol.md'), 'utf8')
  t.match(protocol, /^# Flow realtime protocol, version \d+(\.\d+)?\n/, 'titled with its version')
  for (const file of markdownFiles(root)) {
    t.notMatch(readFileSync(file, 'utf8'), /shared\/PROTOCOL\.md/, `${relative(root, file)} does not point at the shared PROTOCOL.md`)
  }
  t.ok(linksOf(readme).some((l) => l.target === 'docs/protocol.md'), 'the README links docs/protocol.md')
})
