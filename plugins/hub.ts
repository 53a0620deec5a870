import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Hub } from '../lib/hub/hub.js'
import type { SnapshotReducer } from '../lib/hub/snapshots.js'
import type { OnOp } from '../lib/hub/op-hook.js'

export interface HubPluginOptions {
  /** the host reducer, if any (FlowOptions.snapshots) */
  readonly snapshots?: SnapshotReducer
  /** the host's op check, if any (FlowOptions.onOp) */
  readonly onOp?: OnOp
}

declare module 'fastify' {
  interface FastifyInstance {
    /** set by flow-hub */
    flowHub: Hub
  }
}

/**
 * Creates the collaboration hub on the ports. On close it drains: ops in
 * flight are acked, unsent data is flushed, then connections close with 1001.
 */
async function hubPlugin (fastify: FastifyInstance, opts: HubPluginOptions): Promise<void> {
  const { config, instanceId, stats } = fastify.flowConfig
  const logger = fastify.log.child({ component: 'hub' })
  const hub = new Hub({ config, ports: fastify.flowPorts.ports, instanceId, stats, logger, snapshots: opts.snapshots, onOp: opts.onOp })
  fastify.decorate('flowHub', hub)
  fastify.addHook('preClose', async () => {
    await hub.drain()
  })
  fastify.addHook('onClose', async () => {
    hub.close()
  })
}

export default fp(hubPlugin, { name: 'flow-hub', fastify: '5.x', dependencies: ['flow-config', 'flow-ports'] })
