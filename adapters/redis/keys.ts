/**
 * Every Redis key and channel name of Flow is built here, and only here, from
 * a validated key prefix and validated ids (STYLE.md, Redis). A bad prefix,
 * project id or instance id throws a TypeError before anything reaches Redis.
 *
 * Layout for prefix `flow`, project `board-1`, instance `web-1`, and `T` the
 * hash tag of board-1's session partition (`#9/16.23` with the default 16
 * partitions, see below):
 *
 * | name                        | type    | holds                                                            |
 * | --------------------------- | ------- | ---------------------------------------------------------------- |
 * | `flow:{board-1}:meta`       | hash    | `epoch` (the log's life), `seq` (its head), `bytes` (kept ops' size) |
 * | `flow:{board-1}:ops`        | stream  | op log: entry id `<seq>-0`, field `op` = JSON                    |
 * | `flow:{board-1}:sizes`      | list    | the size of each kept op, oldest first (its length: ops kept)    |
 * | `flow:{board-1}:ids`        | hash    | op id -> seq, for idempotency: the newest generation             |
 * | `flow:{board-1}:ids:old`    | hash    | op id -> seq: the generation before (replaced whole)             |
 * | `flow:{board-1}:snap`       | hash    | the newest snapshot: `epoch`, `seq`, `state` (JSON)              |
 * | `flow:{board-1}:ch`         | channel | the project's Pub/Sub channel                                    |
 * | `flow:{T}:sessions:board-1` | hash    | session id -> `<instance>\n<member JSON without presence>\n<presence version>\n<presence JSON>` |
 * | `flow:{T}:expiry`           | zset    | session ref `<project>\n<session id>` -> expiry (ms, Redis clock), every session of partition T |
 * | `flow:{T}:owned:web-1`      | set     | refs of the sessions web-1 added in partition T                  |
 * | `flow:{T}:instances`        | zset    | instances with sessions in T -> when each last registered (ms)   |
 * | `flow:instance:web-1:lease` | string  | present while the instance is alive (PX); plain commands only    |
 * | `flow:probe:web-1`          | channel | the health probe's Pub/Sub round trip                            |
 * | `flow:probe`                | stream  | the health probes' appends (capped at ~1,000)                    |
 *
 * The op log's keys use the project id as hash tag (`{...}`), so one
 * project's keys share a cluster slot and one Lua script may touch all of
 * them; with an idle TTL they all carry the same expiry (scripts.ts). Sessions are spread over a fixed number of partitions (16 by
 * default); a project's partition is a stable hash of its id (FNV-1a), and
 * every key of a partition carries the partition's tag, so a script that
 * touches several projects' sessions of one partition stays in one slot.
 * Partition i of N gets the first tag `#<i>/<N>.<j>` (j = 0, 1, ...) whose
 * slot lies in [i * 16384 / N, (i + 1) * 16384 / N): the partitions' slots
 * are spread evenly over the cluster. `#` cannot appear in a project id, so
 * a partition tag is never a project's tag, and N is part of the tag, so
 * stores with different counts never share a partition's keys. The lease is
 * the one global session key: scripts never touch it. Neither the prefix nor
 * an id can contain `{` or `}`, so the tag is always the one intended.
 */
import { INSTANCE_ID, KEY_PREFIX, isProjectId } from '../../lib/ids.js'
import { CLUSTER_SLOTS, keySlot } from './slots.js'

export { INSTANCE_ID, KEY_PREFIX }

/** The default prefix (docs/protocol.md, `FLOW_KEY_PREFIX`). */
export const DEFAULT_KEY_PREFIX = 'flow'

export function isKeyPrefix (value: unknown): value is string {
  return typeof value === 'string' && KEY_PREFIX.test(value)
}

/** Returns `prefix` when it is a valid key prefix; throws a TypeError otherwise. */
export function assertKeyPrefix (prefix: unknown): string {
  if (!isKeyPrefix(prefix)) {
    throw new TypeError(`invalid Redis key prefix ${JSON.stringify(prefix)}: expected 1 to 64 characters of A-Z a-z 0-9 _ . : -`)
  }
  return prefix
}

