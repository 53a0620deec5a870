import type { Broadcaster } from '../../ports/broadcaster.js'
import type { OperationLog } from '../../ports/operation-log.js'
import type { SessionStore } from '../../ports/session-store.js'
import type { SnapshotStore } from '../../ports/snapshot-store.js'
import type { FlowConfig } from '../config.js'
import type { Stats } from '../stats.js'
import type { IdentityBudgets } from './budgets.js'
import type { Outbox } from './outbox.js'
import type { OnOp } from './op-hook.js'
import type { ProjectRegistry } from './projects.js'
import type { CreationLimiter } from './rate-limiter.js'

/** The ports the hub works on. */
export interface HubPorts {
  readonly sessions: SessionStore
  readonly broadcaster: Broadcaster
  readonly log: OperationLog
  readonly snapshots: SnapshotStore
}

export interface HubLogger {
  info (obj: object, msg?: string): void
  warn (obj: object, msg?: string): void
  error (obj: object, msg?: string): void
  debug (obj: object, msg?: string): void
}

export type HubConfig = Pick<FlowConfig,
  'sessionTtlSeconds' | 'maxPayloadBytes' | 'maxPresenceBytes' | 'maxProjectsPerConnection' |
  'rateLimit' | 'rateBurst' | 'heartbeatMs' | 'maxBufferedBytes' | 'shutdownTimeoutMs' | 'maxOpsInFlight' |
  'replayPageBytes' | 'replayBytesPerSecond' | 'projectsPerMinute' | 'projectIdleTtl' |
  'identityReadBytesPerSecond' | 'identityWriteBytesPerSecond' |
  'snapshotMaxBytes' | 'snapshotEvery' | 'joinedMembersMax' | 'resumeGraceMs' | 'memberBatchMs'>

/** What the parts of the hub share: settings, ports, the logger and counters, the projects here, the outbox. */
export interface HubContext {
  readonly config: HubConfig
  readonly ports: HubPorts
  /** the logger (the op log is `ports.log`) */
  readonly logger: HubLogger
  readonly stats: Stats
  readonly projects: ProjectRegistry
  readonly outbox: Outbox
  /** new projects per identity and minute */
  readonly creations: CreationLimiter
  /** bytes each identity is sent (history) and sends, per second, across its connections and requests */
  readonly budgets: IdentityBudgets
  /** the host's check of each op a client sends, if any */
  readonly onOp: OnOp | undefined
}
