// Heap snapshots (.heapsnapshot, V8's JSON format) added up by kind: for
// objects, closures and native and hidden nodes their constructor or name,
// for everything else (strings, code, arrays of numbers) the node type. Two
// summaries diffed and divided by a number of connections give what each
// connection holds in the heap, by kind (self sizes: a Map's table counts as
// its own "(object elements)" or "system / ..." entry, not the Map's).
import { readFileSync } from 'node:fs'

const NAMED = new Set(['object', 'closure', 'native', 'hidden', 'synthetic', 'object shape', 'regexp'])

/** { key → { count, bytes } } of one snapshot, and its total self size. */
export function summarize (file) {
  const snap = JSON.parse(readFileSync(file, 'utf8'))
  const fields = snap.snapshot.meta.node_fields
  const types = snap.snapshot.meta.node_types[0]
  const width = fields.length
  const typeAt = fields.indexOf('type')
  const nameAt = fields.indexOf('name')
  const sizeAt = fields.indexOf('self_size')
  const { nodes, strings } = snap
  const kinds = new Map()
  let total = 0
  let count = 0
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + typeAt]]
    const size = nodes[i + sizeAt]
    const key = NAMED.has(type) ? `${type}: ${strings[nodes[i + nameAt]].slice(0, 80)}` : type
    const k = kinds.get(key)
    if (k === undefined) kinds.set(key, { count: 1, bytes: size })
    else { k.count++; k.bytes += size }
    total += size
    count++
  }
  return { total, count, kinds: Object.fromEntries(kinds) }
}

/**
 * What `after` holds more than `before`, per connection: the `top` kinds by
 * bytes added, each with objects and bytes per connection.
 */
export function perConnection (before, after, connections, top = 25) {
  const rows = []
  for (const [key, a] of Object.entries(after.kinds)) {
    const b = before.kinds[key] ?? { count: 0, bytes: 0 }
    rows.push({ kind: key, countPerConnection: (a.count - b.count) / connections, bytesPerConnection: (a.bytes - b.bytes) / connections })
  }
  rows.sort((x, y) => y.bytesPerConnection - x.bytesPerConnection)
  return {
    bytesPerConnection: (after.total - before.total) / connections,
    nodesPerConnection: (after.count - before.count) / connections,
    top: rows.slice(0, top).map((r) => ({ ...r, countPerConnection: Math.round(r.countPerConnection * 100) / 100, bytesPerConnection: Math.round(r.bytesPerConnection) }))
  }
}

/**
 * Who holds the nodes of some kinds (keys as in `summarize`): for each such
 * node its first retainer, as "retainer kind .edge", added up. To tell which
 * plain Objects, arrays and property arrays a connection brings. Skips weak
 * edges. `minCount` drops retainer kinds seen fewer times.
 */
export function retainers (file, kinds, minCount = 1000) {
  const snap = JSON.parse(readFileSync(file, 'utf8'))
  const meta = snap.snapshot.meta
  const nf = meta.node_fields
  const ef = meta.edge_fields
  const types = meta.node_types[0]
  const edgeTypes = meta.edge_types[0]
  const width = nf.length
  const ew = ef.length
  const typeAt = nf.indexOf('type')
  const nameAt = nf.indexOf('name')
  const sizeAt = nf.indexOf('self_size')
  const edgeCountAt = nf.indexOf('edge_count')
  const eTypeAt = ef.indexOf('type')
  const eNameAt = ef.indexOf('name_or_index')
  const eToAt = ef.indexOf('to_node')
  const { nodes, edges, strings } = snap
  const keyOf = (i) => {
    const type = types[nodes[i + typeAt]]
    return NAMED.has(type) ? `${type}: ${strings[nodes[i + nameAt]].slice(0, 80)}` : type
  }
  const wanted = new Set(kinds)
  const seen = new Uint8Array(nodes.length / width)
  const out = new Map()
  let e = 0
  for (let i = 0; i < nodes.length; i += width) {
    const parent = keyOf(i)
    const count = nodes[i + edgeCountAt]
    for (let k = 0; k < count; k++, e += ew) {
      const et = edgeTypes[edges[e + eTypeAt]]
      if (et === 'weak' || et === 'shortcut') continue
      const to = edges[e + eToAt]
      const idx = to / width
      if (seen[idx] === 1) continue
      const child = keyOf(to)
      if (!wanted.has(child)) continue
      seen[idx] = 1
      const name = et === 'element' || et === 'hidden' ? `[${et}]` : String(strings[edges[e + eNameAt]] ?? edges[e + eNameAt])
      const key = `${child} <- ${parent} .${name}`
      const r = out.get(key)
      if (r === undefined) out.set(key, { count: 1, bytes: nodes[to + sizeAt] })
      else { r.count++; r.bytes += nodes[to + sizeAt] }
    }
  }
  return [...out.entries()].filter(([, r]) => r.count >= minCount).sort((a, b) => b[1].bytes - a[1].bytes)
    .map(([key, r]) => ({ key, count: r.count, bytes: r.bytes }))
}
