import { TestClient } from './client.js'

/**
 * The HTTP status of a refused WebSocket upgrade. Throws when the socket
 * opens (the upgrade was accepted) or the connection fails without one.
 */
export async function refusedUpgrade (url: string, headers?: Record<string, string>): Promise<number> {
  const client = new TestClient(url, { headers })
  try {
    await client.open()
  } catch (err) {
    const status = (err as { statusCode?: unknown }).statusCode
    if (typeof status === 'number') return status
    throw err
  } finally {
    client.socket.terminate()
  }
  throw new Error(`the upgrade to ${url.replace(/token=[^&]*/, 'token=...')} was accepted`)
}
