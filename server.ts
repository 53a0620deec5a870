import Fastify, { type FastifyInstance } from 'fastify'
import { pathToFileURL } from 'node:url'
import flow, { type FlowOptions } from './app.js'
import { isIP } from 'node:net'
import { resolveConfig } from './lib/config.js'
import { ConfigError } from './lib/errors.js'

/** Query and matrix parameters whose value is a credential, by key as decoded (lower case). */
const SECRET_KEYS = new Set(['token', 'access_token', 'api_key', 'apikey'])

/**
 * Where a parameter starts in a URL or in text quoting one: a separator
 * (`?` or `&` for a query, `;` for a matrix parameter such as
 * `/ws;token=...`), a key and `=`.
 */
const PARAM_KEY = /([?&;])([^=&;?#\s/"\\]*)=/g
/**
 * A credential's value: up to the next `&`, `;`, white space, `"` or `\`
 * (the last two end a string in a JSON log line). A `/`, `?` or `#` in it
 * does not end it: more is hidden rather than less.
 */
const SECRET_VALUE = /[^&;\s"\\]*/y

/** A key as a server would read it: percent-decoded (repeatedly), `+` as a space, trimmed, lower case, without `[...]`. */
function decodedKey (key: string): string {
  let k = key
  for (let i = 0; i < 4; i++) {
    const next = k.replace(/\+/g, ' ').replace(/%([0-9a-f]{2})/gi, (_match, hex: string) => String.fromCharCode(parseInt(hex, 16)))
    if (next === k) break
    k = next
  }
  return k.trim().toLowerCase().replace(/\[.*$/, '')
}

/**
 * Hides credentials in a URL, or in any text quoting URLs (a log message, a
 * JSON log line): the value of every query parameter (`?token=`, `&apiKey=`)
 * and matrix parameter (`;token=`) whose key decodes to `token`,
 * `access_token`, `api_key` or `apikey`, whatever its case or
 * percent-encoding (`?%74oken=`, `?TOKEN=`), becomes `[REDACTED]`.
 */
export function redactUrl (text: string): string {
  let out = ''
  let copied = 0
  const keys = new RegExp(PARAM_KEY)
  for (let match = keys.exec(text); match !== null; match = keys.exec(text)) {
    // Another parameter's value is searched on: it may quote a URL (`?next=/ws?token=...`).
    if (!SECRET_KEYS.has(decodedKey(match[2] ?? ''))) continue
    const value = new RegExp(SECRET_VALUE)
    value.lastIndex = keys.lastIndex
    value.exec(text)
    out += `${text.slice(copied, keys.lastIndex)}[REDACTED]`
    copied = value.lastIndex
    keys.lastIndex = value.lastIndex
  }
  return copied === 0 ? text : out + text.slice(copied)
}

/** A Node HTTP parser error keeps the raw request (its URL, its headers) as bytes. */
const RAW_PACKET = /"rawPacket":\{"type":"Buffer","data":\[[0-9,]*\]\}/g

/**
 * FLOW_TRUST_PROXY as Fastify's `trustProxy`: `true` (any proxy), or the
 * list of proxies' addresses and CIDRs (and proxy-addr's names `loopback`,
 * `linklocal`, `uniquelocal`); unset or `false`: the TCP peer is the client.
 */
export function trustProxyOption (value: string | undefined): boolean | string[] {
  if (value === undefined || value.trim().toLowerCase() === 'false') return false
  if (value.trim().toLowerCase() === 'true') return true
  const entries = value.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '')
  for (const entry of entries) {
    if (!isProxyEntry(entry)) {
      throw new ConfigError(`FLOW_TRUST_PROXY must be true or comma-separated addresses or CIDRs, got ${JSON.stringify(entry)}`)
    }
  }
  if (entries.length === 0) throw new ConfigError('FLOW_TRUST_PROXY must be true or comma-separated addresses or CIDRs')
  return entries
}

function isProxyEntry (entry: string): boolean {
  if (entry === 'loopback' || entry === 'linklocal' || entry === 'uniquelocal') return true
  const [address = '', bits, extra] = entry.split('/')
  const kind = isIP(address)
  if (kind === 0 || extra !== undefined) return false
  return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (kind === 4 ? 32 : 128))
}

/** A Fastify app serving Flow at the root, logging with pino, with the demo board unless `demo: false`. */
export async function buildServer (options: FlowOptions & { readonly logLevel?: string } = {}): Promise<FastifyInstance> {
  const { logLevel, prefix, authenticate, ports, env, redis, demo, snapshots, ...settings } = options
  const config = resolveConfig({ ...settings, ...(logLevel === undefined ? {} : { logLevel }) }, env)
  // `npm start` serves the demo board unless told not to.
  const flowOptions: FlowOptions = { ...settings, env, prefix, authenticate, ports, redis, snapshots, demo: demo ?? true }
  const app = Fastify({
    logger: {
      level: config.logLevel,
      redact: ['req.headers.authorization', 'req.headers.cookie', 'req.headers["sec-websocket-protocol"]'],
      hooks: {
        // The whole line as written: messages quote URLs too (Fastify's 404
        // says "Route GET:<url> not found"), and so do errors and their
        // stacks, and objects such as @fastify/websocket's { path }.
        streamWrite (line) {
          return redactUrl(line).replace(RAW_PACKET, '"rawPacket":"[REDACTED]"')
        }
      },
      serializers: {
        req (req: { method: string, url: string, ip?: string }) {
          return { method: req.method, url: redactUrl(req.url), remoteAddress: req.ip }
        }
      }
    },
    // Project ids are up to 128 characters; longer ones get the API's 400, not the router's 414.
    routerOptions: { maxParamLength: 256 },
    // WebSocket clients and HTTP keep-alive must not hold the close forever.
    forceCloseConnections: 'idle',
    // Behind a proxy the client's address (per-address limits) is the one X-Forwarded-For gives.
    trustProxy: trustProxyOption(config.trustProxy)
  })
  await app.register(flow, flowOptions)
  return app
}

/**
 * `npm start`: listens on HOST:PORT; SIGTERM or SIGINT drains (acks ops in
 * flight, flushes, closes sockets with 1001) and exits. A second signal
 * during the drain is logged and does not cut it short.
 */
export async function main (): Promise<void> {
  let app: FastifyInstance
  try {
    app = await buildServer()
    await app.ready()
  } catch (err) {
    process.stderr.write(`flow: cannot start: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exit(1)
  }
  const { config } = app.flow
  let closing = false
  const shutdown = (signal: string): void => {
    if (closing) {
      app.log.warn({ signal }, 'already shutting down; the drain goes on')
      return
    }
    closing = true
    app.log.info({ signal }, 'shutting down')
    app.close().then(() => { process.exit(0) }, (err: unknown) => {
      app.log.error({ err }, 'shutdown failed')
      process.exit(1)
    })
  }
  process.on('SIGTERM', () => { shutdown('SIGTERM') })
  process.on('SIGINT', () => { shutdown('SIGINT') })
  try {
    await app.listen({ port: config.port, host: config.host })
  } catch (err) {
    app.log.error({ err }, 'cannot listen')
    process.exit(1)
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  void main()
}
