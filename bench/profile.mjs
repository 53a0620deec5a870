#!/usr/bin/env node
// CPU profile of the Flow server under the fan-out load: runs bench/fanout.mjs'
// workload with the instances under `node --cpu-prof`, then ranks functions
// by self time over all instances' profiles, counting only the samples of
// the measured phase (no start-up, connection ramp or warm-up).
//
//   node bench/profile.mjs                               # flow ×2 on Redis, 2 ops/s per member, 10 s
//   node bench/profile.mjs --memory --instances 1 --top 30
//
// Profiles land in bench/results/profiles/<stamp>/ (open them in Chrome
// DevTools or speedscope); the ranking in bench/results/profile-<stamp>.json.
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from './lib/args.mjs'
import { summariseProfiles } from './lib/cpuprofile.mjs'
import { loadavg, resultsDir, waitForQuiet } from './lib/proc.mjs'
import { num, stamp, table, writeResult } from './lib/report.mjs'
import { FANOUT_DEFAULTS, runFanout } from './fanout.mjs'

export async function runProfile (options, log = (m) => process.stderr.write(`${m}\n`)) {
  const o = { ...FANOUT_DEFAULTS, target: 'flow', top: 20, ...options }
  const dir = join(resultsDir, 'profiles', stamp())
  const fanout = await runFanout({ ...o, cpuProf: dir, saturate: false }, log)
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(dir, f))
  if (files.length === 0) throw new Error(`no .cpuprofile was written in ${dir}`)
  // Only the measured phase: no start-up, connections or warm-up.
  const phase = fanout.phases[0]
  const summary = summariseProfiles(files, { fromUs: phase.window.monoStartUs, toUs: phase.window.monoEndUs })
  return { kind: 'profile', label: fanout.label, dir, files, fanout: phase, ...summary, functions: summary.functions.slice(0, o.top), owners: summary.owners.slice(0, 15) }
}

export function profileTables (p, top = 20) {
  const fns = table(['#', 'function', 'where', 'self ms', '% of busy'],
    p.functions.slice(0, top).map((f, i) => [i + 1, `\`${f.name}\``, f.place === '' ? '—' : `\`${f.place}\``, num(f.selfMs), `${f.percent.toFixed(1)} %`]))
  const owners = table(['owner', 'self ms', '% of busy'], p.owners.map((x) => [x.owner, num(x.selfMs), `${x.percent.toFixed(1)} %`]))
  return { functions: fns, owners }
}

async function main () {
  const o = parseArgs({ ...FANOUT_DEFAULTS, top: 20, noWait: false })
  const gate = o.noWait ? { quiet: null, load: loadavg() } : await waitForQuiet()
  const result = await runProfile(o)
  result.quiet = gate
  const file = writeResult(`profile-${stamp()}`, result)
  const t = profileTables(result, o.top)
  process.stdout.write(`\n${result.label}: ${num(result.busyMs)} ms busy of ${num(result.totalMs)} ms sampled over ${result.files.length} profile(s)\n\n${t.functions}\n\n${t.owners}\n\nprofiles: ${result.dir}\nresults: ${file}\n`)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => { process.stderr.write(`${err.stack}\n`); process.exit(1) })
}
