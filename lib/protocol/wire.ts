/**
 * The wire types of protocol v1 (docs/protocol.md): the one definition the server,
 * the client (client/, through `import type` only) and the tests share.
 * Types only: this file imports nothing and emits no runtime code, so the
 * client's build keeps no import of it.
 */

// ---------------------------------------------------------------- data

/**
 * A client correlation value (a string of at most 64 characters, or an integer), echoed on the direct reply and
 * on errors about its frame.
 */
export type Ref = string | number

/** A member's presence: any JSON object, at most 4 KiB as JSON by default. */
export type Presence = Readonly<Record<string, unknown>>

/** One session's membership of one project (docs/protocol.md, `member`). */
export interface Member {
  readonly sessionId: string
  readonly userId: string
  readonly presence: Presence
  /** ms since the Unix epoch */
  readonly joinedAt: number
}

/** A sequenced operation: the `op` frame without its `type`, and an op of `GET /projects/:project/ops`. */
export interface Op {
  readonly project: string
  /** the project's seq of this op: 1, 2, 3, ... within an epoch */
  readonly seq: number
  /** the op id: the client's idempotency key, or one the server made */
  readonly id: string
  readonly userId: string
  /** null for ops posted over HTTP */
  readonly sessionId: string | null
  /** any JSON value; the server does not interpret it */
  readonly data: unknown
  /** server ms since the Unix epoch, set when the op was accepted */
  readonly ts: number
}

/** The codes an `error` frame carries (docs/protocol.md, "Error codes"). */
export type ErrorFrameCode =
  | 'bad_request'
  | 'unknown_type'
  | 'forbidden'
  | 'not_joined'
  | 'rate_limited'
  | 'limit_exceeded'
  | 'unavailable'
  | 'internal'

/**
 * Every error code the server answers with: the `error` frame's, `unauthorized` (HTTP 401: a missing or
 * invalid token; never in a frame) and `not_found` (HTTP 404, 1.2: `GET /projects/:project/snapshot` of a project
 * that has none).
 */
export type ErrorCode = ErrorFrameCode | 'unauthorized' | 'not_found'

// ---------------------------------------------------------------- client to server

/**
 * Joins a project; answered by `joined`, then the replay of the ops after `since` (or `reset`) when `since` is
 * given.
 */
export interface JoinFrame {
  readonly type: 'join'
  readonly project: string
  /** the last seq the client has (integer >= 0) */
  readonly since?: number
  /** the epoch `since` belongs to; ignored without `since` */
  readonly epoch?: string
  /** this member's presence in `members` (an object, at most 4 KiB as JSON) */
  readonly presence?: Presence
  /**
   * (1.2) the client takes a `snapshot`: where the history cannot serve `since` (or without `since`), the
   * server sends the project's state and the ops after it instead of `reset`
   */
  readonly snapshot?: true
  /**
   * (1.3) what this session takes beyond version 1 (names it does not know are ignored):
   * `member_batch` (member events of one event-loop turn in one `members` frame), `member_page` (`joined`
   * lists the first FLOW_JOINED_MEMBERS_MAX members, the rest by `list_members`), `resume` (`joined` carries a
   * resume token; an unclean drop is held for a grace before its leave is announced)
   */
  readonly features?: readonly string[]
  /** (1.3) the resume token of an earlier session of this project and user: it is resumed when still there */
  readonly resume?: string
  readonly ref?: Ref
}

/** (1.3) The features a `join` may ask for. */
export type JoinFeature = 'member_batch' | 'member_page' | 'resume'

/**
 * (1.3) Asks for a page of the members list (for a session that joined with `member_page`): the members after
 * the cursor `after` (from the start without it), at most `limit`; answered by `member_page`.
 */
export interface ListMembersFrame {
  readonly type: 'list_members'
  readonly project: string
  readonly after?: string
  readonly limit?: number
  readonly ref?: Ref
}

/** Leaves a project; answered by `left`. */
export interface LeaveFrame { readonly type: 'leave', readonly project: string, readonly ref?: Ref }

/**
 * Appends an op (`id`: its idempotency key, made by the server when missing); `ack` to the sender, `op` to every
 * other member.
 */
export interface OpFrame {
  readonly type: 'op'
  readonly project: string
  readonly id?: string
  readonly data: unknown
  readonly ref?: Ref
}

/**
 * Sets this member's presence (an object, at most 4 KiB); not answered, `presence` to every other member.
 * (`ref`: not in v1's table; only echoed on an error.)
 */
export interface PresenceFrame {
  readonly type: 'presence'
  readonly project: string
  readonly state: Presence
  readonly ref?: Ref
}

/** Asks for the ops after `since` (in `epoch`): answered by the replay or `reset`, then `synced`. */
export interface SyncFrame {
  readonly type: 'sync'
  readonly project: string
  readonly since: number
  readonly epoch?: string
  readonly ref?: Ref
  /** (1.2) as `join`'s: a `snapshot` and the ops after it where the history cannot serve `since` */
  readonly snapshot?: true
}

/** Asks for a `pong`. */
export interface PingFrame { readonly type: 'ping', readonly ref?: Ref }

/**
 * (1.2) Stores the project's state at `seq` of `epoch` (what the ops `1..seq` fold into); answered by
 * `stored`. Kept only when the epoch is current, `seq` is at most the head, and it is newer than the stored one.
 */
