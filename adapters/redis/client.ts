import type { createClient } from 'redis'

/** A node-redis (v6) client as `createClient()` makes it: what a host app may hand Flow. */
export type NodeRedisClient = ReturnType<typeof createClient>

/**
 * What Flow uses of a Redis connection, and nothing more: a node-redis client
 * fits it as it is, and so does the Sentinel connection
 * (adapters/redis/sentinel.ts), which follows the primary across failovers.
 * The adapters, the connection's health and the probe only ever see this.
 *
 * - `isReady`: commands can be sent now; `isOpen`: it has not been closed;
 * - events: `error` (a connection error; with `isReady` false it means Redis
 *   is away), `ready` (connected, or connected again), `end` (closed);
 * - `sendCommand` resolves the raw reply, rejects with Redis' `ErrorReply` or
 *   a connection error; calls run in call order on one connection;
 * - `subscribe` / `unsubscribe` take a listener per channel; subscriptions
 *   are restored after a reconnection.
 */
export interface RedisClient {
  readonly isOpen: boolean
  readonly isReady: boolean
  on (event: 'error', listener: (err: Error) => void): unknown
  on (event: 'ready' | 'end', listener: () => void): unknown
  sendCommand (args: readonly string[]): Promise<unknown>
  publish (channel: string, message: string): Promise<unknown>
  subscribe (channel: string, listener: (message: string, channel: string) => void): Promise<void>
  unsubscribe (channel: string, listener?: (message: string, channel: string) => void): Promise<unknown>
}

/** An error from whatever a connection library threw. */
export function asError (err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err))
}

/**
 * The pause between two connection attempts of the Sentinel and Cluster
 * connections: `wake()` (their close) ends it at once.
 */
export class RetryPause {
  #wake: (() => void) | null = null

  async sleep (ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms)
      function done (): void {
        clearTimeout(timer)
        resolve()
      }
      this.#wake = done
    })
    this.#wake = null
  }

  wake (): void {
    this.#wake?.()
  }
}
