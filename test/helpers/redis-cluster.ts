/**
 * A real Redis Cluster for tests: 3 masters and 3 replicas by default, each
 * a redis-server with `--cluster-enabled yes` on a free loopback port in a
 * temporary directory of its own (startRedis in redis.ts, which kills it and
 * removes the directory at the end of the test, also when the test fails).
 *
 * The cluster is made by hand rather than with `redis-cli --cluster create`
 * (which polls for the join once a second): distinct config epochs, slots
 * split evenly over the masters (CLUSTER ADDSLOTSRANGE), CLUSTER MEET, then
 * CLUSTER REPLICATE; it is ready when every node says `cluster_state:ok`, knows
 * every other node, and every replica's link to its master is up (so a
 * failover can promote it). With a 1 s cluster-node-timeout, a killed master's
 * replica takes over in about 2 s.
 *
 * Helpers: the topology as a node sees it (CLUSTER NODES), the master of a
 * slot, kill a master (SIGKILL) and wait for its replica's promotion, move a
 * slot to another master (CLUSTER SETSLOT IMPORTING / MIGRATING, one MIGRATE
 * of all its keys, SETSLOT NODE on every master), and stop everything.
 */
import type { Test } from 'tap'
import { createClient } from 'redis'
import { startRedis, type TestRedis } from './redis.js'
import { waitFor } from './wait.js'

export interface RedisClusterOptions {
  /** masters (default 3) */
  readonly masters?: number
  /** replicas of each master (default 1) */
  readonly replicasPerMaster?: number
  /** `cluster-node-timeout` in ms (default 1000): how long a master may be silent before it is failed over */
  readonly nodeTimeoutMs?: number
  /** more redis-server arguments for every node */
  readonly args?: readonly string[]
}

/** One line of CLUSTER NODES. */
export interface ClusterNodeInfo {
  readonly id: string
  readonly port: number
  /** `master` or `slave`, as the node seen from is told */
  readonly role: 'master' | 'slave'
  /** the node is flagged `fail` (or `fail?`) */
  readonly failing: boolean
  /** its master's id, for a replica */
  readonly masterId: string | null
  /** the slot ranges it serves, [from, to] inclusive */
  readonly slots: ReadonlyArray<readonly [number, number]>
}

export interface TestRedisCluster {
  /** every node's server, masters first as they were made */
  readonly servers: readonly TestRedis[]
  /** `[{ host, port }]` of the first masters, as createCluster's rootNodes want them */
  readonly rootNodes: ReadonlyArray<{ readonly host: string, readonly port: number }>
  /** `127.0.0.1:P1,127.0.0.1:P2,...` of every node, as REDIS_CLUSTER_NODES would take them */
  readonly seeds: string
  /** The nodes as the first live node sees them. */
  topology: () => Promise<ClusterNodeInfo[]>
  /** The port of the master that serves `slot` now (as the first live node sees it). */
  masterOf: (slot: number) => Promise<number>
  /** The server on `port`. */
  server: (port: number) => TestRedis
  /** Runs a command on the node on `port` (a connection of its own, closed after). */
  command: (port: number, args: readonly string[]) => Promise<unknown>
  /**
   * Kills the master on `port` (SIGKILL), waits until one of its replicas has
   * taken its slots and every live node says `cluster_state:ok`; resolves
   * the new master's port.
   */
  killMaster: (port: number, timeoutMs?: number) => Promise<number>
  /**
   * Moves `slot` to the master on `toPort`: IMPORTING on the target,
   * MIGRATING on the source, every key of the slot in MIGRATE calls of up to
   * `batch` keys (default: all of them in one call, so a script never sees
   * the keys of one hash tag split between two nodes), then SETSLOT NODE on
   * the target, the source and every other master, and waits until every
   * live master names the target as the slot's owner.
   */
  moveSlot: (slot: number, toPort: number, options?: { readonly batch?: number }) => Promise<void>
  /** Waits until every live node says `cluster_state:ok`. */
  waitHealthy: (timeoutMs?: number) => Promise<void>
  /** Kills every node (done at the end of the test too, which also removes their directories). */
  stop: () => Promise<void>
}

const CLUSTER_SLOTS = 16_384

function adminClient (port: number) {
  return createClient({ socket: { host: '127.0.0.1', port, reconnectStrategy: false, connectTimeout: 5000 }, commandOptions: { timeout: undefined } })
}

type AdminClient = ReturnType<typeof adminClient>

/**
 * One admin connection per node, made on first use and dropped when it
 * fails (the next command makes a new one): under load, a connection per
 * command costs more than the commands.
 */
class Admin {
  readonly #clients = new Map<number, Promise<AdminClient>>()

