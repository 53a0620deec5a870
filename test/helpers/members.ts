/**
 * Who a test believes is in a project, and who each side says is: a
 * client's view (its last `joined` list, then the `member` and `presence`
 * events after it, applied by sessionId, so a repeated join or an unknown
 * leave changes nothing), an instance's `GET /projects/:project/members`,
 * and Flow instances sharing one Redis, in this process or as real
 * processes (`node dist/server.js`) a test can stall, kill and restart.
 */
import type { Test } from 'tap'
import type { Member } from '../../lib/protocol/wire.js'
import type { FlowOptions } from '../../app.js'
import type { Frame, TestClient } from './client.js'
import { spawnNode, type ChildHandle } from './process.js'
import { startServer } from './server.js'
import { waitFor } from './wait.js'

/** The index of the client's last `joined` frame for `project`, or -1. */
function lastJoined (frames: readonly Frame[], project: string): number {
  for (let i = frames.length - 1; i >= 0; i--) {
    const f = frames[i] as Frame
    if (f.type === 'joined' && f.project === project) return i
  }
  return -1
}

/**
 * A client's view of a project: the members of its last `joined`, then every
 * `member` join (added or replaced) and leave (removed, if known) and
 * `presence` (of a known member) received after it, by sessionId. Empty
 * before the first `joined`.
 */
export function viewOf (client: TestClient, project: string): Map<string, Member> {
  const frames = client.received
  const view = new Map<string, Member>()
  const start = lastJoined(frames, project)
  if (start === -1) return view
  for (const m of (frames[start] as Frame).members as Member[]) view.set(m.sessionId, m)
  for (let i = start + 1; i < frames.length; i++) {
    const f = frames[i] as Frame
    if (f.project !== project) continue
    if (f.type === 'member') {
      const m = f.member as Member
      if (f.event === 'join') view.set(m.sessionId, m)
      else view.delete(m.sessionId)
    } else if (f.type === 'presence') {
      const known = view.get(f.sessionId as string)
      if (known !== undefined) view.set(known.sessionId, { ...known, presence: f.state as Member['presence'] })
    }
  }
  return view
}

/** Sorted session ids. */
export function idsOf (members: Iterable<Member> | Map<string, Member>): string[] {
  const list = members instanceof Map ? [...members.keys()] : [...members].map((m) => m.sessionId)
  return list.sort()
}

/** The session ids of a client's view of a project, sorted. */
export function viewIds (client: TestClient, project: string): string[] {
  return idsOf(viewOf(client, project))
}

/** The `member` events (join or leave) a client received about one session of a project, in order. */
export function eventsAbout (client: TestClient, project: string, sessionId: string): Array<'join' | 'leave'> {
  return client.received
    .filter((f) => f.type === 'member' && f.project === project && (f.member as Member).sessionId === sessionId)
    .map((f) => f.event as 'join' | 'leave')
}

export function sameIds (a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i])
}

/**
 * `GET /projects/:project/members` of the instance at `http`; rejects on a
 * status other than 200 or no answer within `timeoutMs` (a stalled instance).
 */
export async function listMembers (http: string, project: string, timeoutMs = 2000): Promise<Member[]> {
  const res = await fetch(`${http}/projects/${encodeURIComponent(project)}/members`, { signal: AbortSignal.timeout(timeoutMs) })
  if (res.status !== 200) throw new Error(`GET ${project} members answered ${res.status}: ${await res.text()}`)
  return (await res.json() as { members: Member[] }).members
}

/** The sorted session ids `GET /members` lists, or the error it failed with, as text. */
export async function listedIds (http: string, project: string): Promise<string[] | string> {
  try {
    return idsOf(await listMembers(http, project))
  } catch (err) {
    return `error: ${String(err)}`
  }
}

/** How long a Flow process may take to listen (it is restarted while other processes run). */
const BOOT_TIMEOUT_MS = 30_000

/** One Flow instance as the membership tests see it. */
export interface Instance {
  readonly name: string
  readonly http: string
  readonly ws: string
  /** the process, for a real process; undefined in this process */
  readonly proc?: ChildHandle
  /** Stops it: SIGKILL for a process, close for one in this process. */
  kill (): Promise<void>
}

