import type { Test } from 'tap'
import type { Frame, TestClient } from './client.js'
import type { TestServer } from './server.js'

/** PROTOCOL.md `member`. */
export interface MemberView {
  readonly sessionId: string
  readonly userId: string
  readonly presence: Record<string, unknown>
  readonly joinedAt: number
}

/** PROTOCOL.md server `op` frame. */
export interface OpView {
  readonly type: 'op'
  readonly project: string
  readonly seq: number
  readonly id: string
  readonly userId: string
  readonly sessionId: string | null
  readonly data: unknown
  readonly ts: number
}

/** Integers from `from` to `to`, both included. */
export function range (from: number, to: number): number[] {
  const out: number[] = []
  for (let i = from; i <= to; i++) out.push(i)
  return out
}

/** The `op` frames a client received for a project, in arrival order. */
export function opsOf (client: TestClient, project: string): OpView[] {
  return client.received.filter((f) => f.type === 'op' && f.project === project) as unknown as OpView[]
}

/** Seqs of the `op` frames a client received for a project, in arrival order. */
export function seqsOf (client: TestClient, project: string): number[] {
  return opsOf(client, project).map((op) => op.seq)
}

/** The members carried by a `joined` frame or a members response. */
export function membersOf (frame: Frame | { members: unknown }): MemberView[] {
  return frame.members as MemberView[]
}

/**
 * Resolves with the first truthy value of `check`, evaluated now and again
 * on every frame the client receives (and when it closes); rejects after
 * `timeoutMs` saying what was awaited. Event-driven: no sleeping.
 */
export async function until<T> (client: TestClient, check: () => T | undefined | null | false, what: string, timeoutMs = 5000): Promise<T> {
  // Many waits may watch one socket at a time.
  client.socket.setMaxListeners(0)
  const first = check()
  if (first !== undefined && first !== null && first !== false) return first
  return await new Promise<T>((resolve, reject) => {
    const onEvent = (): void => {
      const value = check()
      if (value === undefined || value === null || value === false) return
      done()
      resolve(value)
    }
    const timer = setTimeout(() => {
      done()
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last frames ${JSON.stringify(client.received.slice(-3))}`))
    }, timeoutMs)
    const done = (): void => {
      clearTimeout(timer)
      client.socket.off('message', onEvent)
      client.socket.off('close', onEvent)
    }
    client.socket.on('message', onEvent)
    client.socket.on('close', onEvent)
  })
}

/** Resolves when `count` frames matching `match` have arrived; returns them in order. */
export async function collect (client: TestClient, match: (f: Frame) => boolean, count: number, what: string, timeoutMs = 5000): Promise<Frame[]> {
  return await until(client, () => {
    const found = client.received.filter(match)
    return found.length >= count ? found : undefined
  }, `${count} ${what}`, timeoutMs)
}

/** Rejects when the promise does not settle within `ms`. */
export async function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new Error(`${what}: not within ${ms} ms`)) }, ms)
  })
  try {
    return await Promise.race([promise, deadline])
  } finally {
    clearTimeout(timer)
  }
}

/** Polls an async check (an HTTP read, say) until it holds or the deadline passes. */
export async function poll<T> (check: () => Promise<T | undefined>, what: string, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms polling for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** `GET /projects/:project/members`. */
export async function fetchMembers (server: TestServer, project: string): Promise<MemberView[]> {
  const res = await fetch(`${server.http}/projects/${encodeURIComponent(project)}/members`)
  if (res.status !== 200) throw new Error(`GET members answered ${res.status}: ${await res.text()}`)
  const body = await res.json() as { project: string, members: MemberView[] }
  if (body.project !== project) throw new Error(`GET members answered for ${body.project}`)
  return body.members
}

/** `GET /projects/:project/ops?since=N`: the ops' ids and seqs. */
export async function fetchOps (server: TestServer, project: string, since = 0): Promise<Array<{ seq: number, id: string, data: unknown }>> {
  const res = await fetch(`${server.http}/projects/${encodeURIComponent(project)}/ops?since=${since}&limit=500`)
  if (res.status !== 200) throw new Error(`GET ops answered ${res.status}: ${await res.text()}`)
  const body = await res.json() as { ops: Array<{ seq: number, id: string, data: unknown }> }
  return body.ops
}

/** Round-trips a `ping`: the connection still reads and answers frames. */
export async function assertAlive (t: Test, client: TestClient, note = 'the connection still answers a ping'): Promise<void> {
  const pong = await client.request({ type: 'ping' })
  t.equal(pong.type, 'pong', note)
}

/**
 * Sends a raw frame (text, or an object serialised as JSON) and resolves the
 * next `error` frame; then checks that the connection still answers a ping.
 */
export async function expectError (t: Test, client: TestClient, frame: string | object, code: string, note: string): Promise<Frame> {
  const error = client.next('error')
  client.send(frame)
  const got = await error
  t.equal(got.code, code, `${note}: ${code}`)
  t.type(got.message, 'string', `${note}: the error has a message`)
  await assertAlive(t, client, `${note}: the connection still works after the error`)
  return got
}
