import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Hub } from '../lib/hub/hub.js'

/**
 * Creates the collaboration hub on the ports. On close it drains: ops in
 * flight are acked, unsent data is flushed, then connections close with 1001.
 */
async function hubPlugin (fastify: FastifyInstance): Promise<void> {
  const { config, ports, instanceId, stats } = fastify.flow
  const logger = fastify.log.child({ component: 'hub' })
  const hub = new Hub({ config, ports, instanceId, stats, logger })
  fastify.flow.hub = hub
  fastify.addHook('preClose', async () => {
    await hub.drain()
  })
  fastify.addHook('onClose', async () => {
    hub.close()
  })
}

export default fp(hubPlugin, { name: 'flow-hub', fastify: '5.x', dependencies: ['flow-ports'] })