/** What every instance of a membership test shares: one Redis, one key prefix, the timings. */
export interface ClusterSettings {
  readonly redisUrl: string
  readonly keyPrefix: string
  readonly sessionTtlSeconds: number
  readonly instanceLeaseMs: number
}

/** `GET /health` of the instance at `http`: its status, or the error. */
export async function healthOf (http: string): Promise<string> {
  try {
    const res = await fetch(`${http}/health`, { signal: AbortSignal.timeout(2000) })
    return ((await res.json()) as { status: string }).status
  } catch (err) {
    return `error: ${String(err)}`
  }
}

/** Waits until `/health` says ok on every instance. */
export async function waitHealthy (instances: readonly Instance[], timeoutMs: number): Promise<void> {
  await waitFor(async () => (await Promise.all(instances.map(async (i) => await healthOf(i.http)))).every((s) => s === 'ok'),
    { what: `/health ok on ${instances.map((i) => i.name).join(', ')}`, timeoutMs, intervalMs: 50 })
}

/**
 * A real Flow process (`node dist/server.js`, built by `ensureBuilt`) with all
 * three Redis flags on; `env` adds or overrides variables. Killed at the end
 * of `t`.
 */
export async function startProcessInstance (t: Test, name: string, settings: ClusterSettings, env: Record<string, string> = {}): Promise<Instance> {
  const proc = spawnNode(t, ['dist/server.js'], {
    PORT: '0',
    HOST: '127.0.0.1',
    REDIS_URL: settings.redisUrl,
    FLOW_KEY_PREFIX: settings.keyPrefix,
    FLOW_INSTANCE_ID: name,
    USE_REDIS_COLLABORATION: 'true',
    USE_REDIS_WEBSOCKETS: 'true',
    USE_REDIS_EVENT_ORDERING: 'true',
    SESSION_TTL_SECONDS: String(settings.sessionTtlSeconds),
    FLOW_INSTANCE_LEASE_MS: String(settings.instanceLeaseMs),
    // A stall or a loaded machine must not make the instance answer 503: the checks read /members.
    FLOW_MAX_EVENT_LOOP_DELAY_MS: '0',
    FLOW_HTTP_RATE_LIMIT: '100000',
    LOG_LEVEL: 'info',
    ...env
  })
  // A boot takes a second or two; more on a loaded machine (startEntry allows 10 s).
  const address = (await proc.waitFor(/Server listening at http:\/\/([^"\s]+)/, { timeoutMs: BOOT_TIMEOUT_MS }))[1] as string
  return {
    name,
    http: `http://${address}`,
    ws: `ws://${address}/ws`,
    proc,
    kill: async () => {
      if (!proc.running) return
      proc.child.kill('SIGCONT')
      proc.kill('SIGKILL')
      await proc.exited
    }
  }
}

/** A Flow instance in this process, all three Redis flags on; `options` adds or overrides. Closed at the end of `t`. */
export async function startLocalInstance (t: Test, name: string, settings: ClusterSettings, options: FlowOptions = {}): Promise<Instance> {
  const server = await startServer(t, {
    redisUrl: settings.redisUrl,
    keyPrefix: settings.keyPrefix,
    instanceId: name,
    useRedisCollaboration: true,
    useRedisWebsockets: true,
    useRedisEventOrdering: true,
    sessionTtlSeconds: settings.sessionTtlSeconds,
    instanceLeaseMs: settings.instanceLeaseMs,
    httpRateLimit: 100_000,
    ...options
  })
  return { name, http: server.http, ws: server.ws, kill: server.close }
}

/** Freezes a process instance (SIGSTOP): its sockets stay open, nothing is answered. */
export function stall (instance: Instance): void {
  if (instance.proc === undefined) throw new Error(`${instance.name} is not a process`)
  instance.proc.child.kill('SIGSTOP')
}

/** Thaws a frozen process instance (SIGCONT). */
export function thaw (instance: Instance): void {
  if (instance.proc === undefined) throw new Error(`${instance.name} is not a process`)
  instance.proc.child.kill('SIGCONT')
}
