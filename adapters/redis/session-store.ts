import type { ExpiredSession, SessionRef, SessionStore } from '../../ports/session-store.js'
import type { Member, Presence } from '../../lib/types.js'
import { ClosedError, RedisReplyError } from '../../lib/errors.js'
import {
  SESSION_ADD, SESSION_FORGET_INSTANCE, SESSION_LIST, SESSION_REAP, SESSION_REFRESH, SESSION_REMOVE, SESSION_SCAN, SESSION_SET_PRESENCE,
  runScript, type LuaScript, type RedisCommandClient
} from './scripts.js'
import { DEFAULT_SESSION_PARTITIONS, redisKeys, type RedisKeys, type SessionKeys, type SessionPartitionKeys } from './keys.js'
import { integer, list, text, tuple } from './replies.js'

export interface RedisSessionStoreOptions {
  /** a connected node-redis client (anything with its `sendCommand`); never closed by the store */
  readonly client: RedisCommandClient
  readonly keyPrefix: string
  /** this instance; its lease says it is alive */
  readonly instanceId: string
  /** session TTL in ms */
  readonly ttlMs: number
  /** instance lease in ms (default 5,000): a crashed instance's sessions are reaped this long after its last renewal */
  readonly leaseMs?: number
  /**
   * how many partitions the sessions are spread over (default 16, at most
   * 1,024). Every instance sharing the keys must use the same number: it
   * decides where a project's sessions live.
   */
  readonly partitions?: number
}

/** At most this many sessions per script call (refresh, reap), and expired sessions per partition per reap round. */
const BATCH = 1000

/** A session's value, as stored in its project's hash. */
interface StoredSession {
  readonly owner: string
  readonly member: Member
}

/**
 * Sessions in Redis, spread over `partitions` partitions (keys.ts), each of
 * one cluster slot; a project's sessions are a hash in its partition, their
 * expiry times one sorted set per partition. Every command touches one slot,
 * so the store runs on Redis Cluster as well as on a single Redis.
 *
 * Each instance holds a lease key renewed every leaseMs/3 and, per
 * partition, a set of the sessions it added. When the lease lapses (a crash,
 * or a stall longer than the lease), the next reap on any other instance
 * expires that instance's sessions at once instead of waiting out their TTL.
 * An instance that comes back learns from `refresh` which of its sessions
 * are gone. Times are Redis' own (TIME), so instance clocks do not matter.
 *
 * Commands: add, remove, setPresence and list are one script each (add also
 * renews the lease when its timer is late); refresh of sessions in p
 * partitions is a SET of the lease and p scripts (more for over 1,000
 * sessions in a partition), plus one script per other partition where the
 * instance still owns sessions (every partition, the first time); a reap round with nothing expired is one
 * script per partition and one EXISTS per other instance seen.
 */
export class RedisSessionStore implements SessionStore {
  readonly scope = 'cluster'
  readonly #client: RedisCommandClient
  readonly #keys: RedisKeys
  readonly #sessions: SessionKeys
  readonly #instanceId: string
  readonly #ttlMs: number
  readonly #leaseMs: number
  readonly #leaseTimer: NodeJS.Timeout
  /** when the last lease renewal was sent (performance.now()) */
  #leaseSentAt = -Infinity
  /**
   * Partitions where this instance may own sessions, with the owned set's
   * SSCAN cursor. Every partition at first: a previous process with the same
   * instance id may have left owned sets, which the first refresh sweeps.
   */
  readonly #owned = new Map<number, string>()
  #closed = false