/** Returns `project` when it is a valid project id; throws a TypeError otherwise. */
export function assertProjectId (project: unknown): string {
  if (!isProjectId(project)) {
    throw new TypeError(`invalid project id ${JSON.stringify(project)}: expected 1 to 128 characters of A-Z a-z 0-9 _ . -`)
  }
  return project
}

/** Returns `id` when it is a valid instance id; throws a TypeError otherwise. */
export function assertInstanceId (id: unknown): string {
  if (typeof id !== 'string' || !INSTANCE_ID.test(id)) {
    throw new TypeError(`invalid instance id ${JSON.stringify(id)}: expected 1 to 128 characters of A-Z a-z 0-9 _ . -`)
  }
  return id
}

/** The op log keys of one project (one cluster slot). */
export interface OpLogKeys {
  /** hash: `epoch`, `seq` (head), `bytes` (the kept ops' size) */
  readonly meta: string
  /** stream: the ops, entry id `<seq>-0` */
  readonly ops: string
  /** list: the size of each kept op, oldest first */
  readonly sizes: string
  /** hash: op id -> seq, the newest generation of remembered ids */
  readonly ids: string
  /** hash: op id -> seq, the generation before `ids` */
  readonly oldIds: string
  /** hash: the project's newest snapshot, `epoch`, `seq`, `state` (JSON) */
  readonly snap: string
  /** every key above, in the order the op log scripts take them as KEYS */
  readonly all: readonly [meta: string, ops: string, sizes: string, ids: string, oldIds: string, snap: string]
}

/** Default number of session partitions (RedisSessionStore's `partitions`). */
export const DEFAULT_SESSION_PARTITIONS = 16
/** At most this many session partitions: each one costs every reap round a script. */
export const MAX_SESSION_PARTITIONS = 1024

/** Returns `n` when it is a valid number of session partitions; throws a RangeError otherwise. */
export function assertPartitionCount (n: unknown): number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1 || n > MAX_SESSION_PARTITIONS) {
    throw new RangeError(`invalid number of session partitions ${String(n)}: expected an integer from 1 to ${MAX_SESSION_PARTITIONS}`)
  }
  return n
}

/** The slots [from, to) that partition `index` of `partitions` should hash to. */
export function partitionSlotRange (index: number, partitions: number): { from: number, to: number } {
  return { from: Math.floor(index * CLUSTER_SLOTS / partitions), to: Math.floor((index + 1) * CLUSTER_SLOTS / partitions) }
}

const tagCache = new Map<number, readonly string[]>()

/**
 * The hash tags of `partitions` partitions: for partition i, the first
 * candidate `#<i>/<partitions>.<j>` (j = 0, 1, ...) whose slot lies in
 * partitionSlotRange(i). About `partitions` candidates are tried per
 * partition; the result is computed once per count. Changing the candidates
 * moves every session key: the tags are part of the stored layout.
 */
export function partitionTags (partitions: number): readonly string[] {
  const n = assertPartitionCount(partitions)
  let tags = tagCache.get(n)
  if (tags === undefined) {
    const found: string[] = []
    for (let i = 0; i < n; i++) {
      const { from, to } = partitionSlotRange(i, n)
      for (let j = 0; ; j++) {
        const tag = `#${i}/${n}.${j}`
        const slot = keySlot(`{${tag}}`)
        if (slot >= from && slot < to) {
          found.push(tag)
          break
        }
      }
    }
    tags = Object.freeze(found)
    tagCache.set(n, tags)
  }
  return tags
}

/** The partition of `project` among `partitions`: FNV-1a (32 bits) of its id, modulo the count. Stable across processes and versions. */
export function partitionOf (project: string, partitions: number): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < project.length; i++) {
    hash ^= project.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash % partitions
}

