/**
 * The Flow client: one WebSocket to a Flow server, reconnected with
 * jittered exponential backoff, and the projects joined over it, each
 * handing the app its ops in seq order with no gap and no duplicate.
 * Runs in browsers (global WebSocket) and in Node (pass the `ws` package).
 * Docs: docs/client.md. Protocol: docs/protocol.md.
 */
import { Backoff, backoffDelay, backoffOptions } from './backoff.js'
import { Emitter } from './emitter.js'
import { FlowError, serverError } from './errors.js'
import { decodeFrame } from './frames.js'
import { PROJECT_ID } from './ids.js'
import { Project, type ProjectHandle, type ProjectHost } from './project.js'
import type { FlowClientOptions, FlowEvents, JoinOptions, RetryInfo, Status, WebSocketConstructor, WebSocketLike } from './types.js'
import type { LeaveFrame } from '../lib/protocol/wire.js'

export { FlowError, type ErrorCode } from './errors.js'
export { backoffCeiling, backoffDelay, Backoff, type BackoffOptions } from './backoff.js'
export { Emitter } from './emitter.js'
export { randomOpId } from './ids.js'
export type { ProjectHandle } from './project.js'
export type * from './types.js'

const DEFAULT_PING_INTERVAL_MS = 30_000
const DEFAULT_PRESENCE_THROTTLE_MS = 50
const DEFAULT_MAX_FRAME_BYTES = 64 * 1024
/** WebSocket readyState OPEN, the same in browsers and `ws`. */
const OPEN = 1
/** The close code and reason the server ends a connection with when its token expires. */
const TOKEN_EXPIRED = { code: 1008, reason: 'token expired' }
/** Close code this client uses for a connection that stopped answering (4000-4999: the application's). */
const DEAD = { code: 4000, reason: 'no reply to ping' }

export class FlowClient extends Emitter<FlowEvents> {
  readonly url: string
  readonly #token: FlowClientOptions['token']
  readonly #WebSocket: WebSocketConstructor
  readonly #backoff: Backoff
  readonly #pingIntervalMs: number
  readonly #projects = new Map<string, Project>()
  /** leaves waiting for `left`, by ref */
  readonly #leaving = new Map<number, () => void>()
  readonly #host: ProjectHost
  #status: Status = 'closed'
  /** between connect() and close() */
  #active = false
  /** the socket of the current attempt or connection */
  #socket: WebSocketLike | undefined
  /** the current socket is open */
  #open = false
  /** has been open since connect(): a drop is then "reconnecting" */
  #wasOpen = false
  /** counts attempts, so a slow token function of an abandoned attempt is ignored */
  #attempt = 0
  #retryTimer: ReturnType<typeof setTimeout> | undefined
  #pingTimer: ReturnType<typeof setInterval> | undefined
  #lastFrameAt = 0
  #pingSentAt: number | undefined
  #ref = 0