export interface SnapshotUpload {
  readonly type: 'snapshot'
  readonly project: string
  readonly epoch: string
  readonly seq: number
  /** any JSON value, at most FLOW_SNAPSHOT_MAX_BYTES as JSON */
  readonly state: unknown
  readonly ref?: Ref
}

/** Every frame a client sends. */
export type ClientFrame = JoinFrame | LeaveFrame | OpFrame | PresenceFrame | SyncFrame | PingFrame | SnapshotUpload |
  ListMembersFrame

// ---------------------------------------------------------------- server to client

/**
 * Answers `join`: the session, the project's epoch and head `seq` (0 when none), and its members, the joiner
 * included.
 */
export interface JoinedFrame {
  readonly type: 'joined'
  readonly project: string
  readonly sessionId: string
  readonly userId: string
  readonly epoch: string
  /** the project's head: last assigned seq, 0 when none */
  readonly seq: number
  /** the members in join order, the joiner included; with `member_page` (1.3), the first FLOW_JOINED_MEMBERS_MAX */
  readonly members: readonly Member[]
  /** (1.3, `member_page`) how many members the project has */
  readonly count?: number
  /** (1.3, `member_page`) the cursor of the rest (`list_members`' `after`), null when `members` is the whole list */
  readonly next?: string | null
  /** (1.3, `resume`) the secret that resumes this session on a reconnect: give it to nobody */
  readonly resume?: string
  /** (1.3, `resume`) true when this join resumed the session of the `resume` token sent */
  readonly resumed?: boolean
  readonly ref?: Ref
}

/** Answers `leave`. */
export interface LeftFrame { readonly type: 'left', readonly project: string, readonly ref?: Ref }

/** Answers `op` to its sender once the op is in the log: its `id` and `seq`. */
export interface AckFrame {
  readonly type: 'ack'
  readonly project: string
  readonly id: string
  readonly seq: number
  readonly ref?: Ref
}

/** Another member's op, live or replayed, in seq order (the `op` frame the server sends; `OpFrame` is the client's). */
export interface OpMessage extends Op { readonly type: 'op' }

/** A member joined or left (never about the session it is sent to). */
export interface MemberFrame {
  readonly type: 'member'
  readonly project: string
  readonly event: 'join' | 'leave'
  readonly member: Member
}

/** (1.3) One member event of a `members` frame. */
export interface MemberEvent {
  readonly event: 'join' | 'leave'
  readonly member: Member
}

/**
 * (1.3) The member events of one event-loop turn, in order (to a session that joined with `member_batch`, in
 * place of one `member` frame each). Never about the session it is sent to.
 */
export interface MembersFrame {
  readonly type: 'members'
  readonly project: string
  readonly events: readonly MemberEvent[]
}

/** (1.3) Answers `list_members`: a page of the members list in join order, and the cursor of the next. */
export interface MemberPageFrame {
  readonly type: 'member_page'
  readonly project: string
  readonly count: number
  readonly members: readonly Member[]
  /** the cursor of the next page, null at the end */
  readonly next: string | null
  readonly ref?: Ref
}

/** Another member's presence changed (the `presence` frame the server sends; `PresenceFrame` is the client's). */
export interface PresenceMessage {
  readonly type: 'presence'
  readonly project: string
  readonly sessionId: string
  readonly userId: string
  readonly state: Presence
}

/** Ends the answer to `sync`: the epoch and the head `seq` at the end of the replay. */
export interface SyncedFrame {
  readonly type: 'synced'
  readonly project: string
  readonly epoch: string
  readonly seq: number
  readonly ref?: Ref
}

/**
 * The history no longer reaches back to what the client asked for, or the epoch changed: reload state, then
 * continue from `seq` (the head).
 */
export interface ResetFrame {
  readonly type: 'reset'
  readonly project: string
  readonly epoch: string
  readonly seq: number
}

/** Answers `ping` with the server's time (ms since the Unix epoch). */
export interface PongFrame { readonly type: 'pong', readonly ts: number, readonly ref?: Ref }

/** Refuses one frame (with that frame's `project` and `ref` when it had usable ones); the connection stays open. */
export interface ErrorFrame {
  readonly type: 'error'
  readonly code: ErrorFrameCode
  readonly message: string
  readonly project?: string
  readonly ref?: Ref
}

/**
 * (1.2) The project's state at `seq` of `epoch`, in answer to a `join` or `sync` with `snapshot: true`: the ops
 * after `seq` follow, then live ops, with no gap and no duplicate.
 */
export interface SnapshotFrame {
  readonly type: 'snapshot'
  readonly project: string
  readonly epoch: string
  readonly seq: number
  readonly state: unknown
}

/** (1.2) Answers a `snapshot` upload: whether it was kept, and why not. */
export interface StoredFrame {
  readonly type: 'stored'
  readonly project: string
  readonly epoch: string
  readonly seq: number
  readonly stored: boolean
  /**
   * why it was not kept: `epoch` (not the current one), `ahead` (above the head), `older` (a newer one is kept),
   * `disabled` (this server keeps no snapshots)
   */
  readonly reason?: 'epoch' | 'ahead' | 'older' | 'disabled'
  readonly ref?: Ref
}

/** Every frame the server sends. */
export type ServerFrame =
  | JoinedFrame
  | LeftFrame
  | AckFrame
  | OpMessage
  | MemberFrame
  | MembersFrame
  | MemberPageFrame
  | PresenceMessage
  | SyncedFrame
  | ResetFrame
  | PongFrame
  | ErrorFrame
  | SnapshotFrame
  | StoredFrame
