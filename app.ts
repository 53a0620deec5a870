import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { resolveConfig, type FlowConfigOptions } from './lib/config.js'
import type { HubPorts } from './lib/hub/hub.js'
import configPlugin from './plugins/config.js'
import redisPlugin from './plugins/redis.js'
import portsPlugin from './plugins/ports.js'
import type { RedisClient } from './adapters/redis/client.js'
import hubPlugin from './plugins/hub.js'
import authPlugin, { type AuthenticateHook } from './plugins/auth.js'
import errorsPlugin from './plugins/errors.js'
import healthPlugin from './plugins/health.js'
import websocketPlugin from './plugins/websocket.js'
import httpApiPlugin from './plugins/http-api.js'
import statsPlugin from './plugins/stats.js'
import demoPlugin from './plugins/demo.js'

export type { Flow } from './plugins/config.js'
export type { FlowConfig, FlowConfigOptions } from './lib/config.js'
export type { Identity } from './lib/hub/transport.js'
export type { AuthenticateHook } from './plugins/auth.js'

/** Options of the plugin: any setting (the environment gives the defaults), plus these. */
export interface FlowOptions extends Omit<FlowConfigOptions, 'logLevel'> {
  /** where Flow's routes live, e.g. `/rt` (default: the root) */
  readonly prefix?: string
  /** a host app's own authentication, used instead of JWT */
  readonly authenticate?: AuthenticateHook
  /** adapters handed in by the host (never closed by Flow) */
  readonly ports?: Partial<HubPorts>
  /** environment to read settings from (default process.env) */
  readonly env?: NodeJS.ProcessEnv
  /** a host app's own node-redis client for commands (Flow duplicates it for Pub/Sub and never closes it) */
  readonly redis?: RedisClient
}

/**
 * Flow realtime as a Fastify plugin. Shared state is decorated on the host
 * as `fastify.flow`; routes, auth, error handling and load shedding live in
 * an encapsulated child under `prefix`, so the host's own routes and hooks
 * are untouched.
 */
async function flow (fastify: FastifyInstance, opts: FlowOptions): Promise<void> {
  const { prefix, authenticate, ports, env, redis, ...settings } = opts
  const config = resolveConfig(settings, env)
  await fastify.register(configPlugin, { config })
  await fastify.register(redisPlugin, { client: redis })
  await fastify.register(portsPlugin, { ports })
  await fastify.register(hubPlugin)
  await fastify.register(async function flowRoutes (child) {
    await child.register(errorsPlugin)
    await child.register(authPlugin, { authenticate })
    // Before health: @fastify/websocket's onRequest hook must mark an upgrade
    // before under-pressure's may answer it 503, or the socket is never closed.
    await child.register(websocketPlugin)
    await child.register(healthPlugin)
    await child.register(httpApiPlugin)
    await child.register(statsPlugin)
    await child.register(demoPlugin)
  }, { prefix: prefix ?? '' })
}

export default fp(flow, { name: 'flow', fastify: '5.x' })
