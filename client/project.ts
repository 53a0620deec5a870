/**
 * One joined project: its position in the op log, the ordered hand-over of
 * ops and acks, the ops waiting for their ack, the member list and the
 * throttled presence. The client routes the project's frames here and tells
 * it when the connection opens and drops.
 */
import { FlowError, serverError } from './errors.js'
import type { ErrorReceived, ProjectFrame } from './frames.js'
import { OP_ID, randomOpId } from './ids.js'
import type { Ack, FlowEvents, JoinOptions, Member, Op, PendingOp, Presence, ResetInfo, SendOptions, SnapshotInfo, SnapshotPosition, StoredResult } from './types.js'
import type { JoinedFrame, JoinFrame, MemberEvent, MemberPageFrame, MembersFrame, PresenceMessage, ResetFrame, SnapshotFrame, SnapshotUpload, StoredFrame, SyncedFrame, SyncFrame } from '../lib/protocol/wire.js'

/** A project joined through `FlowClient.join`. */
export interface ProjectHandle {
  readonly project: string
  /** resolves at the first `joined`; rejects when the server refuses the join, or on `leave()` before it */
  readonly ready: Promise<void>
  /** the current session id (changes with each connection); undefined before the first `joined` */
  readonly sessionId: string | undefined
  /** the epoch `seq` belongs to; undefined before the first `joined` (unless given to join) */
  readonly epoch: string | undefined
  /** the last seq handed to the app (as an `op`, an `ack`, or the seq of a `reset` or a `snapshot`) */
  readonly seq: number
  /** the members, this session included, as of the last event */
  readonly members: readonly Member[]
  /** this session's presence, as last set */
  readonly presence: Presence
  /** ops sent and not acknowledged yet, in the order sent */
  readonly pending: readonly PendingOp[]
  /** true once left (or refused): the handle is dead */
  readonly closed: boolean
  /**
   * Sends an op. Resolves once, with its seq, when the server has
   * acknowledged it (and every op before it was handed to the app); an op
   * not acknowledged before a reconnect is sent again with the same id.
   * Rejects only when the server refuses the op (a `FlowError` with the
   * protocol's code), when the op cannot be sent (`invalid_frame`), or on
   * `leave()` (`left`).
   */
  send (data: unknown, options?: SendOptions): Promise<Ack>
  /** Sets this session's presence; frames are throttled, the last state is always sent. */
  setPresence (state: Presence): void
  /**
   * (protocol 1.2) Stores `state` as the project's snapshot at `position`
   * (default: the handle's `epoch` and `seq`, so `state` must be what the
   * app has folded up to now). Sent once joined; resolves with the server's
   * answer, `{ stored }` or `{ stored: false, reason }`. Rejects with a
   * `FlowError`: the server's code when it refused the frame
   * (`limit_exceeded`: larger than FLOW_SNAPSHOT_MAX_BYTES, `rate_limited`,
   * ...), `invalid_frame` when it cannot be sent (not JSON, over
   * `maxFrameBytes`, no position yet), `unavailable` when the connection
   * dropped before the answer (upload again: `older` then means the first
   * one was kept), `left` on `leave()`.
   */
  uploadSnapshot (state: unknown, position?: SnapshotPosition): Promise<StoredResult>
  /** Leaves the project: unacknowledged sends reject with `left`. Resolves when the server confirmed (or the connection is gone). */
  leave (): Promise<void>
}

/** What a project needs from its client. */
export interface ProjectHost {
  /** Sends a frame on the open connection; false when there is none. */
  send (frame: string): boolean
  /** A ref unique on this client. */
  ref (): number
  emit<K extends keyof FlowEvents> (event: K, ...args: Parameters<FlowEvents[K]>): void
  /** Forgets the project; sends `leave` when asked and connected, resolving on its answer. */
  detach (project: Project, sendLeave: boolean): Promise<void>
  /** A short, jittered delay before retrying a refused frame, in ms. */
  retryDelayMs (): number
  readonly presenceThrottleMs: number
  readonly maxFrameBytes: number
}

/** A step of the project's ordered stream: another session's op, or the ack of one of ours. */
type Entry =
  | { readonly kind: 'op', readonly seq: number, readonly op: Op }
  | { readonly kind: 'ack', readonly seq: number, readonly id: string }

