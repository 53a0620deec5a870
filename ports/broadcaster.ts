import type { Member, Op, Presence } from '../lib/types.js'

/** What instances tell each other about a project. */
export type BroadcastMessage =
  /**
   * A sequenced op. `relay` is set when an instance-local log gave the seq
   * (memory op log): an instance with another log appends it to its own
   * (idempotent by op id) rather than trusting that seq.
   */
  | { readonly kind: 'op', readonly epoch: string, readonly op: Op, readonly relay?: boolean }
  | { readonly kind: 'member', readonly event: 'join' | 'leave', readonly member: Member }
  | { readonly kind: 'presence', readonly sessionId: string, readonly userId: string, readonly state: Presence }

export type BroadcastHandler = (message: BroadcastMessage) => void

/**
 * Fan-out of project messages between server instances.
 *
 * Local members are served by the hub directly; a broadcaster only carries
 * messages to *other* instances. Delivery is at most once and, per publisher
 * and project, in publish order; the op log is the source of truth that fills
 * gaps.
 *
 * Adapters: MemoryBroadcaster (in-process bus) and RedisBroadcaster (Pub/Sub).
 */
export interface Broadcaster {
  /**
   * Starts delivering the project's messages published by other
   * broadcasters to `handler`. One handler per project: subscribing again
   * replaces it. Resolves once messages published afterwards will arrive.
   */
  subscribe (project: string, handler: BroadcastHandler): Promise<void>

  /** Stops delivery for the project. Idempotent. */
  unsubscribe (project: string): Promise<void>

  /**
   * Sends the message to every other broadcaster subscribed to the project;
   * never to this broadcaster's own handler (no echo). Messages are cloned:
   * a handler never shares an object with the publisher. Rejects when the
   * transport fails; the message is then lost.
   */
  publish (project: string, message: BroadcastMessage): Promise<void>

  /** Projects this broadcaster is subscribed to. */
  subscriptions (): Promise<readonly string[]>

  /** Frees what the adapter created; unsubscribes everything. Idempotent. */
  close (): Promise<void>
}
