import WebSocket from 'ws'
import type { Test } from 'tap'

export type Frame = Record<string, unknown> & { type: string }

export interface ClientOptions {
  readonly headers?: Record<string, string>
  /** ms to wait for a frame before `next` rejects (default 5,000) */
  readonly timeoutMs?: number
  /** the loopback address to connect from (another client machine: 127.0.0.2) */
  readonly localAddress?: string
}

/**
 * A protocol client for tests: a real `ws` socket whose incoming frames are
 * kept in order, so a test awaits the frame it expects instead of sleeping.
 */
export class TestClient {
  readonly socket: WebSocket
  /** every frame received, in order */
  readonly received: Frame[] = []
  readonly #waiters: Array<{ match: (f: Frame) => boolean, resolve: (f: Frame) => void, from: number }> = []
  readonly #timeoutMs: number
  #cursor = 0
  readonly closed: Promise<{ code: number, reason: string }>

  constructor (url: string, options: ClientOptions = {}) {
    this.#timeoutMs = options.timeoutMs ?? 5000
    this.socket = new WebSocket(url, { headers: options.headers, localAddress: options.localAddress })
    this.socket.on('message', (data, isBinary) => {
      if (isBinary) return
      const frame = JSON.parse((data as Buffer).toString('utf8')) as Frame
      this.received.push(frame)
      const index = this.received.length - 1
      for (const w of [...this.#waiters]) {
        if (index >= w.from && w.match(frame)) {
          this.#waiters.splice(this.#waiters.indexOf(w), 1)
          w.resolve(frame)
        }
      }
    })
    this.closed = new Promise((resolve) => {
      this.socket.on('close', (code, reason) => { resolve({ code, reason: String(reason) }) })
    })
    this.socket.on('error', () => {})
  }

  /** Resolves when the socket is open; rejects with the HTTP status on a refused upgrade. */
  async open (): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      if (this.socket.readyState === WebSocket.OPEN) { resolve(); return }
      this.socket.once('open', () => { resolve() })
      this.socket.once('unexpected-response', (_req, res) => { reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { statusCode: res.statusCode })) })
      this.socket.once('error', reject)
    })
    return this
  }

  send (frame: object | string): void {
    this.socket.send(typeof frame === 'string' ? frame : JSON.stringify(frame))
  }

  /**
   * The next frame (after the ones already taken by `next`) matching
   * `match`: a type name or a predicate. Frames skipped over stay in
   * `received`.
   */
  async next (match: string | ((f: Frame) => boolean)): Promise<Frame> {
    const pred = typeof match === 'string' ? (f: Frame) => f.type === match : match
    for (let i = this.#cursor; i < this.received.length; i++) {
      const f = this.received[i] as Frame
      if (pred(f)) { this.#cursor = i + 1; return f }
    }
    return await new Promise<Frame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1)
        reject(new Error(`no frame matching ${typeof match === 'string' ? match : 'predicate'} within ${this.#timeoutMs} ms; got ${JSON.stringify(this.received.slice(-5))}`))
      }, this.#timeoutMs)
      const waiter = {
        match: pred,
        from: this.received.length,
        resolve: (f: Frame) => {
          clearTimeout(timer)
          this.#cursor = this.received.indexOf(f) + 1
          resolve(f)
        }
      }
      this.#waiters.push(waiter)
    })
  }

  /** Sends a frame with a fresh ref and resolves the reply carrying that ref. */
  async request (frame: Record<string, unknown>): Promise<Frame> {
    const ref = `r${++refCounter}`
    const reply = this.next((f) => f.ref === ref)
    this.send({ ...frame, ref })
    return await reply
  }

  /** Joins and resolves `joined`. */
  async join (project: string, extra: Record<string, unknown> = {}): Promise<Frame> {
    const reply = await this.request({ type: 'join', project, ...extra })
    if (reply.type !== 'joined') throw new Error(`join failed: ${JSON.stringify(reply)}`)
    return reply
  }

  /** Frames of a type received so far. */
  all (type: string): Frame[] {
    return this.received.filter((f) => f.type === type)
  }

  close (): void {
    this.socket.close()
  }
}

let refCounter = 0

/** Opens a client, closed at the end of `t`. */
export async function connect (t: Test, url: string, options?: ClientOptions): Promise<TestClient> {
  const client = new TestClient(url, options)
  t.teardown(() => { client.socket.terminate() })
  return await client.open()
}
