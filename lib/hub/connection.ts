import type { LocalMember } from './project.js'
import type { Identity, Transport } from './transport.js'
import { AbuseTracker, TokenBucket } from './rate-limiter.js'

/** One client connection: its identity, its projects and its limits. */
export class Connection {
  readonly id: string
  readonly transport: Transport
  readonly identity: Identity
  /** joined projects */
  readonly projects = new Map<string, LocalMember>()
  readonly bucket: TokenBucket
  readonly abuse: AbuseTracker
  missedPings = 0
  closed = false
  /** frames that change membership run one after another */
  chain: Promise<void> = Promise.resolve()
  /** frames waiting in the chain, bounded so a flood cannot queue forever */
  queued = 0

  constructor (id: string, transport: Transport, identity: Identity, bucket: TokenBucket, abuse: AbuseTracker) {
    this.id = id
    this.transport = transport
    this.identity = identity
    this.bucket = bucket
    this.abuse = abuse
  }

  /** Set by the hub: sends one frame, minding the slow-consumer bound. */
  send: (frame: string) => void = () => {}
}
