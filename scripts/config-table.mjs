// Rewrites the configuration table of README.md from lib/config.ts's SETTINGS
// (run `npm run build` first): `npm run docs:config`.
import { readFileSync, writeFileSync } from 'node:fs'
import { SETTINGS } from '../dist/lib/config.js'

const START = '<!-- config:start -->'
const END = '<!-- config:end -->'
const rows = Object.entries(SETTINGS).map(([option, s]) =>
  `| \`${s.env}\` | \`${option}\` | ${s.default === undefined ? '—' : '`' + String(s.default) + '`'} | ${s.doc} |`)
const table = ['| variable | option | default | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n')
const readme = readFileSync('README.md', 'utf8')
const from = readme.indexOf(START)
const to = readme.indexOf(END)
if (from < 0 || to < 0) throw new Error(`README.md needs ${START} and ${END} around the table`)
writeFileSync('README.md', readme.slice(0, from + START.length) + '\n' + table + '\n' + readme.slice(to))
