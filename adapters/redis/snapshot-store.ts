import type { PutResult, Snapshot, SnapshotRefusal, SnapshotStore } from '../../ports/snapshot-store.js'
import { ClosedError, RedisReplyError } from '../../lib/errors.js'
import { snapshotStateJson } from '../../lib/snapshot.js'
import { DEFAULT_KEY_PREFIX, redisKeys, type RedisKeys } from './keys.js'
import { SNAPSHOT_GET, SNAPSHOT_PUT, runScript, type RedisCommandClient } from './scripts.js'
import { integer, list, positiveInteger, text, tuple } from './replies.js'

export interface RedisSnapshotStoreOptions {
  /** a connected (or connecting) node-redis client; the store never closes it */
  readonly client: RedisCommandClient
  /** prefix of every key (`FLOW_KEY_PREFIX`, default `flow`) */
  readonly keyPrefix?: string
  /** the op log's history bounds (RedisOperationLog's options): a stored snapshot trims what it covers down to them */
  readonly historyLimit?: number
  readonly historyBytes?: number
  /** the op log's idle TTL: a put extends it on every key of the project, as an append does (default: none) */
  readonly idleTtlMs?: number
}

const REASONS: ReadonlySet<string> = new Set<SnapshotRefusal>(['epoch', 'ahead', 'older'])

/**
 * The shared snapshot store: each project's newest snapshot is a hash,
 * `{prefix}:{project}:snap` (`epoch`, `seq`, `state` as JSON), in the
 * project's hash tag beside its op log, so one script checks a put against
 * the log's epoch and head and stores it (SNAPSHOT_PUT in scripts.ts). The
 * op log's scripts keep it: its TTL is the log's, a new epoch deletes it, and
 * APPEND trims the ops it covers first and keeps the ops after it up to
 * twice the history bounds. A get answers only a snapshot of the log's
 * current epoch.
 *
 * Everything is validated before a command is sent. close() only marks the
 * store closed: the client belongs to the caller.
 */
export class RedisSnapshotStore implements SnapshotStore {
  readonly #client: RedisCommandClient
  readonly #keys: RedisKeys
  readonly #historyLimit: string
  readonly #historyBytes: string
  readonly #ttl: string
  #closed = false

  constructor (options: RedisSnapshotStoreOptions) {
    this.#client = options.client
    this.#keys = redisKeys(options.keyPrefix ?? DEFAULT_KEY_PREFIX)
    this.#historyLimit = String(positiveInteger(options.historyLimit ?? 10_000, 'historyLimit'))
    this.#historyBytes = String(positiveInteger(options.historyBytes ?? 8 * 1024 * 1024, 'historyBytes'))
    this.#ttl = options.idleTtlMs === undefined ? '0' : String(positiveInteger(options.idleTtlMs, 'idleTtlMs'))
  }

  async get (project: string): Promise<Snapshot | null> {
    this.#assertOpen()
    const keys = this.#keys.opLog(project)
    const reply = list(await runScript(this.#client, SNAPSHOT_GET, [keys.meta, keys.snap], []), 'snapshot get')
    if (reply.length === 0) return null
    const [epoch, seq, state] = tuple(reply, 3, 'snapshot get')
    let value: unknown
    try {
      value = JSON.parse(text(state))
    } catch {
      throw new RedisReplyError(`corrupt snapshot of project ${project}`)
    }
    return { project, epoch: text(epoch), seq: integer(seq), state: value }
  }

  async put (snapshot: Snapshot): Promise<PutResult> {
    this.#assertOpen()
    const json = snapshotStateJson(snapshot)
    const keys = this.#keys.opLog(snapshot.project)
    const reply = await runScript(this.#client, SNAPSHOT_PUT, keys.all,
      [snapshot.epoch, String(snapshot.seq), json, this.#historyLimit, this.#historyBytes, this.#ttl])
    const items = list(reply, 'snapshot put')
    if (integer(items[0]) === 1) return { stored: true }
    const reason = text(items[1])
    if (!REASONS.has(reason)) throw new RedisReplyError(`the snapshot put script answered reason ${reason}`)
    return { stored: false, reason: reason as SnapshotRefusal }
  }

  async close (): Promise<void> {
    this.#closed = true
  }

  #assertOpen (): void {
    if (this.#closed) throw new ClosedError('snapshot store')
  }
}

export function createRedisSnapshotStore (options: RedisSnapshotStoreOptions): RedisSnapshotStore {
  return new RedisSnapshotStore(options)
}


