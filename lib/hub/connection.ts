import type { LocalMember } from './project.js'
import type { Identity, SharedFrame, Transport } from './transport.js'
import type { AbuseTracker, ReplayBudget, TokenBucket } from './rate-limiter.js'

/** One client connection: its identity, its projects and its limits. */
export class Connection {
  readonly id: string
  readonly transport: Transport
  readonly identity: Identity
  /**
   * Whose byte budgets (IdentityBudgets) this connection spends: its user's,
   * or its address's when clients carry no credential; undefined: none.
   */
  readonly budgetKey: string | undefined
  /** joined projects */
  readonly projects = new Map<string, LocalMember>()
  readonly bucket: TokenBucket
  readonly abuse: AbuseTracker
  missedPings = 0
  closed = false
  /**
   * (1.3) the connection ended without the client saying so (no close frame,
   * or the server closed it): its sessions that joined with `resume` are held
   * for the grace before they leave
   */
  dropped = false
  /** frames that change membership run one after another */
  chain: Promise<void> = Promise.resolve()
  /** frames waiting in the chain, bounded so a flood cannot queue forever */
  queued = 0
  /** ops waiting for the host's check (onOp), in the order sent */
  checks: Promise<void> = Promise.resolve()
  checking = 0
  /** the history its replays may still be sent this second; made on its first replay */
  replayBudget: ReplayBudget | undefined
  /** ms since the Unix epoch until which its frames are not read (its identity sent past its budget) */
  pausedUntil = 0

  readonly #sink: (conn: Connection, frame: string | SharedFrame) => void

  /** `sink` sends for the hub (one function for every connection, not a closure each). */
  constructor (id: string, transport: Transport, identity: Identity, budgetKey: string | undefined,
    limits: { bucket: TokenBucket, abuse: AbuseTracker },
    sink: (conn: Connection, frame: string | SharedFrame) => void) {
    this.#sink = sink
    this.id = id
    this.transport = transport
    this.identity = identity
    this.budgetKey = budgetKey
    this.bucket = limits.bucket
    this.abuse = limits.abuse
  }

  /** Sends one frame, minding the slow-consumer bound. */
  send (frame: string | SharedFrame): void {
    this.#sink(this, frame)
  }
}