  constructor (options: FlowClientOptions) {
    super()
    if (typeof options.url !== 'string' || !/^wss?:\/\//i.test(options.url)) throw new TypeError('url must be a ws:// or wss:// URL')
    this.url = options.url
    this.#token = options.token
    const WebSocket = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket
    if (WebSocket === undefined) throw new TypeError('no global WebSocket here: pass one as the WebSocket option (in Node: the `ws` package)')
    this.#WebSocket = WebSocket
    this.#backoff = new Backoff(backoffOptions(options.reconnect))
    this.#pingIntervalMs = nonNegative('pingIntervalMs', options.pingIntervalMs, DEFAULT_PING_INTERVAL_MS)
    const presenceThrottleMs = nonNegative('presenceThrottleMs', options.presenceThrottleMs, DEFAULT_PRESENCE_THROTTLE_MS)
    const maxFrameBytes = nonNegative('maxFrameBytes', options.maxFrameBytes, DEFAULT_MAX_FRAME_BYTES)
    const backoff = this.#backoff.options
    this.#host = {
      send: (frame) => this.#send(frame),
      ref: () => ++this.#ref,
      emit: (event, ...args) => { this.emit(event, ...args) },
      detach: async (project, sendLeave) => { await this.#detach(project, sendLeave) },
      // Jittered, between half and all of the minimum reconnect delay.
      retryDelayMs: () => backoff.minDelayMs / 2 + backoffDelay(0, backoff) / 2,
      presenceThrottleMs,
      maxFrameBytes
    }
  }

  /** 'connecting' until the first open after connect(), then 'open', 'reconnecting' after a drop, 'closed' after close(). */
  get status (): Status { return this.#status }

  /** Starts connecting (and reconnecting whenever the connection drops) until close(). */
  connect (): void {
    if (this.#active) return
    this.#active = true
    this.#wasOpen = false
    this.#backoff.reset()
    this.#setStatus('connecting')
    void this.#connect()
  }

  /**
   * Closes the connection and stops reconnecting. Joined projects and their
   * unacknowledged ops are kept: connect() again resumes them from where
   * they were (leave() a project to drop it and reject its pending sends).
   */
  close (): void {
    if (!this.#active) return
    this.#active = false
    this.#attempt++
    clearTimeout(this.#retryTimer)
    this.#retryTimer = undefined
    const socket = this.#socket
    this.#lost()
    if (socket !== undefined) {
      try { socket.close(1000, 'client closed') } catch { /* already closing */ }
    }
    this.#setStatus('closed')
  }

  /**
   * Joins a project and returns its handle at once; the join is sent when
   * connected (and again after every reconnect, from the last seq seen).
   * Throws when the project id is invalid or already joined.
   */
  join (project: string, options: JoinOptions = {}): ProjectHandle {
    if (typeof project !== 'string' || !PROJECT_ID.test(project)) throw new FlowError('bad_request', 'a project id is 1 to 128 characters of A-Z a-z 0-9 _ . -')
    if (this.#projects.has(project)) throw new Error(`${project} is joined already: use its handle, or leave() it first`)
    if (options.since !== undefined && (!Number.isSafeInteger(options.since) || options.since < 0)) throw new RangeError('since must be an integer >= 0')
    const handle = new Project(project, options, this.#host)
    this.#projects.set(project, handle)
    if (this.#open) handle.open()
    return handle
  }

  /** The handle of a joined project. */
  project (project: string): ProjectHandle | undefined {
    return this.#projects.get(project)
  }

  // ---------------------------------------------------------------- connection

  async #connect (): Promise<void> {
    const attempt = ++this.#attempt
    let url: string
    let socket: WebSocketLike
    try {
      const token = typeof this.#token === 'function' ? await this.#token() : this.#token
      if (attempt !== this.#attempt || !this.#active) return
      url = withToken(this.url, token)
      socket = new this.#WebSocket(url)
    } catch (err) {
      if (attempt !== this.#attempt || !this.#active) return
      this.emit('error', new FlowError('connect_failed', `could not open a connection: ${err instanceof Error ? err.message : String(err)}`))
      this.#retry(1006, 'could not open a connection')
      return
    }
    this.#socket = socket
    socket.onopen = () => {
      if (socket === this.#socket) this.#opened()
    }
    socket.onmessage = (event) => {
      if (socket === this.#socket) this.#message(event.data)
    }
    socket.onclose = (event) => {
      if (socket !== this.#socket) return
      this.#lost()
      this.#retry(event.code, event.reason)
    }
    // A close event follows every error.
    socket.onerror = () => {}
  }

  #opened (): void {
    this.#open = true
    this.#wasOpen = true
    this.#backoff.opened()
    this.#lastFrameAt = Date.now()
    this.#pingSentAt = undefined
    this.#setStatus('open')
    if (this.#pingIntervalMs > 0) this.#pingTimer = setInterval(() => { this.#ping() }, this.#pingIntervalMs)
    for (const project of [...this.#projects.values()]) project.open()
  }

  /** The current socket is gone (or abandoned): projects forget what was in flight on it. */
  #lost (): void {
    const wasOpen = this.#open
    this.#socket = undefined
    this.#open = false
    clearInterval(this.#pingTimer)
    this.#pingTimer = undefined
    const leaving = [...this.#leaving.values()]
    this.#leaving.clear()
    for (const resolve of leaving) resolve()
    if (wasOpen) for (const project of this.#projects.values()) project.drop()
  }

  /** Schedules the next attempt: at once after the token of a stable connection expired, otherwise after a backoff delay. */
  #retry (code: number, reason: string): void {
    if (!this.#active) return
    let next: { attempt: number, delayMs: number }
    if (code === TOKEN_EXPIRED.code && reason === TOKEN_EXPIRED.reason && this.#backoff.stable) {
      // Not a failure: the connection lived its token's life. Reconnect now, with a fresh token.
      // (A token that expires at once, a stale one handed out again, backs off like any failure.)
      this.#backoff.reset()
      next = { attempt: 0, delayMs: 0 }
    } else {
      next = this.#backoff.next()
    }
    const retry: RetryInfo = { ...next, code, reason }
    this.#setStatus(this.#wasOpen ? 'reconnecting' : 'connecting', retry)
    clearTimeout(this.#retryTimer)
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined
      void this.#connect()
    }, next.delayMs)
  }

  /** Pings; a connection from which nothing arrived since the previous ping is replaced. */
  #ping (): void {
    const socket = this.#socket
    if (!this.#open || socket === undefined) return
    if (this.#pingSentAt !== undefined && this.#lastFrameAt < this.#pingSentAt) {
      // A half-open connection can take minutes to close by itself: leave it now.
      socket.onopen = socket.onmessage = socket.onclose = null
      try { socket.close(DEAD.code, DEAD.reason) } catch { /* closing already */ }
      this.#lost()
      this.#retry(DEAD.code, DEAD.reason)
      return
    }
    this.#pingSentAt = Date.now()
    this.#send('{"type":"ping"}')
  }

  #send (frame: string): boolean {
    const socket = this.#socket
    if (!this.#open || socket === undefined || socket.readyState !== OPEN) return false
    try {
      socket.send(frame)
      return true
    } catch {
      // Closing under us: the close event follows, and the frame is sent again after the reconnect if it matters.
      return false
    }
  }

  #setStatus (status: Status, retry?: RetryInfo): void {
    if (status === this.#status && retry === undefined) return
    this.#status = status
    if (retry === undefined) this.emit('status', status)
    else this.emit('status', status, retry)
  }

  // ---------------------------------------------------------------- frames

  #message (data: unknown): void {
    this.#lastFrameAt = Date.now()
    if (typeof data !== 'string') return
    const decoded = decodeFrame(data)
    if (!decoded.ok) {
      this.emit('error', new FlowError('invalid_frame', decoded.message))
      return
    }
    const frame = decoded.frame
    if (frame === undefined) return
    switch (frame.type) {
      case 'pong':
        return
      case 'left':
        this.#settleLeave(frame.ref)
        return
      case 'error': {
        if (this.#settleLeave(frame.ref)) return
        const project = frame.project === undefined ? undefined : this.#projects.get(frame.project)
        if (project !== undefined) project.frame(frame)
        else this.emit('error', serverError(frame.code, frame.message, frame.project))
        return
      }
      default:
        this.#projects.get(frame.project)?.frame(frame)
    }
  }

  #settleLeave (ref: unknown): boolean {
    if (typeof ref !== 'number') return false
    const resolve = this.#leaving.get(ref)
    if (resolve === undefined) return false
    this.#leaving.delete(ref)
    resolve()
    return true
  }

  async #detach (project: Project, sendLeave: boolean): Promise<void> {
    if (this.#projects.get(project.project) === project) this.#projects.delete(project.project)
    if (!sendLeave) return
    const ref = ++this.#ref
    if (!this.#send(JSON.stringify({ type: 'leave', project: project.project, ref } satisfies LeaveFrame))) return
    await new Promise<void>((resolve) => { this.#leaving.set(ref, resolve) })
  }
}

function nonNegative (name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be a finite number >= 0`)
  return value
}

/** The endpoint with `?token=` (browsers cannot set an Authorization header on a WebSocket). */
function withToken (url: string, token: string | undefined): string {
  if (token === undefined || token === '') return url
  const u = new URL(url)
  u.searchParams.set('token', token)
  return u.toString()
}
