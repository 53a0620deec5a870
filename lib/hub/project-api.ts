import type { Member, Op } from '../types.js'
import type { PutResult, Snapshot } from '../../ports/snapshot-store.js'
import { MAX_JSON_DEPTH, nestsDeeper } from '../protocol/frames.js'
import { BadRequestError, NotFoundError, UnavailableError } from '../errors.js'
import { isOpId, isProjectId, randomId } from '../ids.js'
import type { HubContext } from './context.js'
import type { Delivery } from './delivery.js'
import type { Snapshots } from './snapshots.js'
import { checkOp } from './op-hook.js'
import type { Identity } from './transport.js'

/** Result of an op posted over HTTP. */
export interface PostedOp {
  readonly project: string
  readonly id: string
  readonly seq: number
  readonly duplicate: boolean
}

/** Page of history for the HTTP API. */
export interface History {
  readonly project: string
  readonly epoch: string
  readonly seq: number
  readonly ops: readonly Op[]
  readonly reset: boolean
  /** (1.2, when asked) the snapshot the page starts at (its ops follow it), or null */
  readonly snapshot?: { readonly epoch: string, readonly seq: number, readonly state: unknown } | null
}

/**
 * The project API without a connection (what the HTTP routes call, and a
 * host app's server-side code): members, history, posting ops. Inputs are
 * checked here too, as they may not come through the routes' schemas.
 */
export class ProjectApi {
  readonly #ctx: HubContext
  readonly #delivery: Delivery
  readonly #snapshots: Snapshots
  readonly #draining: () => boolean

  constructor (ctx: HubContext, delivery: Delivery, snapshots: Snapshots, draining: () => boolean) {
    this.#ctx = ctx
    this.#delivery = delivery
    this.#snapshots = snapshots
    this.#draining = draining
  }

  /** Members of a project across every instance. */
  async members (project: string): Promise<Member[]> {
    assertProject(project)
    return await this.#ctx.ports.sessions.list(project)
  }

  /**
   * A page of history: ops with since < seq, at most `limit`. With
   * `snapshot`, a page starts at the project's snapshot when it is newer
   * than `since` (the snapshot, then the ops after it), and says `snapshot:
   * null` otherwise.
   */
  async history (project: string, since: number, limit: number, snapshot = false): Promise<History> {
    assertProject(project)
    const stored = snapshot ? await this.#snapshots.get(project) : null
    const from = stored !== null && stored.seq > since ? stored.seq : since
    // A page ends early rather than grow past FLOW_REPLAY_PAGE_BYTES; the caller continues from its last seq.
    const page = await this.#ctx.ports.log.read(project, from, limit, undefined, this.#ctx.config.replayPageBytes)
    const history = { project, epoch: page.epoch, seq: page.head, ops: page.reset ? [] : page.ops, reset: page.reset }
    if (!snapshot) return history
    const at = stored !== null && stored.seq > since && stored.epoch === page.epoch ? stored : null
    return { ...history, snapshot: at === null ? null : { epoch: at.epoch, seq: at.seq, state: at.state } }
  }

  /** The project's snapshot; not_found (404) when it has none. */
  async snapshot (project: string): Promise<Snapshot> {
    assertProject(project)
    const stored = await this.#snapshots.get(project)
    if (stored === null) throw new NotFoundError(`${project} has no snapshot`)
    return stored
  }

  /** Stores a snapshot a backend made (PUT): kept when newer and matching the log. */
  async putSnapshot (project: string, epoch: string, seq: number, state: unknown): Promise<PutResult> {
    assertProject(project)
    if (nestsDeeper(state, MAX_JSON_DEPTH - 1)) {
      throw new BadRequestError(`state nests arrays and objects deeper than ${MAX_JSON_DEPTH - 1} levels`)
    }
    if (this.#draining()) throw new UnavailableError('server is shutting down')
    return await this.#snapshots.put({ project, epoch, seq, state })
  }

  /**
   * An op posted over HTTP: appended and broadcast like a client op. With
   * the poster's identity (an HTTP request), the host's `onOp` check runs
   * first; without (the host publishing itself), it does not.
   */
  async post (project: string, userId: string, id: string | undefined, data: unknown,
    identity?: Identity): Promise<PostedOp> {
    assertProject(project)
    if (id !== undefined && !isOpId(id)) throw new BadRequestError('id must be 1 to 64 characters of A-Z a-z 0-9 _ -')
    // The same bound as a WebSocket frame, where data sits one level down.
    if (nestsDeeper(data, MAX_JSON_DEPTH - 1)) {
      throw new BadRequestError(`data nests arrays and objects deeper than ${MAX_JSON_DEPTH - 1} levels`)
    }
    if (this.#draining()) throw new UnavailableError('server is shutting down')
    const opId = id ?? randomId(12)
    const hook = this.#ctx.onOp
    if (hook !== undefined && identity !== undefined) await checkOp(hook, { project, id: opId, userId, data }, identity)
    const result = await this.#delivery.post(project, userId, opId, data)
    return { project, id: opId, seq: result.seq, duplicate: result.duplicate }
  }
}

function assertProject (project: string): void {
  if (!isProjectId(project)) throw new BadRequestError('project must be 1 to 128 characters of A-Z a-z 0-9 _ . -')
}