interface Sending {
  readonly id: string
  readonly data: unknown
  /** `data` as JSON, taken when sent: later changes to the object do not change a resend */
  readonly json: string
  readonly promise: Promise<Ack>
  readonly resolve: (ack: Ack) => void
  readonly reject: (err: FlowError) => void
  /** the ref of its frame on the current connection */
  ref: number | undefined
  retry: ReturnType<typeof setTimeout> | undefined
}

/** A snapshot upload, waiting to be sent (`ref` undefined) or for its `stored`. */
interface Upload {
  readonly json: string
  readonly resolve: (result: StoredResult) => void
  readonly reject: (err: FlowError) => void
  ref: number | undefined
}

type Purpose =
  | { readonly kind: 'join' }
  | { readonly kind: 'sync' }
  | { readonly kind: 'op', readonly id: string }
  | { readonly kind: 'upload', readonly upload: Upload }
  | { readonly kind: 'page' }

/**
 * (protocol 1.3) What every join asks for: member events in one frame per turn, a paged members list (the rest
 * is fetched at once), and a resume token, so a reconnect within the server's grace is silent for the others.
 */
const FEATURES = ['member_batch', 'member_page', 'resume']

/** Codes after which the same frame may succeed later. */
const RETRYABLE: ReadonlySet<string> = new Set(['rate_limited', 'unavailable', 'internal'])

/** An error of the app's callback: reported like a throwing listener's, and the client goes on. */
function reportLater (err: unknown): void {
  queueMicrotask(() => { throw err })
}

export class Project implements ProjectHandle {
  readonly project: string
  readonly ready: Promise<void>
  readonly #host: ProjectHost
  readonly #onReset: JoinOptions['onReset']
  readonly #onSnapshot: JoinOptions['onSnapshot']
  /** joins and syncs ask for a `snapshot` where the history cannot serve (protocol 1.2) */
  readonly #takesState: boolean
  /** the app has no state yet (`snapshot: true` without `since`): joins omit `since` and get a snapshot */
  #needsState: boolean
  /** joining: waiting for a connection or for `joined`; joined: live on the current connection */
  #state: 'joining' | 'joined' | 'left' | 'failed' = 'joining'
  #epoch: string | undefined
  #seq: number
  #sessionId: string | undefined
  /** every session id this handle had: an old one still listed is not a member */
  readonly #sessions = new Set<string>()
  #members: readonly Member[] = []
  /** (1.3) the secret that resumes this handle's session on the next connection */
  #resumeToken: string | undefined
  #presence: Presence
  #presenceJson: string
  /** the presence the server has (sent in `join` or a presence frame) */
  #presenceSent: string | undefined
  #presenceSentAt = -Infinity
  #presenceTimer: ReturnType<typeof setTimeout> | undefined
  readonly #sending = new Map<string, Sending>()
  /** entries that arrived ahead of a gap, or while a reset callback runs */
  readonly #buffer = new Map<number, Entry>()
  readonly #refs = new Map<number, Purpose>()
  #joinRef: number | undefined
  #joinTimer: ReturnType<typeof setTimeout> | undefined
  /** the sync in flight, with the epoch it asked from */
  #sync: { readonly ref: number, readonly epoch: string | undefined } | undefined
  #syncTimer: ReturnType<typeof setTimeout> | undefined
  /** snapshot uploads, in the order asked */
  readonly #uploads = new Set<Upload>()
  /** reset and snapshot callbacks running: entries wait in the buffer */
  #holds = 0
  /** the last reset or snapshot callback still running */
  #resetTail: Promise<void> | undefined
  #joinedOnce = false
  #resolveReady: () => void = () => {}
  #rejectReady: (err: FlowError) => void = () => {}

  constructor (project: string, options: JoinOptions, host: ProjectHost) {
    this.project = project
    this.#host = host
    this.#onReset = options.onReset
    this.#onSnapshot = options.onSnapshot
    this.#takesState = options.snapshot === true
    this.#needsState = this.#takesState && options.since === undefined
    this.#seq = options.since ?? 0
    this.#epoch = options.epoch
    this.#presence = options.presence ?? {}
    this.#presenceJson = JSON.stringify(this.#presence)
    this.ready = new Promise<void>((resolve, reject) => {
      this.#resolveReady = resolve
      this.#rejectReady = reject
    })
    // Whoever does not await it must not get an unhandled rejection.
    this.ready.catch(() => {})
  }

