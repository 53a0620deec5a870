/**
 * `flow-realtime/react`: a React hook over the Flow client. A component
 * joins a project for as long as it is mounted and renders the project's
 * live state: the connection's status, the members, and the project's ops
 * folded in seq order by the app's reducer. It leaves on unmount and when
 * `project` (or `client`) changes, then joins the new one.
 *
 * Its only runtime import is `react` (React 18 or 19); it takes the client
 * as an argument and imports the client's types only, so the core client
 * never loads React. Docs: docs/client.md, "React".
 */
import { useCallback, useEffect, useRef, useState } from 'react'
import type { FlowClient, ProjectHandle } from './index.js'
import type { Ack, Member, PendingOp, Presence, ResetInfo, SendOptions, SnapshotInfo, Status } from './types.js'

/**
 * One step of the project's log as the reducer gets it: another session's op
 * (an `op` event), or one of this session's, acknowledged (an `ack` event
 * that is not stale). Entries come in seq order, each seq once.
 */
export interface FlowEntry {
  readonly seq: number
  /** the op's id (its idempotency key) */
  readonly id: string
  readonly data: unknown
  /** the author; for an own op, this session's user id as the member list shows it ('' if not listed) */
  readonly userId: string
  /** true for an op this session sent */
  readonly own: boolean
}

/** Folds one entry into the state. Pure: it must not change `state`, only return the next one. */
export type FlowReducer<S> = (state: S, entry: FlowEntry) => S

export interface UseFlowProjectOptions<S> {
  /** folds each entry of the log into the state (default: the state is the list of entries) */
  readonly reducer?: FlowReducer<S>
  /** the state before the first entry (after `since`, when given); default `[]` */
  readonly initialState?: S
  /** the presence other members see at the join; change it later with `setPresence` */
  readonly presence?: Presence
  /** the last seq `initialState` already holds (default 0: the whole kept history is folded) */
  readonly since?: number
  /** the epoch `since` belongs to */
  readonly epoch?: string
  /**
   * Called on a `reset` of the project: return (or resolve) the project's
   * state up to `reset.seq`, loaded from your own store or the HTTP API;
   * live entries wait until it settles, then are folded into it. Without
   * it, the state starts again from `initialState`: right when the log
   * itself started again (a server on memory adapters restarted), wrong when
   * its history was trimmed. If it throws, the state is kept and the error
   * is the hook's `error`.
   */
  readonly onReset?: (reset: ResetInfo) => S | Promise<S>
  /**
   * (protocol 1.2) Take the project's state from the server: the join asks
   * for a snapshot (the server's host reducer, or one a client uploaded),
   * `state` starts from it and the entries after it are folded into it; a
   * reconnect beyond the history gets a snapshot again instead of a reset.
   * Read at the join. The server's state must be an `S` (its reducer folds
   * ops as `reducer` folds entries), or give `onSnapshot`.
   */
  readonly snapshot?: boolean
  /**
   * Turns a snapshot's state into `S` (default: the state as it is). Like
   * `onReset`: live entries wait until it settles; if it throws, the state
   * is kept and the error is the hook's `error`.
   */
  readonly onSnapshot?: (state: unknown, info: SnapshotInfo) => S | Promise<S>
}

/** What `useFlowProject` returns: a snapshot, new at every change, and two stable functions. */
export interface FlowProject<S> {
  /** the client's connection: 'connecting' | 'open' | 'reconnecting' | 'closed' */
  readonly status: Status
  /** the project's first `joined` has come (members, seq and epoch are the server's) */
  readonly ready: boolean
  /** the members, this session included */
  readonly members: readonly Member[]
  /** the log folded by the reducer, in seq order */
  readonly state: S
  /** the last seq folded into `state` (or the last reset's or snapshot's) */
  readonly seq: number
  readonly epoch: string | undefined
  /** this session's id on the current connection */
  readonly sessionId: string | undefined
  /** own ops sent and not acknowledged yet, in the order sent: an optimistic UI draws them over `state` */
  readonly pending: readonly PendingOp[]
  /** the last error about this project: a refused join or op, a dropped presence frame, an `onReset` or `onSnapshot` that threw */
  readonly error: Error | undefined
  /**
   * Sends an op to the project the hook is on now; the same promise as
   * `ProjectHandle.send`. Its entry reaches `state` when acknowledged. A
   * refused op also sets `error`; sends pending at unmount reject with `left`.
   */
  send (data: unknown, options?: SendOptions): Promise<Ack>
  /** Sets this session's presence (throttled by the client; the last state is always sent). */
  setPresence (state: Presence): void
}

interface Snapshot<S> extends Omit<FlowProject<S>, 'send' | 'setPresence'> {
  readonly client: FlowClient
  readonly project: string
}

/** The default reducer: the list of entries. */
function appendEntry (list: unknown, entry: FlowEntry): readonly FlowEntry[] {
  return [...(list as readonly FlowEntry[]), entry]
}

function initialState<S> (options: UseFlowProjectOptions<S>): S {
  return (options.initialState ?? []) as S
}

function asError (err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err))
}

/** The snapshot before the join (or after a join that threw). */
function fresh<S> (client: FlowClient, project: string, options: UseFlowProjectOptions<S>, error?: Error): Snapshot<S> {
  return {
    client,
    project,
    status: client.status,
    ready: false,
    members: [],
    state: initialState(options),
    seq: options.since ?? 0,
    epoch: options.epoch,
    sessionId: undefined,
    pending: [],
    error
  }
}

