#!/usr/bin/env node
/**
 * `flow-realtime` (the package's bin, and `npm start`): reads the command
 * line (lib/cli-args.ts: one flag per setting), then starts the server of
 * server.ts with those settings over the environment.
 *
 *   flow-realtime --port 4000 --host 0.0.0.0
 *   npm start -- --port 4000
 *
 * Exit codes: 0 after a drain (SIGTERM, SIGINT) or --help/--version; 1 when
 * the server cannot start; 2 for a usage error (an unknown flag, a bad value).
 */
import { readFileSync } from 'node:fs'
import { resolveConfig } from './lib/config.js'
import { helpText, parseArgs } from './lib/cli-args.js'
import { main } from './server.js'

/** The version in the package.json above this module (`./` from source, `../` from dist/). */
function version (): string {
  for (const path of ['./package.json', '../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8')) as { name?: string, version?: string }
      if (pkg.name === 'flow-realtime' && typeof pkg.version === 'string') return pkg.version
    } catch {}
  }
  return 'unknown'
}

const command = parseArgs(process.argv.slice(2), process.env)
if (command.kind === 'help') {
  process.stdout.write(helpText(version()))
} else if (command.kind === 'version') {
  process.stdout.write(`${version()}\n`)
} else if (command.kind === 'usage') {
  process.stderr.write(`flow-realtime: ${command.message}\nflow-realtime --help lists the options.\n`)
  process.exitCode = 2
} else {
  let valid = true
  try {
    resolveConfig({}, command.env)
  } catch (err) {
    // A bad value given as a flag is a usage error naming the flag.
    const message = err instanceof Error ? err.message : String(err)
    const given = Object.entries(command.flags).filter(([, env]) => message.includes(env)).map(([flag]) => flag)
    if (given.length > 0) {
      process.stderr.write(`flow-realtime: ${message} (given as ${given.join(', ')})\n`)
      process.exitCode = 2
      valid = false
    }
  }
  if (valid) await main(command.env)
}