  get sessionId (): string | undefined { return this.#sessionId }
  get epoch (): string | undefined { return this.#epoch }
  get seq (): number { return this.#seq }
  get members (): readonly Member[] { return this.#members }
  get presence (): Presence { return this.#presence }
  get closed (): boolean { return this.#state === 'left' || this.#state === 'failed' }
  get pending (): readonly PendingOp[] {
    return [...this.#sending.values()].map((s) => ({ id: s.id, data: s.data }))
  }

  // ---------------------------------------------------------------- app API

  send (data: unknown, options: SendOptions = {}): Promise<Ack> {
    if (this.closed) return Promise.reject(new FlowError('left', `${this.project} was left`, this.project))
    const id = options.id ?? randomOpId()
    if (typeof id !== 'string' || !OP_ID.test(id)) {
      return Promise.reject(new FlowError('invalid_frame', 'an op id is 1 to 64 characters of A-Z a-z 0-9 _ -', this.project))
    }
    const existing = this.#sending.get(id)
    if (existing !== undefined) return existing.promise
    let json: string | undefined
    try {
      json = JSON.stringify(data)
    } catch (err) {
      return Promise.reject(new FlowError('invalid_frame', `op data is not JSON: ${String(err)}`, this.project))
    }
    if (json === undefined) return Promise.reject(new FlowError('invalid_frame', 'op data is not JSON (undefined, a function or a symbol)', this.project))
    const longest = this.#opFrame(id, Number.MAX_SAFE_INTEGER, json)
    // A UTF-16 unit takes at most 3 bytes in UTF-8: encode only when the limit could be passed.
    const size = longest.length * 3 <= this.#host.maxFrameBytes ? 0 : new TextEncoder().encode(longest).length
    if (size > this.#host.maxFrameBytes) {
      return Promise.reject(new FlowError('invalid_frame', `the op frame would be ${size} bytes, over the ${this.#host.maxFrameBytes} byte limit`, this.project))
    }
    let resolve: (ack: Ack) => void = () => {}
    let reject: (err: FlowError) => void = () => {}
    const promise = new Promise<Ack>((res, rej) => { resolve = res; reject = rej })
    const sending: Sending = { id, data, json, promise, resolve, reject, ref: undefined, retry: undefined }
    this.#sending.set(id, sending)
    this.#transmit(sending)
    return promise
  }

  setPresence (state: Presence): void {
    if (this.closed) return
    this.#presence = state
    this.#presenceJson = JSON.stringify(state)
    if (this.#sessionId !== undefined) {
      const own = this.#sessionId
      this.#members = this.#members.map((m) => m.sessionId === own ? { ...m, presence: state } : m)
    }
    this.#schedulePresence()
  }

  uploadSnapshot (state: unknown, position?: SnapshotPosition): Promise<StoredResult> {
    if (this.closed) return Promise.reject(new FlowError('left', `${this.project} was left`, this.project))
    const epoch = position?.epoch ?? this.#epoch
    const seq = position?.seq ?? this.#seq
    if (epoch === undefined) {
      return Promise.reject(new FlowError('invalid_frame', 'no position to upload a snapshot at: await ready, or pass { epoch, seq }', this.project))
    }
    if (typeof epoch !== 'string' || !Number.isSafeInteger(seq) || seq < 0) {
      return Promise.reject(new FlowError('invalid_frame', 'a snapshot position is { epoch: string, seq: integer >= 0 }', this.project))
    }
    let json: string | undefined
    try {
      json = JSON.stringify({ type: 'snapshot', project: this.project, epoch, seq, state } satisfies Omit<SnapshotUpload, 'ref'>)
    } catch (err) {
      return Promise.reject(new FlowError('invalid_frame', `snapshot state is not JSON: ${String(err)}`, this.project))
    }
    if (state === undefined || typeof state === 'function' || typeof state === 'symbol') {
      return Promise.reject(new FlowError('invalid_frame', 'snapshot state is not JSON (undefined, a function or a symbol)', this.project))
    }
    // The ref goes in last: `{...,"ref":N}`.
    const size = (json.length + 30) * 3 <= this.#host.maxFrameBytes ? 0 : new TextEncoder().encode(json).length + 30
    if (size > this.#host.maxFrameBytes) {
      return Promise.reject(new FlowError('invalid_frame', `the snapshot frame would be ${size} bytes, over the ${this.#host.maxFrameBytes} byte limit`, this.project))
    }
    return new Promise<StoredResult>((resolve, reject) => {
      const upload: Upload = { json, resolve, reject, ref: undefined }
      this.#uploads.add(upload)
      this.#sendUpload(upload)
    })
  }

  async leave (): Promise<void> {
    if (this.closed) return
    const onServer = this.#state === 'joined' || this.#joinRef !== undefined
    this.#end('left', new FlowError('left', `${this.project} was left`, this.project))
    await this.#host.detach(this, onServer)
  }

  // ---------------------------------------------------------------- from the client

  /** A connection is open: (re)join from where the app is. */
  open (): void {
    if (this.closed) return
    this.#state = 'joining'
    const ref = this.#host.ref()
    this.#joinRef = ref
    this.#refs.set(ref, { kind: 'join' })
    // An app with no state yet asks for the project's state from scratch: no `since`, a snapshot always comes.
    const position = this.#needsState ? {} : this.#epoch === undefined ? { since: this.#seq } : { since: this.#seq, epoch: this.#epoch }
    const state = this.#takesState ? { snapshot: true as const } : {}
    const resume = this.#resumeToken === undefined ? {} : { resume: this.#resumeToken }
    const frame: JoinFrame = {
      type: 'join', project: this.project, ...position, presence: this.#presence, ref, ...state, features: FEATURES, ...resume
    }
    if (this.#host.send(JSON.stringify(frame))) this.#presenceSent = this.#presenceJson
  }

  /** The connection is gone: what was in flight on it is forgotten, the unacked ops stay. */
  drop (): void {
    if (this.closed) return
    this.#state = 'joining'
    this.#refs.clear()
    this.#joinRef = undefined
    this.#sync = undefined
    this.#presenceSent = undefined
    // Entries ahead of a gap come again in the replay after the next join.
    this.#buffer.clear()
    clearTimeout(this.#joinTimer)
    clearTimeout(this.#syncTimer)
    clearTimeout(this.#presenceTimer)
    this.#joinTimer = this.#syncTimer = this.#presenceTimer = undefined
    for (const s of this.#sending.values()) {
      clearTimeout(s.retry)
      s.retry = undefined
      s.ref = undefined
    }
    // Uploads sent on the lost connection may or may not be stored: the app decides whether to upload again.
    for (const upload of [...this.#uploads]) {
      if (upload.ref === undefined) continue
      this.#uploads.delete(upload)
      upload.reject(new FlowError('unavailable', 'the connection dropped before the snapshot upload was answered', this.project))
    }
  }

  /** A frame about this project. */
  frame (frame: ProjectFrame | ErrorReceived): void {
    if (this.closed) return
    switch (frame.type) {
      case 'joined':
        if (frame.ref === this.#joinRef && frame.ref !== undefined) this.#joined(frame)
        return
      case 'error':
        this.#error(frame)
        return
      case 'left':
        return
      default:
    }
    // Before our `joined`, frames are about a session that is gone.
    if (this.#state !== 'joined') return
    switch (frame.type) {
      case 'op':
        this.#entry({ kind: 'op', seq: frame.seq, op: { project: this.project, seq: frame.seq, id: frame.id, userId: frame.userId, sessionId: frame.sessionId, data: frame.data, ts: frame.ts } })
        return
      case 'ack':
        if (typeof frame.ref === 'number') this.#refs.delete(frame.ref)
        // An ack of an op we no longer wait for (acked again after a retry): nothing new.
        if (this.#sending.has(frame.id)) this.#entry({ kind: 'ack', seq: frame.seq, id: frame.id })
        return
      case 'synced':
        this.#synced(frame)
        return
      case 'reset':
        this.#reset(frame)
        return
      case 'snapshot':
        this.#snapshot(frame)
        return
      case 'stored':
        this.#stored(frame)
        return
      case 'member':
        this.#member(frame)
        return
      case 'members':
        this.#memberEvents(frame)
        return
      case 'member_page':
        this.#memberPage(frame)
        return
      case 'presence':
        this.#presenceOf(frame)
    }
  }

  // ---------------------------------------------------------------- joining

  #joined (frame: JoinedFrame): void {
    this.#refs.delete(frame.ref as number)
    this.#joinRef = undefined
    this.#state = 'joined'
    this.#sessionId = frame.sessionId
    this.#sessions.add(frame.sessionId)
    // A different epoch than ours: the replay that follows is a `reset`.
    this.#epoch ??= frame.epoch
    this.#resumeToken = frame.resume
    // A resumed session keeps the presence the server had: ours goes again when it differs.
    const own = frame.members.find((m) => m.sessionId === frame.sessionId)
    if (frame.resumed === true && (own === undefined || JSON.stringify(own.presence) !== this.#presenceJson)) {
      this.#presenceSent = undefined
    }
    this.#members = frame.members
      .filter((m) => m.sessionId === frame.sessionId || !this.#sessions.has(m.sessionId))
      .map((m) => m.sessionId === frame.sessionId ? { ...m, presence: this.#presence } : m)
    // (1.3) A paged list: ourselves (maybe not on the first page), and the rest fetched now.
    if (own === undefined) this.#members = [...this.#members, { sessionId: frame.sessionId, userId: frame.userId, presence: this.#presence, joinedAt: Date.now() }]
    if (typeof frame.next === 'string') this.#requestPage(frame.next)
    this.#host.emit('members', this.project, this.#members)
    if (!this.#joinedOnce) {
      this.#joinedOnce = true
      this.#resolveReady()
    }
    if (this.closed) return
    // Unacked ops go again, with their ids, in the order first sent.
    for (const s of this.#sending.values()) this.#transmit(s)
    for (const upload of this.#uploads) this.#sendUpload(upload)
    this.#schedulePresence()
  }

  #error (frame: ErrorReceived): void {
    const err = serverError(frame.code, frame.message, frame.project ?? this.project)
    const purpose = typeof frame.ref === 'number' ? this.#refs.get(frame.ref) : undefined
    if (purpose === undefined) {
      this.#host.emit('error', err)
      return
    }
    this.#refs.delete(frame.ref as number)
    switch (purpose.kind) {
      case 'join':
        this.#joinRef = undefined
        if (RETRYABLE.has(err.code)) {
          this.#joinTimer = setTimeout(() => {
            this.#joinTimer = undefined
            if (this.#state === 'joining' && this.#joinRef === undefined) this.open()
          }, this.#host.retryDelayMs())
          return
        }
        // Refused for good (forbidden, a bad id, too many projects): the handle is dead.
        this.#end('failed', err)
        this.#host.emit('error', err)
        void this.#host.detach(this, false)
        return
      case 'sync':
        this.#sync = undefined
        this.#retrySync()
        return
      case 'upload':
        this.#uploads.delete(purpose.upload)
        purpose.upload.reject(err)
        return
      case 'page':
        // The list stays partial until the next join; events still apply to it.
        this.#host.emit('error', err)
        return
      case 'op': {
        const s = this.#sending.get(purpose.id)
        if (s === undefined) return
        s.ref = undefined
        if (err.code === 'not_joined') {
          // The server lost our membership (it should not): join again from our seq; pending ops follow `joined`.
          if (this.#joinRef === undefined) this.open()
          return
        }
        if (RETRYABLE.has(err.code)) {
          clearTimeout(s.retry)
          s.retry = setTimeout(() => {
            s.retry = undefined
            if (s.ref === undefined && this.#sending.get(s.id) === s) this.#transmit(s)
          }, this.#host.retryDelayMs())
          return
        }
        this.#sending.delete(s.id)
        s.reject(err)
      }
    }
  }

  /** Stops for good: timers cleared, unacked sends and `ready` rejected. */
  #end (state: 'left' | 'failed', err: FlowError): void {
    const uploads = [...this.#uploads]
    this.#uploads.clear()
    for (const upload of uploads) upload.reject(err)
    this.drop()
    this.#state = state
    if (!this.#joinedOnce) this.#rejectReady(err)
    const sending = [...this.#sending.values()]
    this.#sending.clear()
    for (const s of sending) s.reject(err)
  }

  // ---------------------------------------------------------------- the ordered stream

  /** One op or ack: handed over in seq order, never twice; a gap asks for a sync. */
  #entry (entry: Entry): void {
    if (entry.seq <= this.#seq) {
      this.#stale(entry)
      return
    }
    if (this.#holds === 0 && entry.seq === this.#seq + 1) {
      this.#deliver(entry)
      this.#drain()
      return
    }
    if (!this.#buffer.has(entry.seq)) this.#buffer.set(entry.seq, entry)
    if (this.#holds === 0) this.#requestSync()
  }

  /** Hands over the buffered entries that now follow `seq`; drops the ones it passed. */
  #drain (): void {
    for (let next = this.#buffer.get(this.#seq + 1); next !== undefined && !this.closed; next = this.#buffer.get(this.#seq + 1)) {
      this.#buffer.delete(next.seq)
      this.#deliver(next)
    }
    for (const [seq, entry] of this.#buffer) {
      if (seq > this.#seq) continue
      this.#buffer.delete(seq)
      this.#stale(entry)
    }
  }

  #deliver (entry: Entry): void {
    this.#seq = entry.seq
    const id = entry.kind === 'ack' ? entry.id : entry.op.id
    // Our own op, as an ack or replayed as an op (sent by an earlier connection): an ack.
    if (this.#sending.has(id)) this.#confirm(id, entry.seq, this.#epoch ?? '', false)
    else if (entry.kind === 'op') this.#host.emit('op', this.project, entry.op)
  }

  /** An entry at or below `seq`: if it is one of our ops, it is in the state a reset had the app load. */
  #stale (entry: Entry): void {
    const id = entry.kind === 'ack' ? entry.id : entry.op.id
    if (this.#sending.has(id)) this.#confirm(id, entry.seq, this.#epoch ?? '', true)
  }

  #confirm (id: string, seq: number, epoch: string, stale: boolean): void {
    const s = this.#sending.get(id)
    if (s === undefined) return
    this.#sending.delete(id)
    clearTimeout(s.retry)
    if (s.ref !== undefined) this.#refs.delete(s.ref)
    const ack: Ack = { id, seq, epoch }
    s.resolve(ack)
    this.#host.emit('ack', this.project, { ...ack, data: s.data, stale })
  }

  #requestSync (): void {
    if (this.#sync !== undefined || this.#syncTimer !== undefined || this.#state !== 'joined') return
    const ref = this.#host.ref()
    const epoch = this.#epoch === undefined ? {} : { epoch: this.#epoch }
    const state = this.#takesState ? { snapshot: true as const } : {}
    const frame: SyncFrame = { type: 'sync', project: this.project, since: this.#seq, ref, ...epoch, ...state }
    if (!this.#host.send(JSON.stringify(frame))) return
    this.#sync = { ref, epoch: this.#epoch }
    this.#refs.set(ref, { kind: 'sync' })
  }

  #retrySync (): void {
    if (this.#syncTimer !== undefined) return
    this.#syncTimer = setTimeout(() => {
      this.#syncTimer = undefined
      if (this.#holds === 0 && this.#buffer.size > 0) this.#requestSync()
    }, this.#host.retryDelayMs())
  }

  #synced (frame: SyncedFrame): void {
    if (this.#sync === undefined || frame.ref !== this.#sync.ref) return
    this.#refs.delete(this.#sync.ref)
    this.#sync = undefined
    if (this.#holds > 0) return
    this.#drain()
    // Still a gap after a whole replay: ask again, a little later (a reset may be on its way).
    if (this.#buffer.size > 0) this.#retrySync()
  }

  #reset (frame: ResetFrame): void {
    // The answer to a sync that asked from the epoch a reset already left: we are past it.
    if (this.#sync !== undefined && this.#sync.epoch !== this.#epoch && frame.epoch === this.#epoch) return
    // Acks that waited behind a gap of the ending epoch: their ops are in the state to load.
    const waiting = [...this.#buffer.values()].sort((a, b) => a.seq - b.seq)
    this.#buffer.clear()
    const ending = this.#epoch ?? ''
    for (const entry of waiting) {
      const id = entry.kind === 'ack' ? entry.id : entry.op.id
      if (this.#sending.has(id)) this.#confirm(id, entry.seq, ending, true)
    }
    this.#epoch = frame.epoch
    this.#seq = frame.seq
    // The app reloads its state: from now on it has one.
    this.#needsState = false
    this.#holds++
    this.#host.emit('reset', this.project, frame.epoch, frame.seq)
    const info: ResetInfo = { project: this.project, epoch: frame.epoch, seq: frame.seq }
    const onReset = this.#onReset
    this.#hold(onReset === undefined ? undefined : () => onReset(info))
  }

  /**
   * The project's state at `seq` (protocol 1.2): like a reset, but the
   * state comes with it, and the ops after `seq` follow (a replay that may
   * start below where the app is: those ops are handed over again, on top
   * of the snapshot's state).
   */
  #snapshot (frame: SnapshotFrame): void {
    // Of our epoch, at or below where a consistent app already is (the answer to a sync that raced a
    // reset or another snapshot): we are past it, and the ops after it that we have are dropped as seen.
    if (!this.#needsState && frame.epoch === this.#epoch && frame.seq <= this.#seq) return
    const same = frame.epoch === this.#epoch
    const ending = this.#epoch ?? ''
    const waiting = [...this.#buffer.values()].sort((a, b) => a.seq - b.seq)
    this.#buffer.clear()
    for (const entry of waiting) {
      // Entries of this epoch after the snapshot are still to come in order.
      if (same && entry.seq > frame.seq) {
        this.#buffer.set(entry.seq, entry)
        continue
      }
      // Own acks of what the state holds (or of the epoch it ended): in the state.
      const id = entry.kind === 'ack' ? entry.id : entry.op.id
      if (this.#sending.has(id)) this.#confirm(id, entry.seq, same ? frame.epoch : ending, true)
    }
    this.#epoch = frame.epoch
    this.#seq = frame.seq
    this.#needsState = false
    this.#holds++
    const info: SnapshotInfo = { project: this.project, epoch: frame.epoch, seq: frame.seq }
    this.#host.emit('snapshot', this.project, frame.state, info)
    const onSnapshot = this.#onSnapshot
    this.#hold(onSnapshot === undefined ? undefined : () => onSnapshot(frame.state, info))
  }

  /**
   * Runs the app's reset and snapshot callbacks one at a time, in order.
   * Live entries wait in the buffer until the last one settled; a callback
   * that returns no promise releases them at once. The caller took a hold.
   */
  #hold (callback: (() => void | Promise<void>) | undefined): void {
    const call = (): Promise<void> | undefined => {
      if (callback === undefined || this.closed) return undefined
      try {
        const result = callback()
        return result instanceof Promise ? result.catch(reportLater) : undefined
      } catch (err) {
        reportLater(err)
        return undefined
      }
    }
    const running = this.#resetTail
    if (running === undefined) {
      const first = call()
      if (first === undefined) {
        this.#release()
        return
      }
      const tail: Promise<void> = first.then(() => { this.#settled(tail) })
      this.#resetTail = tail
      return
    }
    const tail: Promise<void> = running.then(async () => { await call() }).then(() => { this.#settled(tail) })
    this.#resetTail = tail
  }

  #settled (tail: Promise<void>): void {
    if (this.#resetTail === tail) this.#resetTail = undefined
    this.#release()
  }

  /** A reset or snapshot callback is done: when none is left, the held entries go. */
  #release (): void {
    this.#holds--
    if (this.#holds > 0 || this.#state !== 'joined') return
    this.#drain()
    if (this.#buffer.size > 0) this.#requestSync()
  }

  #stored (frame: StoredFrame): void {
    if (typeof frame.ref !== 'number') return
    const purpose = this.#refs.get(frame.ref)
    if (purpose?.kind !== 'upload') return
    this.#refs.delete(frame.ref)
    this.#uploads.delete(purpose.upload)
    purpose.upload.resolve(frame.stored ? { stored: true } : { stored: false, reason: frame.reason })
  }

  #sendUpload (upload: Upload): void {
    if (this.#state !== 'joined' || upload.ref !== undefined) return
    const ref = this.#host.ref()
    if (!this.#host.send(`${upload.json.slice(0, -1)},"ref":${ref}}`)) return
    upload.ref = ref
    this.#refs.set(ref, { kind: 'upload', upload })
  }

  // ---------------------------------------------------------------- members and presence

  #member (frame: MemberEvent): void {
    if (this.#applyMember(frame)) this.#host.emit('members', this.project, this.#members)
  }

  /** (1.3) The member events of one server turn: applied in order, one `members` event for them all. */
  #memberEvents (frame: MembersFrame): void {
    let changed = false
    for (const event of frame.events) changed = this.#applyMember(event) || changed
    if (changed) this.#host.emit('members', this.project, this.#members)
  }

  /** Applies one member event idempotently by session id; true when the list changed. */
  #applyMember (frame: MemberEvent): boolean {
    const { member } = frame
    // Our own sessions, current or gone, are not news.
    if (this.#sessions.has(member.sessionId)) return false
    if (frame.event === 'join') {
      this.#members = [...this.#members.filter((m) => m.sessionId !== member.sessionId), member]
    } else {
      if (!this.#members.some((m) => m.sessionId === member.sessionId)) return false
      this.#members = this.#members.filter((m) => m.sessionId !== member.sessionId)
    }
    return true
  }

  /** (1.3) Asks for the page of the members list after `cursor`. */
  #requestPage (cursor: string): void {
    const ref = this.#host.ref()
    this.#refs.set(ref, { kind: 'page' })
    this.#host.send(JSON.stringify({ type: 'list_members', project: this.project, after: cursor, ref }))
  }

  /**
   * (1.3) A page of the members list: added to ours (it is as new as the events before it; the events after it
   * apply to it), and the next asked for.
   */
  #memberPage (frame: MemberPageFrame): void {
    if (typeof frame.ref !== 'number' || this.#refs.get(frame.ref)?.kind !== 'page') return
    this.#refs.delete(frame.ref)
    const paged = frame.members.filter((m) => !this.#sessions.has(m.sessionId))
    const ids = new Set(paged.map((m) => m.sessionId))
    this.#members = [...this.#members.filter((m) => !ids.has(m.sessionId)), ...paged]
    if (frame.next !== null) this.#requestPage(frame.next)
    this.#host.emit('members', this.project, this.#members)
  }

  #presenceOf (frame: PresenceMessage): void {
    if (this.#sessions.has(frame.sessionId)) return
    this.#members = this.#members.map((m) => m.sessionId === frame.sessionId ? { ...m, presence: frame.state } : m)
    this.#host.emit('presence', this.project, frame.sessionId, frame.userId, frame.state)
  }

  /** At most one presence frame per throttle interval; the latest state goes at the end of it. */
  #schedulePresence (): void {
    if (this.#state !== 'joined' || this.#presenceTimer !== undefined || this.#presenceJson === this.#presenceSent) return
    const wait = this.#presenceSentAt + this.#host.presenceThrottleMs - Date.now()
    if (wait <= 0) {
      this.#sendPresence()
      return
    }
    this.#presenceTimer = setTimeout(() => {
      this.#presenceTimer = undefined
      this.#sendPresence()
    }, wait)
  }

  #sendPresence (): void {
    if (this.#state !== 'joined' || this.#presenceJson === this.#presenceSent) return
    if (!this.#host.send(`{"type":"presence","project":${JSON.stringify(this.project)},"state":${this.#presenceJson}}`)) return
    this.#presenceSent = this.#presenceJson
    this.#presenceSentAt = Date.now()
  }

  // ---------------------------------------------------------------- sending

  #opFrame (id: string, ref: number, json: string): string {
    return `{"type":"op","project":${JSON.stringify(this.project)},"id":"${id}","ref":${ref},"data":${json}}`
  }

  #transmit (s: Sending): void {
    if (this.#state !== 'joined') return
    const ref = this.#host.ref()
    if (!this.#host.send(this.#opFrame(s.id, ref, s.json))) return
    if (s.ref !== undefined) this.#refs.delete(s.ref)
    s.ref = ref
    this.#refs.set(ref, { kind: 'op', id: s.id })
  }
}
