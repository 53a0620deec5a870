import type { Test } from 'tap'
import { startServer, type TestServer } from './server.js'
import { uniquePrefix } from './redis.js'
import type { FlowOptions } from '../../app.js'

export interface Cluster {
  readonly instances: TestServer[]
  readonly keyPrefix: string
}

/**
 * Starts `count` Flow instances in this process, sharing the Redis at `url`
 * under a unique key prefix, all three ports on Redis unless `options` says
 * otherwise. Each instance has its own Redis connections, as separate
 * processes would.
 */
export async function startCluster (t: Test, url: string, count: number, options: FlowOptions = {}): Promise<Cluster> {
  const keyPrefix = uniquePrefix()
  const instances: TestServer[] = []
  for (let i = 0; i < count; i++) {
    instances.push(await startServer(t, {
      redisUrl: url,
      keyPrefix,
      instanceId: `i${i}`,
      useRedisCollaboration: true,
      useRedisWebsockets: true,
      useRedisEventOrdering: true,
      ...options
    }))
  }
  return { instances, keyPrefix }
}
