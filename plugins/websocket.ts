import fp from 'fastify-plugin'
import websocket from '@fastify/websocket'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { ForbiddenError, rateLimited } from '../lib/errors.js'
import { DEFAULT_CLOCK_SKEW_SECONDS as CLOCK_SKEW_SECONDS } from '../lib/auth.js'
import type { RawData, WebSocket } from 'ws'
import type { Connection } from '../lib/hub/connection.js'
import { closeCodeOf, Flusher, releaseUpgrade, WsTransport } from '../adapters/ws/transport.js'
import { routeUpgrades } from './websocket-upgrades.js'
import { identityKey } from './auth.js'
import { errorResponse } from './errors.js'
import type { SwaggerTransform } from '@fastify/swagger'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** marks Flow's WebSocket route */
    flowSocket?: boolean
  }
}

/** A socket's connection in the hub and what its listeners need. */
interface Link {
  readonly conn: Connection
  readonly ip: string
  readonly reqId: string
  readonly transport: CountingTransport
  /** ms since the Unix epoch */
  readonly openedAt: number
  /** messages received */
  framesIn: number
  expiry: NodeJS.Timeout | undefined
}

/** The transport, counting the frames the hub hands it for the connection's close line. */
class CountingTransport extends WsTransport {
  framesOut = 0

  override send (frame: Parameters<WsTransport['send']>[0]): void {
    this.framesOut++
    super.send(frame)
  }
}

/** After the drain, how long HTTP requests still in flight get before every remaining connection is cut. */
const CLOSE_STRAGGLERS_MS = 1000

const LINK = Symbol('flow.link')
type FlowSocket = WebSocket & { [LINK]?: Link }

function toBuffer (data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data
  if (Array.isArray(data)) return Buffer.concat(data)
  return Buffer.from(data)
}

/**
 * What the OpenAPI document says of `GET /ws` beyond its schema: the query
 * and the answers, for the document only. As route schemas they would be
 * checked at the upgrade, where the auth hook reads the query as it comes.
 */
const documentUpgrade: SwaggerTransform = ({ schema, url }) => ({
  url,
  schema: {
    ...schema,
    // @fastify/websocket hides its routes from the document; this one is Flow's API.
    hide: false,
    querystring: {
      type: 'object',
      properties: {
        token: { type: 'string', description: 'the token, when not in the Authorization header (never logged)' },
        userId: { type: 'string', description: 'authentication off: the user id the client names itself with (default anonymous)' }
      }
    },
    response: {
      101: { type: 'null', description: 'Switching Protocols: the socket speaks protocol v1' },
      401: errorResponse('authentication is on and the token is missing or invalid (`unauthorized`)'),
      403: errorResponse('a browser Origin not in FLOW_ALLOWED_ORIGINS (`forbidden`)'),
      429: errorResponse('the address holds FLOW_MAX_CONNECTIONS_PER_IP connections already (`rate_limited`)'),
      500: errorResponse('a bug (`internal`)'),
      503: errorResponse('the process is over a load limit, named in the message, or shutting down (`unavailable`)')
    }
  }
})

