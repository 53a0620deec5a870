import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { FlowConfig } from '../lib/config.js'
import { Stats } from '../lib/stats.js'
import { randomBytes } from 'node:crypto'

/** This instance: its settings, its name and its counters. */
export interface FlowSetup {
  readonly config: FlowConfig
  readonly instanceId: string
  readonly startedAt: number
  readonly stats: Stats
}

declare module 'fastify' {
  interface FastifyInstance {
    /** set by flow-config */
    flowConfig: FlowSetup
  }
}

export interface ConfigPluginOptions {
  readonly config: FlowConfig
}

/** Decorates `fastify.flowConfig` with the resolved configuration, the instance id and the counters. */
async function configPlugin (fastify: FastifyInstance, opts: ConfigPluginOptions): Promise<void> {
  const setup: FlowSetup = {
    config: opts.config,
    instanceId: opts.config.instanceId ?? `flow-${randomBytes(4).toString('hex')}`,
    startedAt: Date.now(),
    stats: new Stats()
  }
  fastify.decorate('flowConfig', setup)
}

export default fp(configPlugin, { name: 'flow-config', fastify: '5.x' })
