/**
 * A TCP proxy a test puts between clients and a server, to fail the network
 * on purpose (STYLE.md, Tests): cut every connection, refuse new ones, drop
 * what the server sends (so requests land and their answers are lost), or
 * point it at another server (a restart on a new port).
 */
import { createServer, connect, type Socket } from 'node:net'
import type { Test } from 'tap'

export interface TestProxy {
  /** the proxy's loopback port */
  readonly port: number
  /** connections accepted so far */
  readonly accepted: number
  /** connections open now */
  readonly open: number
  /** `ws://127.0.0.1:PORT{path}` */
  ws (path?: string): string
  /** Forwards new connections to another port (open ones keep their server). */
  retarget (port: number): void
  /** Destroys every open connection, both sides, at once (no close handshake). */
  cut (): void
  /** While true, new connections are destroyed as soon as they are accepted. */
  refuse (on: boolean): void
  /** From now until they end, open connections drop what the server sends. */
  dropReplies (): void
}

interface Pair {
  readonly client: Socket
  readonly upstream: Socket
  dropping: boolean
}

/** Starts a proxy to `127.0.0.1:targetPort` on a free loopback port; closed at the end of `t`. */
export async function startProxy (t: Test, targetPort: number): Promise<TestProxy> {
  let target = targetPort
  let refusing = false
  let accepted = 0
  const pairs = new Set<Pair>()

  const server = createServer((client) => {
    accepted++
    if (refusing) {
      client.destroy()
      return
    }
    const upstream = connect({ port: target, host: '127.0.0.1' })
    const pair: Pair = { client, upstream, dropping: false }
    pairs.add(pair)
    const end = (): void => {
      pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on('error', end)
    upstream.on('error', end)
    client.on('close', end)
    upstream.on('close', end)
    client.on('data', (chunk: Buffer) => { upstream.write(chunk) })
    upstream.on('data', (chunk: Buffer) => { if (!pair.dropping) client.write(chunk) })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('proxy has no address')
  const port = address.port

  const cut = (): void => {
    for (const pair of [...pairs]) {
      pairs.delete(pair)
      pair.client.destroy()
      pair.upstream.destroy()
    }
  }
  t.teardown(async () => {
    cut()
    await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  })

  return {
    port,
    get accepted () { return accepted },
    get open () { return pairs.size },
    ws: (path = '/ws') => `ws://127.0.0.1:${port}${path}`,
    retarget: (p) => { target = p },
    cut,
    refuse: (on) => { refusing = on },
    dropReplies: () => { for (const pair of pairs) pair.dropping = true }
  }
}
