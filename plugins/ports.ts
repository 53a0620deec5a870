import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { HubPorts } from '../lib/hub/hub.js'
import { createMemoryBroadcaster } from '../adapters/memory/broadcaster.js'
import { createMemoryOperationLog } from '../adapters/memory/operation-log.js'
import { createMemorySessionStore } from '../adapters/memory/session-store.js'
import { guardPort } from '../adapters/guard/unavailable.js'
import type { PortReport } from './config.js'

export interface PortsPluginOptions {
  /** adapters handed in by the host app or a test; never closed by the plugin */
  readonly ports?: Partial<HubPorts>
}

/**
 * Picks an adapter for each port from the flags and decorates
 * `fastify.flow.ports`. Closes the adapters it created when the app closes.
 */
async function portsPlugin (fastify: FastifyInstance, opts: PortsPluginOptions): Promise<void> {
  const { config } = fastify.flow
  const given = opts.ports ?? {}
  const created: Array<{ close: () => Promise<void> }> = []
  const make = <T extends { close: () => Promise<void> }>(port: T): T => { created.push(port); return port }

  for (const [flag, on] of [['USE_REDIS_COLLABORATION', config.useRedisCollaboration], ['USE_REDIS_WEBSOCKETS', config.useRedisWebsockets], ['USE_REDIS_EVENT_ORDERING', config.useRedisEventOrdering]] as const) {
    if (on) fastify.log.warn({ flag }, 'Redis adapters are not in this build yet: the port runs on memory')
  }

  const report = (port: string) => (err: unknown): void => { fastify.log.warn({ err, port }, 'port call failed') }
  // A rejection of any port is a dependency failure: the client gets `unavailable`.
  const ports: HubPorts = {
    sessions: guardPort(given.sessions ?? make(createMemorySessionStore({ ttlMs: config.sessionTtlSeconds * 1000 })), 'the session store', report('sessions')),
    broadcaster: guardPort(given.broadcaster ?? make(createMemoryBroadcaster()), 'the broadcaster', report('broadcaster')),
    log: guardPort(given.log ?? make(createMemoryOperationLog({ historyLimit: config.historyMemory })), 'the op log', report('log'))
  }
  const memory: PortReport = { adapter: 'memory', circuit: null, since: null }
  fastify.flow.ports = ports
  fastify.flow.portReports = () => ({ sessions: memory, broadcaster: memory, log: memory })

  fastify.addHook('onClose', async () => {
    await Promise.all(created.map(async (port) => { await port.close() }))
  })
}

export default fp(portsPlugin, { name: 'flow-ports', fastify: '5.x', dependencies: ['flow-config'] })
