import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import { resolveConfig, type FlowConfigOptions } from './lib/config.js'
import type { HubPorts } from './lib/hub/hub.js'
import configPlugin from './plugins/config.js'
import redisPlugin from './plugins/redis.js'
import portsPlugin from './plugins/ports.js'
import type { NodeRedisClient } from './adapters/redis/client.js'
import hubPlugin from './plugins/hub.js'
import authPlugin, { type AuthenticateHook } from './plugins/auth.js'
import errorsPlugin from './plugins/errors.js'
import healthPlugin from './plugins/health.js'
import websocketPlugin from './plugins/websocket.js'
import httpApiPlugin from './plugins/http-api.js'
import statsPlugin from './plugins/stats.js'
import demoPlugin, { demoBoard } from './plugins/demo.js'
import openapiPlugin from './plugins/openapi.js'
import requestLogPlugin, { routeLogLevel } from './plugins/request-log.js'
import recoveryPlugin from './plugins/recovery.js'
import type { FlowConfig } from './lib/config.js'
import type { Hub } from './lib/hub/hub.js'
import type { SnapshotReducer } from './lib/hub/snapshots.js'
import type { OnOp } from './lib/hub/op-hook.js'
import type { Stats } from './lib/stats.js'
import type { CircuitBreaker } from './lib/breaker.js'
import type { PortReport } from './plugins/ports.js'
import { redactingLogger } from './lib/redact.js'

export type { FlowConfig, FlowConfigOptions } from './lib/config.js'
export type { Identity } from './lib/hub/transport.js'
export type { AuthenticateHook } from './plugins/auth.js'
export type { SnapshotReducer } from './lib/hub/snapshots.js'
export type { OnOp, OpCheck } from './lib/hub/op-hook.js'
export type { Access } from './lib/hub/transport.js'
export { BadRequestError, ForbiddenError, LimitExceededError, RateLimitedError } from './lib/errors.js'
export type { Op } from './lib/types.js'

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
  readonly redis?: NodeRedisClient
  /** serve the demo board at `{prefix}/` (default false; `npm start` turns it on) */
  readonly demo?: boolean
  /**
   * a host reducer (protocol 1.2, Snapshots): the server folds each project's
   * ops into a state with `reduce(state, op)` (pure, synchronous) and stores
   * it as a snapshot every `every` ops (default FLOW_SNAPSHOT_EVERY), so a
   * joiner beyond the history gets the state and the ops after it
   */
  readonly snapshots?: SnapshotReducer
  /**
   * the host's check of each op a client sends, before it is appended:
   * return false or throw a Flow error (ForbiddenError, BadRequestError...)
   * to refuse it with that code (lib/hub/op-hook.ts)
   */
  readonly onOp?: OnOp
}

/** What Flow shares with the host app, read-only: `fastify.flow`. */
export interface Flow {
  readonly config: FlowConfig
  readonly instanceId: string
  readonly startedAt: number
  readonly stats: Stats
  /** the ports the hub works on */
  readonly ports: HubPorts
  /** the hub: `hub.post(project, userId, id, data)` publishes an op from the server side */
  readonly hub: Hub
  /** what each port runs on now (as /health shows it) */
  readonly portReports: () => Readonly<Record<keyof HubPorts, PortReport>>
  /** the Redis connection's circuit breaker; null when no port is on Redis */
  readonly breaker: CircuitBreaker | null
}

/**
 * The Fastify server options Flow runs best with, for `fastify start -o
 * dist/app.js` (fastify-cli reads a plugin module's `options` export) and
 * used by `npm start` too: project ids up to 128 characters fit the router
 * (no `maxParamLength` warning), keep-alive connections do not hold the
 * close, and credentials stay out of the logs (`?token=` in a URL, the
 * Authorization header). fastify-cli's `-l` gives the log level.
 */
export const options = Object.freeze({
  routerOptions: Object.freeze({ maxParamLength: 256 }),
  forceCloseConnections: 'idle',
  logger: redactingLogger
} satisfies FastifyServerOptions)

/**
 * `fastify start -o` also hands the plugin the `options` above as plugin
 * options: those keys (the very objects exported) are not Flow settings and
 * are dropped; anything else unknown is still refused.
 */
function withoutServerOptions (opts: FlowOptions): FlowOptions {
  const server: Record<string, unknown> = options
  return Object.fromEntries(Object.entries(opts).filter(([key, value]) => server[key] !== value))
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Flow's read-only facade, set once every part of Flow is registered */
    flow: Flow
  }
}

/**
 * Flow realtime as a Fastify plugin: the composition root. Each part is a
 * plugin that decorates its own name (flowConfig, flowRedis, flowPorts,
 * flowHub, flowAuth); routes, auth, error handling and load shedding live in
 * an encapsulated child under `prefix`, so the host's own routes and hooks
 * are untouched. Last, `fastify.flow` is the read-only facade for the host.
 */
async function flow (fastify: FastifyInstance, opts: FlowOptions): Promise<void> {
  const { prefix, authenticate, ports, env, redis, demo, snapshots, onOp, ...settings } = withoutServerOptions(opts)
  const config = resolveConfig(settings, env)
  await fastify.register(configPlugin, { config })
  await fastify.register(redisPlugin, { client: redis })
  await fastify.register(portsPlugin, { ports })
  await fastify.register(hubPlugin, { snapshots: snapshots ?? (demo === true ? demoBoard : undefined), onOp })
  await fastify.register(recoveryPlugin)
  await fastify.register(async function flowRoutes (child) {
    await child.register(errorsPlugin)
    await child.register(requestLogPlugin)
    // Before any route: @fastify/swagger documents the routes registered after it.
    await child.register(openapiPlugin)
    await child.register(authPlugin, { authenticate })
    // Before health: @fastify/websocket's onRequest hook must mark an upgrade
    // before under-pressure's may answer it 503, or the socket is never closed.
    await child.register(websocketPlugin)
    await child.register(healthPlugin)
    await child.register(httpApiPlugin)
    await child.register(statsPlugin)
    if (demo === true) await child.register(demoPlugin)
    // Fastify's per-request lines are `info`: muted on Flow's routes (and only
    // theirs), which log one line per request at `debug` instead (flow-request-log).
  }, { prefix: prefix ?? '', logLevel: routeLogLevel(fastify.log) })
  const { instanceId, startedAt, stats } = fastify.flowConfig
  const { reports, health } = fastify.flowPorts
  fastify.decorate('flow', Object.freeze({
    config,
    instanceId,
    startedAt,
    stats,
    ports: fastify.flowPorts.ports,
    hub: fastify.flowHub,
    portReports: reports,
    breaker: health?.breaker ?? null
  }))
}

export default fp(flow, { name: 'flow', fastify: '5.x' })
