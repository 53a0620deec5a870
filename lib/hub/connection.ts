import type { LocalMember } from './project.js'
import type { Identity, SharedFrame, Transport } from './transport.js'
import type { AbuseTracker, ReplayBudget, TokenBucket } from './rate-limiter.js'

/**
 * What a connection that joined nothing has as its projects: one empty map
 * for all of them (an idle connection that never joins holds no table of
 * its own). Never written: {@link Connection.joined} makes the connection's own.
 */
const NO_PROJECTS: ReadonlyMap<string, LocalMember> = new Map()
/** The settled start of every connection's chains: one promise for all, not two per connection. */
const SETTLED: Promise<void> = Promise.resolve()

/**
 * One client connection: its identity, its projects and its limits.
 *
 * It lives as long as its socket, tens of thousands of them per instance:
 * what most connections never need (a projects map before the first join,
 * an abuse tracker before the first dropped frame) is made on first use.
 */
export class Connection {
  readonly id: string
  readonly transport: Transport
  readonly identity: Identity
  /**
   * Whose byte budgets (IdentityBudgets) this connection spends: its user's,
   * or its address's when clients carry no credential; undefined: none.
   */
  readonly budgetKey: string | undefined
  #projects: Map<string, LocalMember> | undefined
  readonly bucket: TokenBucket
  /** its streak of dropped frames (rate limit): made on the first drop */
  abuse: AbuseTracker | undefined
  missedPings = 0
  closed = false
  /**
   * (1.3) the connection ended without the client saying so (no close frame,
   * or the server closed it): its sessions that joined with `resume` are held
   * for the grace before they leave
   */
  dropped = false
  /** frames that change membership run one after another */
  chain: Promise<void> = SETTLED
  /** frames waiting in the chain, bounded so a flood cannot queue forever */
  queued = 0
  /** ops waiting for the host's check (onOp), in the order sent */
  checks: Promise<void> = SETTLED
  checking = 0
  /** the history its replays may still be sent this second; made on its first replay */
  replayBudget: ReplayBudget | undefined
  /** ms since the Unix epoch until which its frames are not read (its identity sent past its budget) */
  pausedUntil = 0

  readonly #sink: (conn: Connection, frame: string | SharedFrame) => void

  /** `sink` sends for the hub (one function for every connection, not a closure each). */
  constructor (id: string, transport: Transport, identity: Identity, budgetKey: string | undefined,
    limits: { bucket: TokenBucket },
    sink: (conn: Connection, frame: string | SharedFrame) => void) {
    this.#sink = sink
    this.id = id
    this.transport = transport
    this.identity = identity
    this.budgetKey = budgetKey
    this.bucket = limits.bucket
  }

  /** joined projects; change them with {@link joined} and {@link left} */
  get projects (): ReadonlyMap<string, LocalMember> { return this.#projects ?? NO_PROJECTS }

  /** The connection joined `project` as `member`. */
  joined (project: string, member: LocalMember): void {
    (this.#projects ??= new Map()).set(project, member)
  }

  /** The connection left `project` (its last project: the map goes too). */
  left (project: string): void {
    const projects = this.#projects
    if (projects === undefined) return
    projects.delete(project)
    if (projects.size === 0) this.#projects = undefined
  }

  /** Sends one frame, minding the slow-consumer bound. */
  send (frame: string | SharedFrame): void {
    this.#sink(this, frame)
  }
}
