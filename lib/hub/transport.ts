/**
 * What the hub needs of a client connection. The WebSocket plugin adapts a
 * `ws` socket to it; tests may use any object of this shape.
 */
export interface Transport {
  /**
   * Queues one text frame. A {@link SharedFrame} goes to many connections:
   * the transport may encode it once (`encoded`) and send the same bytes to
   * each of them.
   */
  send (frame: string | SharedFrame): void
  /** Bytes queued and not yet written to the network. */
  readonly bufferedAmount: number
  /** Sends a WebSocket ping. */
  ping (): void
  /** Starts a clean close with this code and reason. */
  close (code: number, reason: string): void
  /** Drops the connection at once. */
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

/** Who is on the other end of a connection or request. */
export interface Identity {
  readonly userId: string
  /** Whether this identity may join or read the project. */
  readonly allows: (project: string) => boolean
  /** ms since the Unix epoch at which the credential expires, if it does */
  readonly expiresAt?: number
}

/** Close codes used by the server (RFC 6455 and docs/protocol.md). */
export const CLOSE = {
  goingAway: 1001,
  policy: 1008,
  tooBig: 1009
} as const
