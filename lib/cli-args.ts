import { SETTINGS } from './config.js'

/**
 * The command line of `flow-realtime` (and `npm start -- ...`): one flag
 * per setting of lib/config.ts, named after its option in kebab case
 * (`sessionTtlSeconds` is `--session-ttl-seconds`), whose value is read
 * exactly as the setting's environment variable would be. The help text is
 * generated from the same list, so a new setting is a new flag.
 */

type SettingName = keyof typeof SETTINGS
interface Described {
  readonly env: string
  readonly kind: string
  readonly default?: string | number | boolean
  readonly values?: readonly string[]
  readonly doc: string
}

/** What the command line asks for. */
export type Command =
  | {
    readonly kind: 'run'
    /** the environment with the flags' variables set */
    readonly env: Readonly<Record<string, string>>
    /** the flags given, each with the variable it set (`--port` -> `PORT`) */
    readonly flags: Readonly<Record<string, string>>
  }
  | { readonly kind: 'help' }
  | { readonly kind: 'version' }
  | { readonly kind: 'usage', readonly message: string }

/** `sessionTtlSeconds` -> `session-ttl-seconds` */
export function flagName (option: string): string {
  return option.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
}

const FLAGS = new Map<string, [SettingName, Described]>(
  (Object.entries(SETTINGS) as Array<[SettingName, Described]>).map(([name, s]) => [flagName(name), [name, s]])
)

/** Settings whose value is a credential: a command line is visible to every user of the machine (ps). */
function isSecret (s: Described): boolean {
  return s.kind === 'secret'
}

function placeholder (s: Described): string {
  switch (s.kind) {
    case 'int': return '<n>'
    case 'float': return '<x>'
    case 'bool': return '[true|false]'
    case 'enum': return `<${s.values?.join('|') ?? ''}>`
    case 'url': return '<url>'
    default: return '<value>'
  }
}

/**
 * Reads `argv` (without node and the script): `--help`, `--version`, or
 * flags that become environment variables over `env`. A bare boolean flag
 * (`--redis-tls`) means true. Unknown flags, a flag without its value, a
 * positional argument or a credential given as a flag is a usage error.
 */
export function parseArgs (argv: readonly string[], env: NodeJS.ProcessEnv): Command {
  const flags: Record<string, string> = {}
  const unknown: string[] = []
  const problems: string[] = []
  let help = false
  let version = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? ''
    if (arg === '--help' || arg === '-h') { help = true; continue }
    if (arg === '--version' || arg === '-v') { version = true; continue }
    if (!arg.startsWith('--') || arg === '--') {
      problems.push(`unexpected argument ${JSON.stringify(arg)}`)
      continue
    }
    const eq = arg.indexOf('=')
    const name = arg.slice(2, eq < 0 ? undefined : eq)
    const found = FLAGS.get(name)
    if (found === undefined) { unknown.push(`--${name}`); continue }
    const [, setting] = found
    if (isSecret(setting)) {
      if (eq < 0 && i + 1 < argv.length && !(argv[i + 1] ?? '').startsWith('--')) i++
      problems.push(`--${name} is not accepted on the command line (other users see it in ps): ` +
        `set ${setting.env} in the environment`)
      continue
    }
    let value: string | undefined
    if (eq >= 0) value = arg.slice(eq + 1)
    else if (setting.kind === 'bool') {
      const next = argv[i + 1]
      if (next === 'true' || next === 'false') { value = next; i++ } else value = 'true'
    } else if (i + 1 < argv.length && !(argv[i + 1] ?? '').startsWith('--')) {
      value = argv[++i]
    }
    if (value === undefined) { problems.push(`--${name} needs a value ${placeholder(setting)}`); continue }
    flags[`--${name}`] = setting.env
    env = { ...env, [setting.env]: value }
  }
  if (unknown.length > 0) problems.unshift(`unknown option${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}`)
  if (problems.length > 0) return { kind: 'usage', message: problems.join('\n') }
  if (help) return { kind: 'help' }
  if (version) return { kind: 'version' }
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(env)) if (value !== undefined) out[key] = value
  return { kind: 'run', env: out, flags }
}

/** The text of `--help`: usage, then every setting as a flag (or, for credentials, as its variable only). */
export function helpText (version: string): string {
  const lines = [
    `flow-realtime ${version}: the Flow realtime server (memory adapters unless USE_REDIS_* say otherwise)`,
    '',
    'Usage: flow-realtime [options]',
    '',
    'Each option sets the environment variable named after it; options win over the environment.',
    'SIGTERM or SIGINT drains (connections close with 1001) and exits.',
    '',
    '  --help, -h        this text',
    '  --version, -v     the version',
    ''
  ]
  for (const [flag, [, s]] of FLAGS) {
    const def = s.default === undefined ? '' : `, default ${String(s.default)}`
    lines.push(isSecret(s)
      ? `  ${s.env} (environment only: not a flag, command lines are visible in ps)`
      : `  --${flag} ${placeholder(s)}  (${s.env}${def})`)
    lines.push(`      ${s.doc}`)
  }
  return lines.join('\n') + '\n'
}
