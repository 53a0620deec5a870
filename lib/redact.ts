/**
 * Credentials kept out of the logs, for every way Flow is started: `npm
 * start` and the `flow-realtime` command (server.ts) and `fastify start -o`
 * (app.ts's `options`) use the same logger settings from here.
 */

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

/**
 * A key as a server would read it: percent-decoded (repeatedly), `+` as a
 * space, trimmed, lower case, without `[...]`.
 */
function decodedKey (key: string): string {
  let k = key
  for (let i = 0; i < 4; i++) {
    const next = k.replace(/\+/g, ' ')
      .replace(/%([0-9a-f]{2})/gi, (_match, hex: string) => String.fromCharCode(parseInt(hex, 16)))
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
 * pino settings (Fastify's `logger` option, without `level`) that hide
 * credentials: the Authorization, Cookie and Sec-WebSocket-Protocol headers,
 * credentials in every URL of a line, and raw requests kept by parser errors.
 */
export const redactingLogger = Object.freeze({
  redact: ['req.headers.authorization', 'req.headers.cookie', 'req.headers["sec-websocket-protocol"]'],
  hooks: {
    // The whole line as written: messages quote URLs too (Fastify's 404
    // says "Route GET:<url> not found"), and so do errors and their
    // stacks, and objects such as @fastify/websocket's { path }.
    streamWrite (line: string): string {
      return redactUrl(line).replace(RAW_PACKET, '"rawPacket":"[REDACTED]"')
    }
  },
  serializers: {
    req (req: { method: string, url: string, ip?: string }) {
      return { method: req.method, url: redactUrl(req.url), remoteAddress: req.ip }
    }
  }
})
