import fp from 'fastify-plugin'
import websocket from '@fastify/websocket'
import type { FastifyInstance } from 'fastify'
import type { RawData, WebSocket } from 'ws'
import type { Transport } from '../lib/hub/transport.js'

/** Adapts a `ws` socket to the hub's Transport. */
function transportOf (socket: WebSocket): Transport {
  return {
    send: (frame) => { socket.send(frame) },
    get bufferedAmount () { return socket.bufferedAmount },
    ping: () => { socket.ping() },
    close: (code, reason) => { socket.close(code, reason) },
    terminate: () => { socket.terminate() }
  }
}

function toBuffer (data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data
  if (Array.isArray(data)) return Buffer.concat(data)
  return Buffer.from(data)
}

/** `GET /ws`: the WebSocket endpoint of protocol v1. */
async function websocketPlugin (fastify: FastifyInstance): Promise<void> {
  const { hub, config } = fastify.flow
  if (!fastify.hasDecorator('websocketServer')) {
    await fastify.register(websocket, {
      options: {
        maxPayload: config.maxPayloadBytes,
        // Invalid UTF-8 is answered with bad_request instead of a 1007 close.
        skipUTF8Validation: true,
        perMessageDeflate: false
      },
      // Drain before the sockets are closed (the default closes them at once).
      preClose: async () => {
        await hub.drain()
        fastify.websocketServer.close()
      }
    })
  }

  fastify.get('/ws', {
    websocket: true,
    // No request log lines for upgrades: the URL may carry ?token=.
    logLevel: 'warn',
    preValidation: fastify.flowAuth.socket
  }, (socket, request) => {
    const identity = request.flowIdentity
    if (identity === null) {
      socket.close(1008, 'not authenticated')
      return
    }
    // Listeners first, before any await: messages are not buffered for us.
    const conn = hub.connect(transportOf(socket), identity)
    const log = request.log
    socket.on('message', (data, isBinary) => { hub.frame(conn, toBuffer(data), isBinary) })
    socket.on('pong', () => { hub.pong(conn) })
    socket.on('close', (code) => {
      hub.disconnect(conn)
      log.debug({ conn: conn.id, code }, 'connection closed')
    })
    socket.on('error', (err) => { log.debug({ err, conn: conn.id }, 'socket error') })
    log.debug({ conn: conn.id, userId: identity.userId }, 'connection opened')
  })
}

export default fp(websocketPlugin, { name: 'flow-websocket', fastify: '5.x', dependencies: ['flow-hub', 'flow-auth'] })
