/**
 * Every Redis key and channel name of Flow is built here, and only here, from
 * a validated key prefix and validated ids (STYLE.md, Redis). A bad prefix,
 * project id or instance id throws a TypeError before anything reaches Redis.
 *
 * Layout for prefix `flow`, project `board-1`, instance `web-1`:
 *
 * | name                           | type    | holds                                            |
 * | ------------------------------ | ------- | ------------------------------------------------ |
 * | `flow:{board-1}:ops`           | stream  | op log: entry id `<seq>-0`, field `op` = JSON     |
 * | `flow:{board-1}:meta`          | hash    | `epoch` (the log's life), `seq` (its head)        |
 * | `flow:{board-1}:ids`           | zset    | op id -> seq, for idempotency, bounded retention  |
 * | `flow:{board-1}:ch`            | channel | the project's Pub/Sub channel                     |
 * | `flow:sessions:{board-1}`      | hash    | the project's sessions                            |
 * | `flow:session-expiry`          | zset    | every session's expiry time                       |
 * | `flow:instances`               | set     | instance ids that may own sessions                |
 * | `flow:instance:web-1:lease`    | string  | present while the instance is alive (PX)          |
 * | `flow:instance:web-1:sessions` | set     | the instance's sessions                           |
 * | `flow:probe:web-1`             | channel | the health probe's Pub/Sub round trip             |
 * | `flow:probe`                   | stream  | the health probes' appends (capped at ~1,000)     |
 *
 * The project id is the hash tag (`{...}`), so one project's keys share a
 * cluster slot and one Lua script may touch all of them. Neither the prefix
 * nor an id can contain `{` or `}`, so the tag is always the project.
 */
import { INSTANCE_ID, KEY_PREFIX, isProjectId } from '../../lib/ids.js'

export { INSTANCE_ID, KEY_PREFIX }

/** The default prefix (PROTOCOL.md, `FLOW_KEY_PREFIX`). */
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
  /** stream: the ops */
  readonly ops: string
  /** hash: `epoch`, `seq` */
  readonly meta: string
  /** sorted set: op id -> seq */
  readonly ids: string
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
  sessions (project: string): string
  sessionExpiry (): string
  instances (): string
  instanceLease (id: string): string
  instanceSessions (id: string): string
  /** channel: the health probe's round trip through Pub/Sub */
  probeChannel (id: string): string
  /** stream: the health probe's appends (capped) */
  probeStream (): string
}

/** The key builder of `prefix`; throws a TypeError when the prefix is not valid. */
export function redisKeys (prefix: string): RedisKeys {
  const p = assertKeyPrefix(prefix)
  const tagged = (project: string): string => `${p}:{${assertProjectId(project)}}`
  return {
    prefix: p,
    project: assertProjectId,
    instanceId: assertInstanceId,
    opLog: (project) => {
      const base = tagged(project)
      return { ops: `${base}:ops`, meta: `${base}:meta`, ids: `${base}:ids` }
    },
    channel: (project) => `${tagged(project)}:ch`,
    sessions: (project) => `${p}:sessions:{${assertProjectId(project)}}`,
    sessionExpiry: () => `${p}:session-expiry`,
    instances: () => `${p}:instances`,
    instanceLease: (id) => `${p}:instance:${assertInstanceId(id)}:lease`,
    instanceSessions: (id) => `${p}:instance:${assertInstanceId(id)}:sessions`,
    probeChannel: (id) => `${p}:probe:${assertInstanceId(id)}`,
    probeStream: () => `${p}:probe`
  }
}
