import type { Test } from 'tap'
import type { Member, OpMessage } from '../../lib/protocol/wire.js'
import type { Frame, TestClient } from './client.js'
import type { TestServer } from './server.js'

/** Integers from `from` to `to`, both included. */
export function range (from: number, to: number): number[] {
  const out: number[] = []
  for (let i = from; i <= to; i++) out.push(i)
  return out
}

/** The `op` frames a client received for a project, in arrival order. */
export function opsOf (client: TestClient, project: string): OpMessage[] {
  return client.received.filter((f) => f.type === 'op' && f.project === project) as unknown as OpMessage[]
}

/** Seqs of the `op` frames a client received for a project, in arrival order. */
export function seqsOf (client: TestClient, project: string): number[] {
  return opsOf(client, project).map((op) => op.seq)
}

/** The members carried by a `joined` frame or a members response. */
export function membersOf (frame: Frame | { members: unknown }): readonly Member[] {
  return frame.members as readonly Member[]
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

/** `GET /projects/:project/members`. */
export async function fetchMembers (server: TestServer, project: string): Promise<Member[]> {
  const res = await fetch(`${server.http}/projects/${encodeURIComponent(project)}/members`)
  if (res.status !== 200) throw new Error(`GET members answered ${res.status}: ${await res.text()}`)
  const body = await res.json() as { project: string, members: Member[] }
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
