import Fastify, { type FastifyInstance } from 'fastify'
import { pathToFileURL } from 'node:url'
import flow, { options as serverOptions, type FlowOptions } from './app.js'
import { isIP } from 'node:net'
import { resolveConfig } from './lib/config.js'
import { ConfigError } from './lib/errors.js'

export { redactUrl } from './lib/redact.js'

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
    // The settings `fastify start -o` takes from app.ts too: the router, closing, redacting logs.
    ...serverOptions,
    logger: { ...serverOptions.logger, level: config.logLevel },
    // Behind a proxy the client's address (per-address limits) is the one X-Forwarded-For gives.
    trustProxy: trustProxyOption(config.trustProxy)
  })
  await app.register(flow, flowOptions)
  return app
}

/**
 * `npm start` and `flow-realtime` (cli.ts): listens on HOST:PORT of `env`
 * (default process.env); SIGTERM or SIGINT drains (acks ops in flight,
 * flushes, closes sockets with 1001) and exits. A second signal during the
 * drain is logged and does not cut it short.
 */
export async function main (env?: NodeJS.ProcessEnv): Promise<void> {
  let app: FastifyInstance
  try {
    app = await buildServer(env === undefined ? {} : { env })
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
