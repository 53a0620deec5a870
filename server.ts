import Fastify, { type FastifyInstance } from 'fastify'
import { pathToFileURL } from 'node:url'
import flow, { type FlowOptions } from './app.js'
import { resolveConfig } from './lib/config.js'

/** Redacts credentials from request URLs in logs (`?token=`, `?apiKey=`). */
export function redactUrl (url: string): string {
  return url.replace(/([?&](?:token|access_token|api_key|apiKey)=)[^&#]*/gi, '$1[REDACTED]')
}

/** A Fastify app serving Flow at the root, logging with pino, with the demo board unless `demo: false`. */
export async function buildServer (options: FlowOptions & { readonly logLevel?: string } = {}): Promise<FastifyInstance> {
  const { logLevel, prefix, authenticate, ports, env, redis, demo, ...settings } = options
  const config = resolveConfig({ ...settings, ...(logLevel === undefined ? {} : { logLevel }) }, env)
  // `npm start` serves the demo board unless told not to.
  const flowOptions: FlowOptions = { ...settings, env, prefix, authenticate, ports, redis, demo: demo ?? true }
  const app = Fastify({
    logger: {
      level: config.logLevel,
      redact: ['req.headers.authorization', 'req.headers.cookie', 'req.headers["sec-websocket-protocol"]'],
      hooks: {
        // Messages may quote a URL too (Fastify's 404 says "Route GET:<url> not found").
        logMethod (args, method) {
          method.apply(this, args.map((arg) => typeof arg === 'string' ? redactUrl(arg) : arg) as Parameters<typeof method>)
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
    trustProxy: false
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
