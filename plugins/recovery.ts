import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'

/**
 * Tells the hub what the Redis connection's health and the failover
 * decorators do (adapters/failover/ has the outage path itself), then starts
 * the health checks:
 *
 * - the ports fell back (a new epoch): the hub re-reads every project's
 *   position and resets its members;
 * - the circuit closed after the re-sync: the hub announces the leaves the
 *   other instances could not hear, writes its sessions back and resyncs;
 * - the subscriber reconnected while the circuit stayed closed: the hub
 *   fills from the op log what Pub/Sub dropped, and from the session store
 *   the member events it dropped.
 */
async function recoveryPlugin (fastify: FastifyInstance): Promise<void> {
  const { health, failover } = fastify.flowPorts
  if (health === null || failover === null) return
  const { stats } = fastify.flowConfig
  const hub = fastify.flowHub
  const log = fastify.log.child({ component: 'recovery' })
  failover.on('fallback', (reason) => {
    stats.fallbacks++
    log.warn({ err: reason }, 'Redis is away: the Redis ports serve from memory (degraded)')
    void hub.resyncAll()
  })
  failover.on('recovered', (left, discardedSnapshots) => {
    stats.recoveries++
    log.info({ buffered: failover.buffered }, 'Redis is back: the ports re-synced and serve from Redis again')
    if (discardedSnapshots > 0) {
      log.warn({ discardedSnapshots }, 'snapshots taken during the outage were discarded: their seqs name no position of the shared log')
    }
    void hub.recover(left)
  })
  health.breaker.on('probe-failed', (reason) => { log.debug({ err: reason }, 'Redis probe failed; still degraded') })
  health.on('resubscribed', () => {
    void hub.resyncAll()
    void hub.reconcileMembers()
  })
  health.start()
}

export default fp(recoveryPlugin, { name: 'flow-recovery', fastify: '5.x', dependencies: ['flow-config', 'flow-ports', 'flow-hub'] })
