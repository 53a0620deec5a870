import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { FlowConfig } from '../lib/config.js'
import type { Hub, HubPorts } from '../lib/hub/hub.js'
import type { CircuitBreaker } from '../lib/breaker.js'
import { Stats } from '../lib/stats.js'
import { randomBytes } from 'node:crypto'

/** `custom`: an adapter the host app passed in */
export type AdapterName = 'memory' | 'redis' | 'custom'

/** What each port runs on, for /health. */
export interface PortReport {
  readonly adapter: AdapterName
  /** circuit state of a Redis adapter's breaker; null on memory */
  readonly circuit: 'closed' | 'open' | 'half-open' | null
  readonly since: number | null
  /** what serves it now: a Redis port serves from memory while its circuit is not closed */
  readonly serving: 'memory' | 'redis' | 'custom'
}

/** Everything the plugin shares, under one decorator: `fastify.flow`. */
export interface Flow {
  readonly config: FlowConfig
  readonly instanceId: string
  readonly startedAt: number
  readonly stats: Stats
  /** set by flow-ports */
  ports: HubPorts
  /** set by flow-ports */
  portReports: () => Readonly<Record<keyof HubPorts, PortReport>>
  /** set by flow-hub */
  hub: Hub
  /** set by flow-ports when a port runs on Redis: the connection's circuit breaker */
  breaker: CircuitBreaker | null
}

declare module 'fastify' {
  interface FastifyInstance {
    flow: Flow
  }
}

export interface ConfigPluginOptions {
  readonly config: FlowConfig
}

/** Decorates `fastify.flow` with the resolved configuration. */
async function configPlugin (fastify: FastifyInstance, opts: ConfigPluginOptions): Promise<void> {
  const flow: Partial<Flow> = {
    config: opts.config,
    instanceId: opts.config.instanceId ?? `flow-${randomBytes(4).toString('hex')}`,
    startedAt: Date.now(),
    stats: new Stats()
  }
  fastify.decorate('flow', flow as Flow)
}

export default fp(configPlugin, { name: 'flow-config', fastify: '5.x' })