  constructor (options: RedisSessionStoreOptions) {
    this.#client = options.client
    this.#keys = redisKeys(options.keyPrefix)
    this.#sessions = this.#keys.sessionKeys(options.partitions ?? DEFAULT_SESSION_PARTITIONS)
    this.#instanceId = this.#keys.instanceId(options.instanceId)
    for (const partition of this.#sessions.partitions) this.#owned.set(partition.index, '0')
    this.#ttlMs = options.ttlMs
    this.#leaseMs = options.leaseMs ?? 5000
    this.#leaseTimer = setInterval(() => { this.renewLease().catch(() => {}) }, this.#leaseInterval())
    this.#leaseTimer.unref()
  }

  #leaseInterval (): number {
    return Math.max(100, Math.floor(this.#leaseMs / 3))
  }

  #assertOpen (): void {
    if (this.#closed) throw new ClosedError('session store')
  }

  async #run (script: LuaScript, keys: string[], args: string[]): Promise<unknown> {
    this.#assertOpen()
    return await runScript(this.#client, script, keys, args)
  }

  async #command (args: string[]): Promise<unknown> {
    this.#assertOpen()
    return await this.#client.sendCommand(args)
  }

  /** Renews this instance's lease: a plain SET with PX (done on a timer, by refresh, and by add when the timer is late; exposed for tests). */
  async renewLease (): Promise<void> {
    this.#leaseSentAt = performance.now()
    await this.#command(['SET', this.#keys.instanceLease(this.#instanceId), '1', 'PX', String(this.#leaseMs)])
  }

  async add (project: string, member: Member, presenceVersion = 0): Promise<void> {
    assertVersion(presenceVersion)
    const partition = this.#sessions.of(project)
    const ref = this.#keys.sessionRef(project, member.sessionId)
    const value = encodeSession(this.#instanceId, member, presenceVersion)
    // Normally the timer renewed the lease moments ago. When it is late (the
    // process stalled), the renewal goes with the add, so the instance is
    // alive again when it registers in the partition.
    const lease = performance.now() - this.#leaseSentAt > this.#leaseInterval() ? this.renewLease() : null
    const added = this.#run(SESSION_ADD,
      [partition.sessions(project), partition.expiry, partition.owned(this.#instanceId), partition.instances],
      [member.sessionId, value, String(this.#ttlMs), ref, this.#instanceId])
    const [, previousOwner] = await Promise.all([lease, added])
    if (!this.#owned.has(partition.index)) this.#owned.set(partition.index, '0')
    if (previousOwner !== null && previousOwner !== undefined) {
      // The session was another instance's: it is not that one's to expire any more.
      await this.#command(['SREM', partition.owned(this.#keys.instanceId(text(previousOwner))), ref])
    }
  }

  async remove (project: string, sessionId: string): Promise<Member | null> {
    const partition = this.#sessions.of(project)
    const value = await this.#run(SESSION_REMOVE,
      [partition.sessions(project), partition.expiry, partition.owned(this.#instanceId)],
      [sessionId, this.#keys.sessionRef(project, sessionId)])
    return value === null || value === undefined ? null : decodeSession(text(value)).member
  }

  async setPresence (project: string, sessionId: string, presence: Presence, version?: number): Promise<boolean> {
    if (version !== undefined) assertVersion(version)
    const partition = this.#sessions.of(project)
    const reply = await this.#run(SESSION_SET_PRESENCE, [partition.sessions(project), partition.expiry],
      [sessionId, this.#keys.sessionRef(project, sessionId), version === undefined ? '' : String(version), JSON.stringify(presence)])
    return integer(reply) === 1
  }

  async list (project: string): Promise<Member[]> {
    const partition = this.#sessions.of(project)
    const values = list(await this.#run(SESSION_LIST, [partition.sessions(project), partition.expiry], [this.#keys.sessionRef(project, '')]))
    return values.map((value) => decodeSession(text(value)).member).sort((a, b) => a.joinedAt - b.joinedAt)
  }

  async refresh (sessions: readonly SessionRef[]): Promise<SessionRef[]> {
    this.#assertOpen()
    const byPartition = new Map<number, SessionRef[]>()
    for (const session of sessions) {
      const index = this.#sessions.of(session.project).index
      const refs = byPartition.get(index)
      if (refs === undefined) byPartition.set(index, [session])
      else refs.push(session)
    }
    // The lease first: an instance that lapsed is alive again before it registers anywhere.
    await this.renewLease()
    // Partitions where this instance still owns sessions are swept too, so their owned sets shrink.
    for (const index of this.#owned.keys()) if (!byPartition.has(index)) byPartition.set(index, [])
    const missing = new Set<SessionRef>()
    await Promise.all([...byPartition].map(async ([index, refs]) => {
      const partition = this.#sessions.partitions[index] as SessionPartitionKeys
      for (let i = 0; i === 0 || i < refs.length; i += BATCH) {
        const chunk = refs.slice(i, i + BATCH)
        for (const n of await this.#refreshChunk(partition, chunk)) missing.add(chunk[n - 1] as SessionRef)
      }
    }))
    return sessions.filter((session) => missing.has(session)).map(({ project, sessionId }) => ({ project, sessionId }))
  }

  /** One SESSION_REFRESH call; resolves the 1-based positions of the sessions that are not there. */
  async #refreshChunk (partition: SessionPartitionKeys, chunk: readonly SessionRef[]): Promise<number[]> {
    const hashes = new Map<string, number>()
    const keys = [partition.expiry, partition.owned(this.#instanceId), partition.instances]
    const args = [String(this.#ttlMs), this.#instanceId, this.#owned.get(partition.index) ?? '0', String(Math.max(100, chunk.length))]
    for (const { project, sessionId } of chunk) {
      const hash = partition.sessions(project)
      let at = hashes.get(hash)
      if (at === undefined) {
        keys.push(hash)
        at = keys.length
        hashes.set(hash, at)
      }
      args.push(String(at), sessionId, this.#keys.sessionRef(project, sessionId))
    }
    const [cursor, owned, missing] = tuple(await this.#run(SESSION_REFRESH, keys, args), 3, 'refresh')
    if (integer(owned) === 0) this.#owned.delete(partition.index)
    else this.#owned.set(partition.index, text(cursor))
    return list(missing).map(integer)
  }

  async reap (): Promise<ExpiredSession[]> {
    this.#assertOpen()
    const scans = await Promise.all(this.#sessions.partitions.map(async (partition) => {
      const [instances, expired] = tuple(await this.#run(SESSION_SCAN, [partition.instances, partition.expiry], [String(BATCH)]), 2, 'scan')
      const registered = new Map<string, string>()
      const flat = list(instances)
      for (let i = 0; i + 1 < flat.length; i += 2) registered.set(text(flat[i]), text(flat[i + 1]))
      registered.delete(this.#instanceId) // this one is evidently alive
      return { partition, registered, expired: list(expired).map(text) }
    }))
    // Each other instance's lease, once per round: plain commands, the leases are global keys.
    const others = [...new Set(scans.flatMap((scan) => [...scan.registered.keys()]))]
    const leases = await Promise.all(others.map(async (id) => integer(await this.#command(['EXISTS', this.#keys.instanceLease(id)]))))
    const dead = new Set(others.filter((_, i) => leases[i] === 0))
    const out: ExpiredSession[] = []
    await Promise.all(scans.map(async ({ partition, registered, expired }) => {
      const refs = new Set(expired)
      for (const [id, registeredAt] of registered) {
        if (!dead.has(id)) continue
        const reply = await this.#run(SESSION_FORGET_INSTANCE, [partition.instances, partition.owned(id), partition.expiry], [id, registeredAt])
        if (reply !== null && reply !== undefined) for (const ref of list(reply)) refs.add(text(ref))
      }
      const all = [...refs]
      for (let i = 0; i < all.length; i += BATCH) out.push(...await this.#reapChunk(partition, all.slice(i, i + BATCH)))
    }))
    return out
  }

  /** One SESSION_REAP call over expired refs of one partition. */
  async #reapChunk (partition: SessionPartitionKeys, refs: readonly string[]): Promise<ExpiredSession[]> {
    const hashes = new Map<string, number>()
    const keys = [partition.expiry]
    const args: string[] = []
    const projects: string[] = []
    for (const ref of refs) {
      const { project, sessionId } = this.#keys.parseSessionRef(ref)
      const hash = partition.sessions(project)
      let at = hashes.get(hash)
      if (at === undefined) {
        keys.push(hash)
        at = keys.length
        hashes.set(hash, at)
      }
      args.push(String(at), sessionId, ref)
      projects.push(project)
    }
    const flat = list(await this.#run(SESSION_REAP, keys, args))
    const out: ExpiredSession[] = []
    for (let i = 0; i + 1 < flat.length; i += 2) {
      out.push({ project: projects[integer(flat[i]) - 1] as string, member: decodeSession(text(flat[i + 1])).member })
    }
    return out
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#leaseTimer)
  }
}

function assertVersion (version: number): void {
  if (!Number.isSafeInteger(version)) throw new TypeError(`presence version must be a safe integer, got ${String(version)}`)
}

/** `<owner>\n<member JSON without presence>\n<version>\n<presence JSON>`: the script replaces the last two parts by string operations. */
function encodeSession (owner: string, member: Member, version: number): string {
  const { presence, ...rest } = member
  return `${owner}\n${JSON.stringify(rest)}\n${String(version)}\n${JSON.stringify(presence)}`
}

function decodeSession (value: string): StoredSession {
  const a = value.indexOf('\n')
  const b = value.indexOf('\n', a + 1)
  const c = value.indexOf('\n', b + 1)
  if (a === -1 || b === -1 || c === -1) throw new RedisReplyError('a session value of an unknown shape')
  const { sessionId, userId, joinedAt, ...rest } = JSON.parse(value.slice(a + 1, b)) as Omit<Member, 'presence'>
  const presence = JSON.parse(value.slice(c + 1)) as Presence
  return { owner: value.slice(0, a), member: { sessionId, userId, presence, joinedAt, ...rest } }
}





export function createRedisSessionStore (options: RedisSessionStoreOptions): RedisSessionStore {
  return new RedisSessionStore(options)
}
