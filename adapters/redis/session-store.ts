import type { ExpiredSession, SessionRef, SessionStore } from '../../ports/session-store.js'
import type { Member, Presence } from '../../lib/types.js'
import type { RedisClient } from './client.js'
import { SESSION_ADD, SESSION_LEASE, SESSION_LIST, SESSION_REAP, SESSION_REFRESH, SESSION_REMOVE, SESSION_SET_PRESENCE, runScript, type LuaScript } from './scripts.js'
import { redisKeys, type RedisKeys } from './keys.js'
import { ClosedError } from '../../lib/errors.js'

export interface RedisSessionStoreOptions {
  /** a connected node-redis client; never closed by the store */
  readonly client: RedisClient
  readonly keyPrefix: string
  /** this instance; its lease says it is alive */
  readonly instanceId: string
  /** session TTL in ms */
  readonly ttlMs: number
  /** instance lease in ms (default 5,000): a crashed instance's sessions are reaped this long after its last renewal */
  readonly leaseMs?: number
}

const REAP_BATCH = 1000

/**
 * Sessions in Redis. A project's sessions are a hash
 * `{prefix}:sessions:{project}`; their expiry times are one sorted set, so
 * `reap` finds every expired session in one script. Each instance holds a
 * lease key renewed every leaseMs/3; when it lapses (a crash), the next reap
 * on any instance expires that instance's sessions at once instead of
 * waiting out their TTL. Times are Redis' own (TIME), so instance clocks do
 * not matter.
 */
export class RedisSessionStore implements SessionStore {
  readonly #client: RedisClient
  readonly #keys: RedisKeys
  readonly #instanceId: string
  readonly #ttlMs: number
  readonly #leaseMs: number
  readonly #leaseTimer: NodeJS.Timeout
  #closed = false

  constructor (options: RedisSessionStoreOptions) {
    this.#client = options.client
    this.#keys = redisKeys(options.keyPrefix)
    this.#instanceId = this.#keys.instanceId(options.instanceId)
    this.#ttlMs = options.ttlMs
    this.#leaseMs = options.leaseMs ?? 5000
    this.#leaseTimer = setInterval(() => { this.renewLease().catch(() => {}) }, Math.max(100, Math.floor(this.#leaseMs / 3)))
    this.#leaseTimer.unref()
  }

  async #run (script: LuaScript, keys: string[], args: string[]): Promise<unknown> {
    if (this.#closed) throw new ClosedError('session store')
    return await runScript(this.#client, script, keys, args)
  }

  #ref (project: string, sessionId: string): string {
    return `${project}\n${sessionId}`
  }

  /** Renews this instance's lease (done on a timer; exposed for tests). */
  async renewLease (): Promise<void> {
    await this.#run(SESSION_LEASE, [this.#keys.instanceLease(this.#instanceId), this.#keys.instances()], [this.#instanceId, String(this.#leaseMs)])
  }

  async add (project: string, member: Member): Promise<void> {
    const k = this.#keys
    await this.renewLease()
    await this.#run(SESSION_ADD,
      [k.sessions(project), k.sessionExpiry(), k.instanceSessions(this.#instanceId), k.instances()],
      [member.sessionId, `${this.#instanceId}\n${JSON.stringify(member)}`, String(this.#ttlMs), this.#ref(project, member.sessionId), this.#instanceId])
  }

  async remove (project: string, sessionId: string): Promise<Member | null> {
    const k = this.#keys
    const value = await this.#run(SESSION_REMOVE, [k.sessions(project), k.sessionExpiry(), k.instanceSessions(this.#instanceId)], [sessionId, this.#ref(project, sessionId)])
    return typeof value === 'string' ? parseValue(value) : null
  }

  async setPresence (project: string, sessionId: string, presence: Presence): Promise<boolean> {
    const k = this.#keys
    for (let attempt = 0; attempt < 3; attempt++) {
      const old = await this.#client.hGet(k.sessions(project), sessionId)
      if (this.#closed) throw new ClosedError('session store')
      if (old === null || old === undefined) return false
      const nl = old.indexOf('\n')
      const member = parseValue(old)
      const value = `${old.slice(0, nl)}\n${JSON.stringify({ ...member, presence })}`
      const result = await this.#run(SESSION_SET_PRESENCE, [k.sessions(project), k.sessionExpiry()], [sessionId, old, value, this.#ref(project, sessionId)])
      if (result === 1) return true
      if (result === 0) return false
    }
    return false
  }

  async list (project: string): Promise<Member[]> {
    const values = await this.#run(SESSION_LIST, [this.#keys.sessions(project), this.#keys.sessionExpiry()], [`${project}\n`]) as string[]
    return values.map(parseValue).sort((a, b) => a.joinedAt - b.joinedAt)
  }

  async refresh (sessions: readonly SessionRef[]): Promise<void> {
    if (sessions.length === 0) return
    for (let i = 0; i < sessions.length; i += 1000) {
      const refs = sessions.slice(i, i + 1000).map((s) => this.#ref(this.#keys.project(s.project), s.sessionId))
      await this.#run(SESSION_REFRESH, [this.#keys.sessionExpiry()], [String(this.#ttlMs), ...refs])
    }
  }

  async reap (): Promise<ExpiredSession[]> {
    const flat = await this.#run(SESSION_REAP, [this.#keys.sessionExpiry(), this.#keys.instances()], [this.#keys.prefix, String(REAP_BATCH)]) as string[]
    const out: ExpiredSession[] = []
    for (let i = 0; i + 1 < flat.length; i += 2) {
      out.push({ project: flat[i] as string, member: parseValue(flat[i + 1] as string) })
    }
    return out
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#leaseTimer)
  }
}

function parseValue (value: string): Member {
  return JSON.parse(value.slice(value.indexOf('\n') + 1)) as Member
}

export function createRedisSessionStore (options: RedisSessionStoreOptions): RedisSessionStore {
  return new RedisSessionStore(options)
}
