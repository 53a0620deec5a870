import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { Test } from 'tap'
import flow, { type FlowOptions } from '../../app.js'

export interface TestServer {
  readonly app: FastifyInstance
  /** http://127.0.0.1:PORT{prefix} */
  readonly http: string
  /** ws://127.0.0.1:PORT{prefix}/ws */
  readonly ws: string
  readonly close: () => Promise<void>
}

/**
 * Starts Flow on a free loopback port with the given options (and the
 * app's `fastifyOptions`: no logger by default); the
 * environment is not read (pass `env` to test it). Closed at the end of `t`.
 * The event-loop delay limit is off unless a test sets it: on a loaded
 * machine a one-second stall would answer a test's request 503.
 */
export async function startServer (t: Test, options: FlowOptions = {}, setup?: (app: FastifyInstance) => Promise<void>,
  fastifyOptions: FastifyServerOptions = { logger: false }): Promise<TestServer> {
  const app = Fastify(fastifyOptions)
  if (setup !== undefined) await setup(app)
  await app.register(flow, { env: {}, maxEventLoopDelayMs: 0, ...options })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  const base = `127.0.0.1:${address.port}${options.prefix ?? ''}`
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await app.close()
  }
  t.teardown(close)
  return { app, http: `http://${base}`, ws: `ws://${base}/ws`, close }
}