/** The session keys of one partition: one hash tag, so one cluster slot. */
export interface SessionPartitionKeys {
  readonly index: number
  /** the partition's hash tag, without braces */
  readonly tag: string
  /** zset: session ref -> expiry time (ms, Redis clock) */
  readonly expiry: string
  /** zset: instance id -> Redis time (ms) of its last registration in the partition */
  readonly instances: string
  /** hash: the sessions of `project`; throws a TypeError when the project is not valid or not of this partition */
  sessions (project: string): string
  /** set: the refs of the sessions the instance added in this partition */
  owned (instanceId: string): string
}

/** The session partitions under one prefix. */
export interface SessionKeys {
  readonly partitions: readonly SessionPartitionKeys[]
  /** the partition of `project` (validated) */
  of (project: string): SessionPartitionKeys
}

/** The names under one validated prefix. Every method validates its id and throws a TypeError on a bad one. */
export interface RedisKeys {
  readonly prefix: string
  /** the project id itself, validated */
  project (project: string): string
  /** the instance id itself, validated */
  instanceId (id: string): string
  opLog (project: string): OpLogKeys
  channel (project: string): string
  /** the session partitions, `partitions` of them (default 16); throws a RangeError on a bad count */
  sessionKeys (partitions?: number): SessionKeys
  /** string: present while the instance is alive; global, so never touched by a script */
  instanceLease (id: string): string
  /** the name of a session in the expiry zset and the owned sets: `<project>\n<session id>` */
  sessionRef (project: string, sessionId: string): string
  /** the project and session id of a ref (the project holds no newline, so the first one splits) */
  parseSessionRef (ref: string): { project: string, sessionId: string }
  /** channel: the health probe's round trip through Pub/Sub */
  probeChannel (id: string): string
  /** stream: the health probe's appends (capped) */
  probeStream (): string
}

/** The key builder of `prefix`; throws a TypeError when the prefix is not valid. */
export function redisKeys (prefix: string): RedisKeys {
  const p = assertKeyPrefix(prefix)
  const tagged = (project: string): string => `${p}:{${assertProjectId(project)}}`
  const sessionKeys = (partitions = DEFAULT_SESSION_PARTITIONS): SessionKeys => {
    const tags = partitionTags(partitions)
    const all = tags.map((tag, index): SessionPartitionKeys => {
      const base = `${p}:{${tag}}`
      return {
        index,
        tag,
        expiry: `${base}:expiry`,
        instances: `${base}:instances`,
        sessions: (project) => {
          if (partitionOf(assertProjectId(project), partitions) !== index) {
            throw new TypeError(`project ${project} is not in session partition ${index}`)
          }
          return `${base}:sessions:${project}`
        },
        owned: (id) => `${base}:owned:${assertInstanceId(id)}`
      }
    })
    return {
      partitions: all,
      of: (project) => all[partitionOf(assertProjectId(project), partitions)] as SessionPartitionKeys
    }
  }
  return {
    prefix: p,
    project: assertProjectId,
    instanceId: assertInstanceId,
    opLog: (project) => {
      const base = tagged(project)
      const keys = [`${base}:meta`, `${base}:ops`, `${base}:sizes`, `${base}:ids`, `${base}:ids:old`, `${base}:snap`] as const
      const [meta, ops, sizes, ids, oldIds, snap] = keys
      return { meta, ops, sizes, ids, oldIds, snap, all: keys }
    },
    channel: (project) => `${tagged(project)}:ch`,
    sessionKeys,
    instanceLease: (id) => `${p}:instance:${assertInstanceId(id)}:lease`,
    sessionRef: (project, sessionId) => `${assertProjectId(project)}\n${sessionId}`,
    parseSessionRef: (ref) => {
      const nl = ref.indexOf('\n')
      if (nl === -1) throw new TypeError('not a session ref')
      return { project: ref.slice(0, nl), sessionId: ref.slice(nl + 1) }
    },
    probeChannel: (id) => `${p}:probe:${assertInstanceId(id)}`,
    probeStream: () => `${p}:probe`
  }
}