  async command (port: number, args: readonly string[]): Promise<unknown> {
    let connecting = this.#clients.get(port)
    if (connecting === undefined) {
      const client = adminClient(port)
      client.on('error', () => {})
      client.on('end', () => { if (this.#clients.get(port) === connecting) this.#clients.delete(port) })
      connecting = client.connect().catch((err: unknown) => {
        this.#clients.delete(port)
        throw err
      })
      this.#clients.set(port, connecting)
    }
    try {
      return await (await connecting).sendCommand([...args])
    } catch (err) {
      throw new Error(`${args.join(' ').slice(0, 80)} on port ${port}: ${(err as Error).message}`, { cause: err })
    }
  }

  drop (port: number): void {
    const connecting = this.#clients.get(port)
    this.#clients.delete(port)
    connecting?.then((c) => { c.destroy() }, () => {})
  }

  close (): void {
    for (const port of [...this.#clients.keys()]) this.drop(port)
  }
}

function parseNodes (reply: string): ClusterNodeInfo[] {
  const out: ClusterNodeInfo[] = []
  for (const line of reply.split('\n')) {
    if (line.trim() === '') continue
    const [id, address, flags, master, , , , , ...slotParts] = line.trim().split(' ')
    if (id === undefined || address === undefined || flags === undefined) continue
    const port = Number(/:(\d+)@/.exec(address)?.[1])
    const flagList = flags.split(',')
    const slots: Array<[number, number]> = []
    for (const part of slotParts) {
      if (part.startsWith('[')) continue // a slot being imported or migrated
      const [from, to] = part.split('-').map(Number)
      if (from !== undefined && Number.isInteger(from)) slots.push([from, to ?? from])
    }
    out.push({
      id,
      port,
      role: flagList.includes('master') ? 'master' : 'slave',
      failing: flagList.includes('fail') || flagList.includes('fail?'),
      masterId: master === undefined || master === '-' ? null : master,
      slots
    })
  }
  return out
}

function info (reply: unknown): Map<string, string> {
  const fields = new Map<string, string>()
  for (const line of String(reply).split(/\r?\n/)) {
    const colon = line.indexOf(':')
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trim())
  }
  return fields
}

/**
 * Starts a Redis Cluster of `masters` masters with `replicasPerMaster`
 * replicas each (default 3 and 1) and resolves once it is healthy (every
 * node `cluster_state:ok`, every replica in sync). Everything is stopped at
 * the end of `t`.
 */
export async function startRedisCluster (t: Test, options: RedisClusterOptions = {}): Promise<TestRedisCluster> {
  const masters = options.masters ?? 3
  const replicas = options.replicasPerMaster ?? 1
  const nodeTimeout = options.nodeTimeoutMs ?? 1000
  const args = [
    '--cluster-enabled', 'yes',
    '--cluster-config-file', 'nodes.conf',
    '--cluster-node-timeout', String(nodeTimeout),
    // A replica may always be promoted, however long it was cut off.
    '--cluster-replica-validity-factor', '0',
    // Replicas sync at once (the default waits 5 s for more replicas to join a diskless transfer).
    '--repl-diskless-sync-delay', '0',
    ...(options.args ?? [])
  ]
  const admin = new Admin()
  t.teardown(() => { admin.close() })
  const command = async (port: number, args: readonly string[]): Promise<unknown> => await admin.command(port, args)
  const servers = await Promise.all(Array.from({ length: masters * (1 + replicas) }, async () => await startRedis(t, { args })))
  const ports = servers.map((s) => s.port)
  const byPort = new Map(servers.map((s) => [s.port, s]))
  const ids = await Promise.all(ports.map(async (port) => String(await command(port, ['CLUSTER', 'MYID']))))

  // Distinct config epochs before they meet: no epoch collision to resolve.
  await Promise.all(ports.map(async (port, i) => await command(port, ['CLUSTER', 'SET-CONFIG-EPOCH', String(i + 1)])))
  await Promise.all(ports.slice(0, masters).map(async (port, i) => {
    const from = Math.floor(i * CLUSTER_SLOTS / masters)
    const to = Math.floor((i + 1) * CLUSTER_SLOTS / masters) - 1
    await command(port, ['CLUSTER', 'ADDSLOTSRANGE', String(from), String(to)])
  }))
  const first = ports[0] as number
  await Promise.all(ports.slice(1).map(async (port) => await command(port, ['CLUSTER', 'MEET', '127.0.0.1', String(first)])))
  await waitFor(async () => {
    const views = await Promise.all(ports.map(async (port) => parseNodes(String(await command(port, ['CLUSTER', 'NODES'])))))
    return views.every((nodes) => nodes.length === ports.length && nodes.every((n) => n.id.length === 40 && Number.isInteger(n.port)))
  }, { what: 'every cluster node to know every other', timeoutMs: 10_000, intervalMs: 20 })
  // Replica r of master m: the nodes after the masters, in turn.
  await Promise.all(ports.slice(masters).map(async (port, i) =>
    await command(port, ['CLUSTER', 'REPLICATE', ids[i % masters] as string])))

  const live = (): number[] => servers.filter((s) => !killed.has(s.port)).map((s) => s.port)
  const killed = new Set<number>()

  const waitHealthy = async (timeoutMs = 15_000): Promise<void> => {
    await waitFor(async () => {
      const states = await Promise.all(live().map(async (port) => info(await command(port, ['CLUSTER', 'INFO'])).get('cluster_state')))
      return states.every((s) => s === 'ok')
    }, { what: 'cluster_state:ok on every live node', timeoutMs, intervalMs: 20 })
  }
  await waitHealthy()
  await waitFor(async () => {
    const links = await Promise.all(ports.slice(masters).map(async (port) => info(await command(port, ['INFO', 'replication'])).get('master_link_status')))
    return links.every((l) => l === 'up')
  }, { what: 'every replica in sync with its master', timeoutMs: 15_000, intervalMs: 20 })

  const topology = async (): Promise<ClusterNodeInfo[]> => {
    let lastError: unknown
    for (const port of live()) {
      try {
        return parseNodes(String(await command(port, ['CLUSTER', 'NODES'])))
      } catch (err) {
        lastError = err
      }
    }
    throw new Error(`no live cluster node answers: ${String(lastError)}`)
  }
  const ownerIn = (nodes: readonly ClusterNodeInfo[], slot: number): ClusterNodeInfo | undefined =>
    nodes.find((n) => n.role === 'master' && !n.failing && n.slots.some(([from, to]) => slot >= from && slot <= to))
  const masterOf = async (slot: number): Promise<number> => {
    const owner = ownerIn(await topology(), slot)
    if (owner === undefined) throw new Error(`no master serves slot ${slot}`)
    return owner.port
  }

  const server = (port: number): TestRedis => {
    const s = byPort.get(port)
    if (s === undefined) throw new Error(`no cluster node on port ${port}`)
    return s
  }

  const killMaster = async (port: number, timeoutMs = 15_000): Promise<number> => {
    const before = await topology()
    const victim = before.find((n) => n.port === port)
    if (victim === undefined || victim.role !== 'master') throw new Error(`the node on port ${port} is not a master`)
    const slot = victim.slots[0]?.[0]
    if (slot === undefined) throw new Error(`the master on port ${port} serves no slot`)
    const candidates = new Set(before.filter((n) => n.masterId === victim.id).map((n) => n.port))
    await server(port).kill()
    killed.add(port)
    admin.drop(port)
    const promoted = await waitFor(async () => {
      const views = await Promise.all(live().map(async (p) => parseNodes(String(await command(p, ['CLUSTER', 'NODES'])))))
      const owners = views.map((nodes) => ownerIn(nodes, slot)?.port)
      const owner = owners[0]
      return owner !== undefined && candidates.has(owner) && owners.every((o) => o === owner) ? owner : undefined
    }, { what: `a replica of the master on port ${port} to take its slots on every node`, timeoutMs, intervalMs: 50 })
    await waitHealthy(timeoutMs)
    return promoted
  }

  const moveSlot = async (slot: number, toPort: number, moveOptions: { readonly batch?: number } = {}): Promise<void> => {
    const nodes = await topology()
    const from = ownerIn(nodes, slot)
    const to = nodes.find((n) => n.port === toPort)
    if (from === undefined) throw new Error(`no master serves slot ${slot}`)
    if (to === undefined || to.role !== 'master') throw new Error(`the node on port ${toPort} is not a master`)
    if (from.port === toPort) return
    const s = String(slot)
    await command(toPort, ['CLUSTER', 'SETSLOT', s, 'IMPORTING', from.id])
    await command(from.port, ['CLUSTER', 'SETSLOT', s, 'MIGRATING', to.id])
    const batch = moveOptions.batch ?? 100_000
    for (;;) {
      const keys = (await command(from.port, ['CLUSTER', 'GETKEYSINSLOT', s, String(batch)]) as unknown[]).map(String)
      if (keys.length === 0) break
      await command(from.port, ['MIGRATE', '127.0.0.1', String(toPort), '', '0', '5000', 'KEYS', ...keys])
    }
    // The target first, then the source (so the source never redirects to a target that does not own the slot yet), then the others.
    await command(toPort, ['CLUSTER', 'SETSLOT', s, 'NODE', to.id])
    await command(from.port, ['CLUSTER', 'SETSLOT', s, 'NODE', to.id])
    const others = nodes.filter((n) => n.role === 'master' && !n.failing && n.port !== toPort && n.port !== from.port && !killed.has(n.port))
    await Promise.all(others.map(async (n) => await command(n.port, ['CLUSTER', 'SETSLOT', s, 'NODE', to.id])))
    await waitFor(async () => {
      const masters = nodes.filter((n) => n.role === 'master' && !n.failing && !killed.has(n.port))
      const owners = await Promise.all(masters.map(async (n) => ownerIn(parseNodes(String(await command(n.port, ['CLUSTER', 'NODES']))), slot)?.port))
      return owners.every((o) => o === toPort)
    }, { what: `every master to name port ${toPort} as the owner of slot ${slot}`, timeoutMs: 10_000, intervalMs: 20 })
  }

  const stop = async (): Promise<void> => {
    await Promise.all(servers.map(async (s) => {
      await s.kill()
      killed.add(s.port)
      admin.drop(s.port)
    }))
  }

  return {
    servers,
    rootNodes: ports.slice(0, masters).map((port) => ({ host: '127.0.0.1', port })),
    seeds: ports.map((port) => `127.0.0.1:${port}`).join(','),
    topology,
    masterOf,
    server,
    command,
    killMaster,
    moveSlot,
    waitHealthy,
    stop
  }
}
