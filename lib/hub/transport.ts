/** How {@link Transport.close} treats the frames it still holds. */
export interface CloseOptions {
  /**
   * Drop the frames the transport still holds and send the close frame at
   * once, ahead of them (a slow consumer): it follows only the bytes already
   * handed to the network. Without it the close frame follows every frame
   * sent before the close.
   */
  readonly discardQueued?: boolean
}

/**
 * What the hub needs of a client connection. The WebSocket plugin adapts a
 * `ws` socket to it; tests may use any object of this shape.
 */
export interface Transport {
  /**
   * Queues one text frame; frames leave in the order they were sent. A
   * {@link SharedFrame} goes to many connections: the transport may encode
   * it once (`encoded`) and send the same bytes to each of them. A frame
   * sent once the connection is closing is dropped.
   */
  send (frame: string | SharedFrame): void
  /**
   * Bytes sent and not yet handed to the network: those the transport holds
   * and those the socket buffers. Frames sent in the current turn of the
   * event loop may be left out until the next one (they leave together), so
   * a burst of one turn is not taken for a slow reader.
   */
  readonly bufferedAmount: number
  /**
   * Resolves once at most `maxBuffered` bytes are unsent (counting the
   * frames of the current turn), at once when that holds already. Also
   * resolves once the connection closes or the transport is told to close
   * or terminate: the caller then finds the connection closed
   * (`Connection.closed`) and stops sending. Never rejects. For pacing: send
   * a page, wait for the connection to drain, send the next.
   */
  whenDrained (maxBuffered: number): Promise<void>
  /**
   * Stops reading the client's frames for `ms` (back-pressure: what the
   * client sends meanwhile waits in the network). Frames already received
   * may still arrive. A longer pause extends a shorter one; a close resumes
   * reading, so the close handshake completes.
   */
  pause (ms: number): void
  /** Sends a WebSocket ping. */
  ping (): void
  /**
   * Starts a clean close with this code and reason; frames sent after it are
   * dropped. The close frame follows the frames sent before, or with
   * `discardQueued` goes ahead of those the transport still holds. The
   * transport ends the connection when the peer completes the handshake and
   * drops it when the peer does not within a bounded time: nobody else needs
   * a timer. Calling it again only applies `discardQueued`.
   */
  close (code: number, reason: string, options?: CloseOptions): void
  /** Drops the connection at once, and what it had queued. */
  terminate (): void
}

/**
 * A text frame sent to many connections (an op, a member or presence
 * change): serialised once, and encoded once by the transport that sends it,
 * whatever the number of members.
 */
export class SharedFrame {
  readonly text: string
  #encoding: ((text: string) => unknown) | undefined
  #encoded: unknown

  constructor (text: string) {
    this.text = text
  }

  /** The frame as `encode` makes it, computed on first use and kept. */
  encoded<T> (encode: (text: string) => T): T {
    if (this.#encoding !== encode) {
      this.#encoded = encode(this.text)
      this.#encoding = encode
    }
    return this.#encoded as T
  }
}

/** What a member may do in a project: read (join, see ops, members, snapshots), or write as well. */
export type Access = 'read' | 'write'

/** Who is on the other end of a connection or request. */
export interface Identity {
  readonly userId: string
  /**
   * Whether this identity may read the project (join it, read its ops,
   * members and snapshot) or, with `'write'`, also change it (send ops and
   * snapshots). A function that ignores `access` grants both: a read-only
   * member is one whose check answers false for `'write'`.
   */
  readonly allows: (project: string, access?: Access) => boolean
  /** ms since the Unix epoch at which the credential expires, if it does */
  readonly expiresAt?: number
}

/** Close codes used by the server (RFC 6455 and docs/protocol.md). */
export const CLOSE = {
  goingAway: 1001,
  policy: 1008,
  tooBig: 1009
} as const
