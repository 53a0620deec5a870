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

/** An op of a project's log: its seq and id. */
export interface LoggedOp {
  readonly seq: number
  readonly id: string
}

/** A project's log as one instance serves it. */
export interface Log {
  readonly epoch: string
  readonly head: number
  readonly ops: readonly LoggedOp[]
}

/** The whole log of a project as one instance serves it (GET .../ops), page by page; throws if the epoch changes meanwhile. */
export async function readLog (s: TestServer, project: string): Promise<Log> {
  const ops: LoggedOp[] = []
  let epoch: string | undefined
  let head = 0
  for (let since = 0; ;) {
    const res = await s.app.inject({ url: `/projects/${project}/ops?since=${since}&limit=1000` })
    const page = res.json<{ epoch: string, seq: number, ops: LoggedOp[], reset: boolean }>()
    if (res.statusCode !== 200 || page.reset) throw new Error(`history of ${project} from ${since}: ${res.statusCode} ${res.body.slice(0, 200)}`)
    if (epoch !== undefined && page.epoch !== epoch) throw new Error(`the epoch changed while paging: ${epoch} -> ${page.epoch}`)
    epoch = page.epoch
    head = page.seq
    ops.push(...page.ops.map((o) => ({ seq: o.seq, id: o.id })))
    if (page.ops.length === 0) break
    since = (page.ops.at(-1) as LoggedOp).seq
    if (since >= head) break
  }
  if (epoch === undefined) throw new Error(`no history page of ${project}`)
  return { epoch, head, ops }
}
