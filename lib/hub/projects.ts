import type { BroadcastMessage } from '../../ports/broadcaster.js'
import type { Stats } from '../stats.js'
import { NO_EPOCH, type LogPosition } from '../types.js'
import type { HubLogger, HubPorts } from './context.js'
import { LocalProject } from './project.js'
import { creationRefused, type CreationLimiter } from './rate-limiter.js'

/** Projects whose idle expiry one touch call extends. */
const TOUCH_BATCH = 1000

export interface ProjectEvents {
  /** a message of another instance about the project */
  readonly message: (lp: LocalProject, message: BroadcastMessage) => void
  /** the project's position was read: ops that arrived meanwhile may be deliverable */
  readonly ready: (lp: LocalProject) => void
}

/**
 * The projects this instance serves (those with a member or a join in
 * progress), and their link to the other instances: a project is subscribed
 * to while it is here, and unsubscribed when its last reference goes.
 */
export class ProjectRegistry {
  readonly #projects = new Map<string, LocalProject>()
  readonly #ports: HubPorts
  readonly #stats: Stats
  readonly #logger: HubLogger
  readonly #events: ProjectEvents
  readonly #creations: CreationLimiter
  readonly #memberBatchMs: number

  /** `memberBatchMs`: the window member events are coalesced over for the members that take batches (1.3). */
  constructor (ports: HubPorts, stats: Stats, logger: HubLogger, events: ProjectEvents, creations: CreationLimiter,
    memberBatchMs = 0) {
    this.#memberBatchMs = memberBatchMs
    this.#ports = ports
    this.#stats = stats
    this.#logger = logger
    this.#events = events
    this.#creations = creations
  }

  get size (): number { return this.#projects.size }

  get (name: string): LocalProject | undefined {
    return this.#projects.get(name)
  }

  values (): IterableIterator<LocalProject> {
    return this.#projects.values()
  }

  /** Whether `lp` is still the project served under its name (not released meanwhile). */
  isCurrent (lp: LocalProject): boolean {
    return this.#projects.get(lp.name) === lp
  }

  /**
   * The local project, created (subscribed, its log opened) on first use;
   * one more reference to it. A project whose log does not exist yet is
   * created for `creator`, within its budget of new projects per minute;
   * past it the acquire fails with `rate_limited`.
   */
  async acquire (project: string, creator: string): Promise<LocalProject> {
    let lp = this.#projects.get(project)
    if (lp === undefined) {
      const created = new LocalProject(project, this.#memberBatchMs)
      created.onDeliver = (op) => { this.#stats.deliveryLatency.observe(Date.now() - op.ts) }
      this.#projects.set(project, created)
      created.ready = (async () => {
        await this.#ports.broadcaster.subscribe(project, (message) => { this.#events.message(created, message) })
        const head = await this.#position(project, creator)
        created.epoch = head.epoch
        // Ops broadcast while we read the head may be pending already.
        created.delivered = head.seq
        for (const seq of [...created.pending.keys()]) if (seq <= head.seq) created.pending.delete(seq)
        this.#events.ready(created)
      })()
      lp = created
    }
    lp.refs++
    try {
      await lp.ready
    } catch (err) {
      this.release(lp)
      throw err
    }
    return lp
  }

  /** The project's position, its log created when it has none and `creator` may create one. */
  async #position (project: string, creator: string): Promise<LogPosition> {
    if (this.#creations.allows(creator, Date.now())) {
      const opened = await this.#ports.log.open(project)
      if (opened.created) this.#creations.created(creator, Date.now())
      return opened
    }
    const head = await this.#ports.log.head(project)
    if (head.epoch === NO_EPOCH) throw creationRefused(project)
    return head
  }

  /** Extends the idle expiry of every project served here (they have members, so they are not idle). */
  async touchAll (): Promise<void> {
    const names = [...this.#projects.keys()]
    for (let i = 0; i < names.length; i += TOUCH_BATCH) {
      await this.#ports.log.touch(names.slice(i, i + TOUCH_BATCH))
    }
  }

  /** Drops one reference; at zero the project stops listening and sends the acks still waiting. */
  release (lp: LocalProject): void {
    lp.refs--
    if (lp.refs > 0 || !this.isCurrent(lp)) return
    this.#projects.delete(lp.name)
    lp.dispose()
    this.#ports.broadcaster.unsubscribe(lp.name).catch((err: unknown) => {
      this.#logger.warn({ err, project: lp.name }, 'unsubscribe failed')
    })
  }

  /** Tells the other instances (at most once; a failure is counted and logged). */
  publish (project: string, message: BroadcastMessage): void {
    this.#stats.broadcastsPublished++
    this.#ports.broadcaster.publish(project, message).catch((err: unknown) => {
      this.#stats.broadcastErrors++
      this.#logger.warn({ err, project }, 'broadcast failed')
    })
  }
}
