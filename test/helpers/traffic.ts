/**
 * A traffic generator for outage tests: protocol clients that keep sending
 * ops with ids they choose (`${name}-${n}`), pipelined up to a window, and
 * record what the server answers, so a test can check the op log exactly
 * afterwards. Like a real client, a sender resends an op that got
 * `unavailable` with the same id (the server's idempotency makes that safe).
 */
import type { Test } from 'tap'
import { connect, type Frame, type TestClient } from './client.js'
import { waitFor } from './wait.js'

export interface TrafficOptions {
  /** the project every sender joins */
  readonly project: string
  /** ops one sender may have unacknowledged at once (default 4) */
  readonly window?: number
  /** a sender sends at most one op per tick of this many ms (default 20) */
  readonly intervalMs?: number
  /** ms `next` waits for a frame (default 15,000: outages are slow) */
  readonly timeoutMs?: number
}

/** One client sending ops to one instance. */
export class Sender {
  readonly name: string
  readonly client: TestClient
  readonly project: string
  /** op ids in the order they were first sent */
  readonly sent: string[] = []
  /** op id -> the seq of every ack it got, in arrival order */
  readonly acks = new Map<string, number[]>()
  /** op ids that were sent again after an `unavailable` error */
  readonly resent = new Set<string>()
  /** error frames other than `unavailable` for an op (none expected) */
  readonly errors: Frame[] = []
  /** `unavailable` errors answered to ops (each followed by a resend) */
  unavailable = 0
  /** the `joined` frame */
  joined: Frame | undefined
  readonly #window: number
  /** sent and not acknowledged yet */
  readonly #outstanding = new Set<string>()
  /** got `unavailable`: to send again, oldest first */
  readonly #retry: string[] = []
  #timer: NodeJS.Timeout | undefined
  #next = 0

  constructor (name: string, client: TestClient, project: string, window: number) {
    this.name = name
    this.client = client
    this.project = project
    this.#window = window
    client.socket.on('message', (data, isBinary) => {
      if (isBinary) return
      this.#onFrame(JSON.parse((data as Buffer).toString('utf8')) as Frame)
    })
  }

  /** Ops acknowledged so far (an op acked twice counts once). */
  get acked (): number {
    return this.acks.size
  }

  /** Ops sent and not acknowledged yet. */
  get outstanding (): number {
    return this.#outstanding.size
  }

  /** Starts sending one op per tick while fewer than `window` are unacknowledged. */
  start (intervalMs: number): void {
    if (this.#timer !== undefined) return
    this.#timer = setInterval(() => { this.#tick() }, intervalMs)
  }

  /** Stops sending new ops; resends of ops that got `unavailable` still go out. */
  pause (): void {
    clearInterval(this.#timer)
    this.#timer = undefined
  }

  #tick (): void {
    const id = this.#retry.shift()
    if (id !== undefined) {
      this.resent.add(id)
      this.#send(id)
      return
    }
    if (this.#outstanding.size >= this.#window) return
    const fresh = `${this.name}-${this.#next++}`
    this.sent.push(fresh)
    this.#outstanding.add(fresh)
    this.#send(fresh)
  }

  #send (id: string): void {
    // The ref is the id: an error names the op it answers.
    this.client.send({ type: 'op', project: this.project, id, ref: id, data: { from: this.name, id } })
  }

  #onFrame (frame: Frame): void {
    if (frame.project !== this.project) return
    if (frame.type === 'ack') {
      const id = frame.id as string
      const seqs = this.acks.get(id) ?? []
      seqs.push(frame.seq as number)
      this.acks.set(id, seqs)
      this.#outstanding.delete(id)
      return
    }
    if (frame.type !== 'error') return
    const ref = frame.ref
    if (frame.code === 'unavailable' && typeof ref === 'string' && this.#outstanding.has(ref)) {
      this.unavailable++
      this.#retry.push(ref)
      // Resends go out even once the sender is paused: the op must be acked in the end.
      if (this.#timer === undefined) setImmediate(() => { this.#drainRetries() })
      return
    }
    this.errors.push(frame)
  }

  #drainRetries (): void {
    for (let id = this.#retry.shift(); id !== undefined; id = this.#retry.shift()) {
      this.resent.add(id)
      this.#send(id)
    }
  }

  /** Stops sending, then waits until every op sent was acknowledged. */
  async stop (timeoutMs: number): Promise<void> {
    this.pause()
    this.#drainRetries()
    await waitFor(() => this.#outstanding.size === 0 && this.#retry.length === 0, {
      what: `${this.name}'s ${this.#outstanding.size} unacknowledged ops (${[...this.#outstanding].slice(0, 5).join(', ')})`,
      timeoutMs,
      intervalMs: 20
    })
  }
}

/** Several senders on several instances, started and stopped together. */
export class Traffic {
  readonly senders: readonly Sender[]
  readonly project: string
  readonly #intervalMs: number

  constructor (senders: readonly Sender[], project: string, intervalMs: number) {
    this.senders = senders
    this.project = project
    this.#intervalMs = intervalMs
  }

  start (): void {
    for (const s of this.senders) s.start(this.#intervalMs)
  }

  /**
   * Waits until every sender has had `count` more ops acknowledged than it
   * had when called: proof that traffic flows (through an outage, or after it).
   */
  async acked (count: number, what: string, timeoutMs = 10_000): Promise<void> {
    const targets = this.senders.map((s) => s.acked + count)
    await waitFor(() => this.senders.every((s, i) => s.acked >= (targets[i] as number)), {
      what: `${count} more acks per sender ${what}`,
      timeoutMs,
      intervalMs: 20
    })
  }

  /** Stops every sender and waits for all their ops to be acknowledged. */
  async stop (timeoutMs = 15_000): Promise<void> {
    for (const s of this.senders) s.pause()
    await Promise.all(this.senders.map(async (s) => { await s.stop(timeoutMs) }))
  }
}

/**
 * Connects `perInstance` senders to each WebSocket URL (named `i<instance>c<n>`,
 * with that userId), joins them to `options.project` and returns the traffic,
 * not started. Every socket is closed at the end of `t`.
 */
export async function createTraffic (t: Test, urls: readonly string[], perInstance: number, options: TrafficOptions): Promise<Traffic> {
  const window = options.window ?? 4
  const senders: Sender[] = []
  for (const [i, url] of urls.entries()) {
    for (let n = 0; n < perInstance; n++) {
      const name = `i${i}c${n}`
      const client = await connect(t, `${url}?userId=${name}`, { timeoutMs: options.timeoutMs ?? 15_000 })
      const sender = new Sender(name, client, options.project, window)
      sender.joined = await client.join(options.project)
      senders.push(sender)
    }
  }
  t.teardown(() => { for (const s of senders) s.pause() })
  return new Traffic(senders, options.project, options.intervalMs ?? 20)
}
