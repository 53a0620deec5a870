import type { Test } from 'tap'
import WebSocket from 'ws'
import { FlowClient, type FlowClientOptions } from '../../client/index.js'
import { waitFor } from './wait.js'

/** A client library instance in Node, quick to reconnect, connected now and closed at the end of `t`. */
export function flow (t: Test, url: string, options: Partial<FlowClientOptions> = {}): FlowClient {
  const client = new FlowClient({ url, WebSocket, reconnect: { minDelayMs: 10, maxDelayMs: 100 }, ...options })
  t.teardown(() => { client.close() })
  client.connect()
  return client
}

/** Waits (polling every 20 ms) until `condition` holds; fails naming `what` after `timeoutMs`. */
export async function until (what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  await waitFor(condition, { what, timeoutMs, intervalMs: 20 })
}