/**
 * Joins `project` on `client` while the component is mounted and returns
 * its live state. The hook neither connects nor closes the client: create
 * one client for the app, outside render, and `connect()` it.
 *
 * A client joins a project once: two mounted components on the same client
 * and project get `error` on the second (share the first one's result
 * through props or context instead). `reducer`, `onReset`, `onSnapshot` and the options
 * are read when needed (the latest render's); `presence`, `since`, `epoch`,
 * `snapshot` and `initialState` are taken at the join.
 */
export function useFlowProject (client: FlowClient, project: string, options?: UseFlowProjectOptions<readonly FlowEntry[]>): FlowProject<readonly FlowEntry[]>
export function useFlowProject<S> (client: FlowClient, project: string, options: UseFlowProjectOptions<S> & { readonly reducer: FlowReducer<S>, readonly initialState: S }): FlowProject<S>
export function useFlowProject<S> (client: FlowClient, project: string, options: UseFlowProjectOptions<S> = {}): FlowProject<S> {
  const latest = useRef(options)
  latest.current = options
  const [snapshot, setSnapshot] = useState<Snapshot<S>>(() => fresh(client, project, options))
  const handleRef = useRef<ProjectHandle | undefined>(undefined)
  /** publishes the current join's snapshot (a no-op between joins) */
  const publishRef = useRef<() => void>(() => {})
  /** records an error of the current join */
  const failRef = useRef<(err: Error) => void>(() => {})

  useEffect(() => {
    const options = latest.current
    let live = true
    let folded = initialState(options)
    let ready = false
    let error: Error | undefined
    let handle: ProjectHandle | undefined

    const publish = (): void => {
      if (!live || handle === undefined) return
      setSnapshot({
        client,
        project,
        status: client.status,
        ready,
        members: handle.members,
        state: folded,
        seq: handle.seq,
        epoch: handle.epoch,
        sessionId: handle.sessionId,
        pending: handle.pending,
        error
      })
    }
    const fail = (err: Error): void => {
      if (!live) return
      error = err
      publish()
    }
    const fold = (entry: FlowEntry): void => {
      const reducer = (latest.current.reducer ?? appendEntry) as FlowReducer<S>
      folded = reducer(folded, entry)
    }
    const ownUserId = (): string => handle?.members.find((m) => m.sessionId === handle?.sessionId)?.userId ?? ''
    const mine = (p: string): boolean => p === project

    try {
      handle = client.join(project, {
        presence: options.presence,
        since: options.since,
        epoch: options.epoch,
        onReset: async (reset) => {
          const load = latest.current.onReset
          try {
            const next = load === undefined ? initialState(latest.current) : await load(reset)
            if (live) folded = next
          } catch (err) {
            error = asError(err)
          }
          publish()
        },
        snapshot: options.snapshot === true,
        onSnapshot: async (state, info) => {
          const load = latest.current.onSnapshot
          try {
            const next = load === undefined ? state as S : await load(state, info)
            if (live) folded = next
          } catch (err) {
            error = asError(err)
          }
          publish()
        }
      })
    } catch (err) {
      // An invalid id, or the project joined already on this client.
      setSnapshot(fresh(client, project, options, asError(err)))
      return
    }
    const joined = handle

    const off = [
      client.on('op', (p, op) => {
        if (!mine(p)) return
        fold({ seq: op.seq, id: op.id, data: op.data, userId: op.userId, own: false })
        publish()
      }),
      client.on('ack', (p, ack) => {
        if (!mine(p)) return
        // A stale ack's op is in the state a reset loaded already.
        if (!ack.stale) fold({ seq: ack.seq, id: ack.id, data: ack.data, userId: ownUserId(), own: true })
        publish()
      }),
      client.on('members', (p) => { if (mine(p)) publish() }),
      client.on('presence', (p) => { if (mine(p)) publish() }),
      client.on('reset', (p) => { if (mine(p)) publish() }),
      client.on('snapshot', (p) => { if (mine(p)) publish() }),
      client.on('status', () => { publish() }),
      client.on('error', (err) => { if (err.project === project) fail(err) })
    ]
    joined.ready.then(() => {
      ready = true
      publish()
    }, (err: unknown) => {
      // A refused join (also an `error` event); `left` is our own leave.
      if (live) fail(asError(err))
    })
    handleRef.current = joined
    publishRef.current = publish
    failRef.current = fail
    publish()

    return () => {
      live = false
      for (const remove of off) remove()
      if (handleRef.current === joined) {
        handleRef.current = undefined
        publishRef.current = () => {}
        failRef.current = () => {}
      }
      void joined.leave()
    }
  }, [client, project])

  const send = useCallback((data: unknown, sendOptions?: SendOptions): Promise<Ack> => {
    const handle = handleRef.current
    if (handle === undefined) return Promise.reject(new Error('useFlowProject: not joined (before the first effect, after unmount, or the join threw)'))
    const promise = handle.send(data, sendOptions)
    const publish = publishRef.current
    const fail = failRef.current
    publish()
    promise.then(undefined, (err: unknown) => {
      const e = asError(err)
      if ((e as { code?: unknown }).code !== 'left') fail(e)
      else publish()
    })
    return promise
  }, [])

  const setPresence = useCallback((state: Presence): void => {
    const handle = handleRef.current
    if (handle === undefined) return
    handle.setPresence(state)
    publishRef.current()
  }, [])

  // Between a change of project (or client) and its effect, show the new project's empty state, not the old one's.
  const current = snapshot.client === client && snapshot.project === project ? snapshot : fresh(client, project, options)
  return {
    status: current.status,
    ready: current.ready,
    members: current.members,
    state: current.state,
    seq: current.seq,
    epoch: current.epoch,
    sessionId: current.sessionId,
    pending: current.pending,
    error: current.error,
    send,
    setPresence
  }
}
