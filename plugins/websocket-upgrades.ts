import { createServer, ServerResponse, type IncomingMessage, type Server } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { FastifyInstance } from 'fastify'

/** Where Flow's @fastify/websocket gets its upgrades from. */
export interface UpgradeRouting {
  /** an http server that never listens: it only re-emits the upgrades that are Flow's */
  readonly source: Server
  /** stops routing (before closing): later upgrades reach nobody of Flow's */
  readonly stop: () => void
}

/**
 * Hands @fastify/websocket the upgrades of Flow's own path only.
 *
 * Registered in Flow's encapsulated context, @fastify/websocket would route
 * every upgrade on the server through Fastify, while only its encapsulated
 * hooks destroy the socket after a plain HTTP answer: an upgrade to a host
 * route, or to a path nobody serves (404), would keep its socket open for
 * ever, and `app.close()` would wait for it for ever. So upgrades of other
 * paths are answered as plain HTTP by the app's router and then closed,
 * unless another 'upgrade' listener (the host's) is there to take them.
 */
export function routeUpgrades (fastify: FastifyInstance, path: () => string): UpgradeRouting {
  // Never listens: it only re-emits the upgrades that are Flow's.
  const source = createServer()
  const onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const url = request.url ?? ''
    const end = url.indexOf('?')
    if ((end === -1 ? url : url.slice(0, end)) === path()) {
      source.emit('upgrade', request, socket, head)
      return
    }
    if (fastify.server.listenerCount('upgrade') > 1) return
    socket.on('error', () => { socket.destroy() })
    const response = new ServerResponse(request)
    response.assignSocket(socket as Socket)
    response.on('finish', () => { socket.destroy() })
    fastify.routing(request, response)
  }
  fastify.server.on('upgrade', onUpgrade)
  return { source, stop: () => { fastify.server.removeListener('upgrade', onUpgrade) } }
}
