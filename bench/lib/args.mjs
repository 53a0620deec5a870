// `--name value` and `--flag` command-line options, with typed defaults.

/**
 * Parses process.argv against `defaults`: a number default reads a number, a
 * boolean default is a flag (`--memory`), an array default reads a
 * comma-separated list of numbers, anything else a string.
 */
export function parseArgs (defaults, argv = process.argv.slice(2)) {
  const out = { ...defaults }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}`)
    const key = arg.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase())
    if (!(key in defaults)) throw new Error(`unknown option ${arg}; known: ${Object.keys(defaults).map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(' ')}`)
    const d = defaults[key]
    if (typeof d === 'boolean') { out[key] = true; continue }
    const value = argv[++i]
    if (value === undefined) throw new Error(`${arg} needs a value`)
    if (typeof d === 'number') {
      out[key] = Number(value)
      if (!Number.isFinite(out[key])) throw new Error(`${arg} must be a number, got ${value}`)
    } else if (Array.isArray(d)) {
      out[key] = value.split(',').map(Number)
    } else {
      out[key] = value
    }
  }
  return out
}