/** `GET /ws`: the WebSocket endpoint of protocol v1. */
async function websocketPlugin (fastify: FastifyInstance): Promise<void> {
  const { config } = fastify.flowConfig
  const hub = fastify.flowHub
  // Not request.log: the route logs at warn only (its URL may carry ?token=
  // and a host's serializers may not redact it), which would mute these.
  const connLog = fastify.log.child({ component: 'websocket' })
  // The endpoint's full path as the router has it (a prefix may end with '/').
  let path = ''
  fastify.addHook('onRoute', (route) => {
    if (route.config?.flowSocket === true) path = route.url
  })
  const ownServer = !fastify.hasDecorator('websocketServer')
  if (ownServer) {
    const upgrades = routeUpgrades(fastify, () => path)
    await fastify.register(websocket, {
      options: {
        // An event source only: @fastify/websocket runs ws with noServer.
        server: upgrades.source,
        maxPayload: config.maxPayloadBytes,
        // Invalid UTF-8 is answered with bad_request instead of a 1007 close.
        skipUTF8Validation: true,
        perMessageDeflate: false,
        // The hub tracks its connections; ws's own set would cost memory per socket.
        clientTracking: false
      },
      // Drain before the sockets are closed (the default closes them at once).
      preClose: async () => {
        upgrades.stop()
        await hub.drain()
        fastify.websocketServer.close()
        // A connection that never sends a full request (a balancer's idle upstream, a half-sent header)
        // is neither idle nor done for Node's server.close(): it would hold the exit until the headers
        // timeout (60 s). After the drain, requests in flight get a second; what is left is cut.
        setTimeout(() => { fastify.server.closeAllConnections() }, CLOSE_STRAGGLERS_MS).unref()
      }
    })
  }

  const origins = config.allowedOrigins === undefined
    ? null
    : new Set(config.allowedOrigins.split(',').map((o) => o.trim().replace(/\/+$/, '')).filter((o) => o !== ''))
  const perIp = new Map<string, number>()
  /** When the frames written to the connections leave: each turn, or each FLOW_FLUSH_WINDOW_MS. */
  const flusher = new Flusher(config.flushWindowMs)

  /** Refuses, before the upgrade, a browser from another origin and an address over its connection limit. */
  const admit = async (request: FastifyRequest): Promise<void> => {
    const origin = request.headers.origin
    if (origins !== null && origin !== undefined && !origins.has(origin)) {
      throw new ForbiddenError('this origin may not connect')
    }
    if (config.maxConnectionsPerIp > 0 && (perIp.get(request.ip) ?? 0) >= config.maxConnectionsPerIp) {
      throw rateLimited(`at most ${config.maxConnectionsPerIp} connections per address`)
    }
  }

  // One set of listeners for every socket (per-connection closures cost
  // memory at 10,000 connections): each finds its state on the socket.
  function onMessage (this: FlowSocket, data: RawData, isBinary: boolean): void {
    const link = this[LINK]
    if (link === undefined) return
    link.framesIn++
    hub.frame(link.conn, toBuffer(data), isBinary)
  }
  function onPong (this: FlowSocket): void {
    const link = this[LINK]
    if (link !== undefined) hub.pong(link.conn)
  }
  function onClose (this: FlowSocket, code: number): void {
    const link = this[LINK]
    if (link === undefined) return
    clearTimeout(link.expiry)
    const left = (perIp.get(link.ip) ?? 1) - 1
    if (left <= 0) perIp.delete(link.ip)
    else perIp.set(link.ip, left)
    // 1006: no close frame (a dropped network, a killed client); 4000: the client gave up on a connection that
    // stopped answering and reconnects. A session that can resume is held (1.3).
    if (code === 1006 || code === 4000) link.conn.dropped = true
    hub.disconnect(link.conn)
    // The connection's one line at info (with 'connection opened'): no project, no token.
    connLog.info({
      reqId: link.reqId,
      conn: link.conn.id,
      code,
      durationMs: Date.now() - link.openedAt,
      framesIn: link.framesIn,
      framesOut: link.transport.framesOut
    }, 'connection closed')
  }
  function onError (this: FlowSocket, err: Error): void {
    const link = this[LINK]
    const code = closeCodeOf(err)
    if (code !== null && link !== undefined) {
      // ws refused what the client sent (a frame over maxPayload) and has
      // started the close handshake with `code`, discarding further input.
      // Terminating now would lose the close frame (still in the socket's
      // buffer, or cut by a reset): the transport ends the connection after
      // the handshake or its timeout. The sessions leave at once.
      connLog.info({ err, reqId: link.reqId, conn: link.conn.id, code }, 'frame refused: closing')
      hub.disconnect(link.conn)
      link.conn.transport.close(code, '', { discardQueued: true })
      return
    }
    connLog.info({ err, reqId: link?.reqId, conn: link?.conn.id }, 'socket error: dropping the connection')
    this.terminate()
  }
  function onExpiry (socket: FlowSocket): void {
    const link = socket[LINK]
    connLog.info({ reqId: link?.reqId, conn: link?.conn.id }, 'token expired: closing')
    // The client reconnects with a fresh token: its sessions that can resume are held (1.3).
    if (link !== undefined) link.conn.dropped = true
    socket.close(1008, 'token expired')
  }

  fastify.get('/ws', {
    websocket: true,
    config: { flowSocket: true, swaggerTransform: documentUpgrade },
    schema: {
      tags: ['websocket'],
      summary: 'Open a WebSocket (protocol v1)',
      description: 'Upgraded to a WebSocket of protocol v1: one JSON frame per text message (docs/protocol.md). ' +
        'Authentication happens here; a refused upgrade gets an HTTP answer and no socket.'
    },
    // No request log lines for upgrades: the URL may carry ?token=.
    logLevel: 'warn',
    preValidation: [admit, fastify.flowAuth.socket]
  }, (ws, request) => {
    const socket = ws as FlowSocket
    const identity = request.flowIdentity
    if (identity === null) {
      socket.close(1008, 'not authenticated')
      return
    }
    const ip = request.ip
    perIp.set(ip, (perIp.get(ip) ?? 0) + 1)
    if (ownServer) {
      // Let the upgrade's HTTP objects go (about 2.8 KB per connection),
      // @fastify/websocket's 'error' listener with them. Flow's own listener
      // below does what that one did (log, terminate).
      releaseUpgrade(socket, request.raw.socket)
    } else {
      // The host's @fastify/websocket closes its clients at once when the app
      // closes (code 1005), before Flow's drain. Flow's sockets are Flow's to
      // close: with 1001, after draining. Its error handler stays the host's.
      fastify.websocketServer.clients.delete(socket)
    }
    // Listeners first, before any await: messages are not buffered for us.
    const transport = new CountingTransport(socket, flusher)
    const link: Link = {
      conn: hub.connect(transport, identity, identityKey(identity, ip, fastify.flowAuth.mode)), ip, reqId: request.id, transport, openedAt: Date.now(), framesIn: 0, expiry: undefined
    }
    socket[LINK] = link
    socket.on('message', onMessage)
    socket.on('pong', onPong)
    socket.on('close', onClose)
    if (ownServer) socket.on('error', onError)
    // A token that expires ends the connection (1008); the client reconnects
    // with a fresh token and `since`, and misses nothing.
    if (identity.expiresAt !== undefined) {
      // With the same clock skew the token was accepted with, so a token
      // accepted just past its exp is not closed at once (a reconnect loop).
      link.expiry = setTimeout(onExpiry, Math.min(Math.max(0, identity.expiresAt + CLOCK_SKEW_SECONDS * 1000 - Date.now()), 2 ** 31 - 1), socket)
      link.expiry.unref()
    }
    connLog.info({ reqId: request.id, conn: link.conn.id, userId: identity.userId, remoteAddress: ip }, 'connection opened')
  })
}

export default fp(websocketPlugin, { name: 'flow-websocket', fastify: '5.x', dependencies: ['flow-config', 'flow-hub', 'flow-auth'] })
