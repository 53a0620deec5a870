// Reads V8 .cpuprofile files (node --cpu-prof) and ranks functions by self
// time: the time the sampler found that function itself on top of the stack.
import { readFileSync } from 'node:fs'
import { relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { root } from './proc.mjs'

/** Where a function lives, shortened: `dist/lib/hub/hub.js:123`, `node_modules/ws/lib/sender.js:40`, `node:net`. */
function place (callFrame) {
  const { url, lineNumber } = callFrame
  if (url === '') return ''
  let path = url
  if (url.startsWith('file://')) path = relative(root, fileURLToPath(url))
  const nm = path.lastIndexOf('node_modules/')
  if (nm >= 0) path = path.slice(nm)
  return lineNumber >= 0 ? `${path}:${lineNumber + 1}` : path
}

/** Coarse owner of a function: the package, Flow's own code, Node core, or V8. */
function owner (callFrame) {
  const { url, functionName } = callFrame
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)'
  if (url.startsWith('node:')) return 'node core'
  const nm = url.lastIndexOf('node_modules/')
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/')
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
  }
  if (url.includes('/dist/')) return 'flow (dist/)'
  return 'other'
}

/** CLOCK_MONOTONIC in µs: the clock of V8 profile timestamps (and of process.hrtime). */
export const monotonicUs = () => Number(process.hrtime.bigint() / 1000n)

/**
 * Self time per function and per owner, over one or more profiles, counting
 * only samples taken between fromUs and toUs (monotonicUs() values, e.g. the
 * measured phase of a run) when given.
 * Returns { totalMs, idleMs, functions: [{ name, place, owner, selfMs, percent }], owners: [...] }
 * where percent is of the busy (non-idle) time.
 */
export function summariseProfiles (files, { fromUs = -Infinity, toUs = Infinity } = {}) {
  const byFunction = new Map()
  const byOwner = new Map()
  let totalMs = 0
  let idleMs = 0
  for (const file of files) {
    const profile = JSON.parse(readFileSync(file, 'utf8'))
    const nodes = new Map(profile.nodes.map((n) => [n.id, n]))
    const self = new Map()
    // timeDeltas[i] is the time from sample i-1 to sample i: charge it to sample i.
    let at = profile.startTime
    for (let i = 0; i < profile.samples.length; i++) {
      const delta = profile.timeDeltas[i] ?? 0
      at += delta
      if (at < fromUs || at > toUs) continue
      const id = profile.samples[i]
      self.set(id, (self.get(id) ?? 0) + delta)
    }
    for (const [id, us] of self) {
      const cf = nodes.get(id).callFrame
      const name = cf.functionName === '' ? '(anonymous)' : cf.functionName
      const ms = us / 1000
      totalMs += ms
      if (name === '(idle)') { idleMs += ms; continue }
      const key = `${name}\u0000${place(cf)}`
      const f = byFunction.get(key) ?? { name, place: place(cf), owner: owner(cf), selfMs: 0 }
      f.selfMs += ms
      byFunction.set(key, f)
      const o = owner(cf)
      byOwner.set(o, (byOwner.get(o) ?? 0) + ms)
    }
  }
  const busy = totalMs - idleMs
  const pct = (x) => Math.round((1000 * x) / busy) / 10
  const functions = [...byFunction.values()].sort((a, b) => b.selfMs - a.selfMs)
    .map((f) => ({ ...f, selfMs: Math.round(f.selfMs), percent: pct(f.selfMs) }))
  const owners = [...byOwner.entries()].sort((a, b) => b[1] - a[1])
    .map(([name, ms]) => ({ owner: name, selfMs: Math.round(ms), percent: pct(ms) }))
  return { totalMs: Math.round(totalMs), idleMs: Math.round(idleMs), busyMs: Math.round(busy), functions, owners }
}
