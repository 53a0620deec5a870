import fp from 'fastify-plugin'
import type { FastifyBaseLogger, FastifyInstance, LogLevel } from 'fastify'

/**
 * The level of the request logger of Flow's routes: `warn`, or the app's own
 * level when that is quieter (`error`, `fatal`, `silent`): a route's
 * `logLevel` replaces the app's, it does not only raise it.
 */
export function routeLogLevel (log: FastifyBaseLogger): LogLevel {
  const own = levelValue(log, log.level)
  const warn = levelValue(log, 'warn')
  if (own === undefined || warn === undefined) return 'warn'
  return own > warn ? log.level as LogLevel : 'warn'
}

/** A level's number in pino (undefined for a logger without levels: Fastify's `logger: false`). */
function levelValue (log: FastifyBaseLogger, level: string): number | undefined {
  return (log as { levels?: { values?: Record<string, number> } }).levels?.values?.[level]
}

/** Whether `log` writes lines at `level` now. */
function enabled (log: FastifyBaseLogger, level: string): boolean {
  const own = levelValue(log, log.level)
  const wanted = levelValue(log, level)
  return own !== undefined && wanted !== undefined && own <= wanted
}

/**
 * Per-request logs of Flow's routes at `debug`, not `info`: at 6,400 req/s
 * Fastify's two lines per request at `info` were 22.6 MB per 10 s. Fastify
 * logs them at `info` through the request's logger, which Flow's context
 * sets to `warn` (`routeLogLevel`, the `logLevel` Flow's routes are
 * registered with: a host's routes keep theirs). This plugin logs one
 * `request completed` line per request at `debug` in their place, with the
 * path but not the query (a `?token=` never reaches a line), through the
 * app's logger so the app's level decides.
 */
async function requestLogPlugin (fastify: FastifyInstance): Promise<void> {
  const log = fastify.log
  fastify.addHook('onResponse', async (request, reply) => {
    if (!enabled(log, 'debug')) return
    const url = request.url
    const end = url.indexOf('?')
    log.debug({
      reqId: request.id,
      method: request.method,
      path: end === -1 ? url : url.slice(0, end),
      statusCode: reply.statusCode,
      responseTime: reply.elapsedTime
    }, 'request completed')
  })
}

export default fp(requestLogPlugin, { name: 'flow-request-log', fastify: '5.x' })
