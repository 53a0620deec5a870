import t from 'tap'
import { readFileSync } from 'node:fs'
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
