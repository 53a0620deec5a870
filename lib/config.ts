import { ConfigError } from './errors.js'
import { INSTANCE_ID, KEY_PREFIX } from './ids.js'

/**
 * Every setting of the server, with its environment variable, its plugin
 * option name, type, bounds and default. The README's configuration table is
 * this list; `resolveConfig` is the only reader of process.env.
 */
type Kind = 'int' | 'bool' | 'string' | 'secret' | 'enum' | 'url' | 'float'

interface Setting {
  readonly env: string
  readonly kind: Kind
  readonly default?: string | number | boolean
  readonly min?: number
  readonly max?: number
  readonly values?: readonly string[]
  /** strings must match it */
  readonly pattern?: RegExp
  readonly doc: string
}

export const SETTINGS = {
  port: { env: 'PORT', kind: 'int', default: 3000, min: 0, max: 65535, doc: 'TCP port `npm start` listens on' },
  host: {
    env: 'HOST', kind: 'string', default: '127.0.0.1',
    doc: 'address `npm start` listens on (`0.0.0.0` for all interfaces)'
  },
  logLevel: {
    env: 'LOG_LEVEL', kind: 'enum', default: 'info',
    values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
    doc: 'pino log level'
  },
  nodeEnv: {
    env: 'NODE_ENV', kind: 'string', default: 'development',
    doc: '`production` refuses to start without authentication unless `FLOW_AUTH=none`'
  },
  instanceId: {
    env: 'FLOW_INSTANCE_ID', kind: 'string', pattern: INSTANCE_ID,
    doc: 'name of this instance in stats, health and Redis (default: random)'
  },
  sessionTtlSeconds: {
    env: 'SESSION_TTL_SECONDS', kind: 'int', default: 30, min: 2, max: 86400,
    doc: 'session TTL; a crashed instance\'s sessions leave within it'
  },
  historyMemory: {
    env: 'FLOW_HISTORY_MEMORY', kind: 'int', default: 1000, min: 1, max: 10_000_000,
    doc: 'ops kept per project by the memory op log: the newest this many at most, ' +
      'fewer when FLOW_HISTORY_BYTES is reached first'
  },
  historyRedis: {
    env: 'FLOW_HISTORY_REDIS', kind: 'int', default: 10000, min: 1, max: 100_000_000,
    doc: 'ops kept per project by the Redis op log: the newest this many at most, ' +
      'fewer when FLOW_HISTORY_BYTES is reached first'
  },
  historyBytes: {
    env: 'FLOW_HISTORY_BYTES', kind: 'int', default: 8 * 1024 * 1024, min: 64 * 1024, max: 1024 * 1024 * 1024,
    doc: 'bytes of history kept per project by either op log: past it the oldest ops go first, whatever the op ' +
      'counts above say (the newest op is always kept)'
  },
  memoryHistoryBytes: {
    env: 'FLOW_MEMORY_HISTORY_BYTES', kind: 'int', default: 128 * 1024 * 1024, min: 1024 * 1024,
    max: Number.MAX_SAFE_INTEGER,
    doc: 'bytes of history all projects together may hold in this process (the memory op log, or the fallback ' +
      'during a Redis outage): past it the history of the projects idle longest is dropped first'
  },
  projectIdleTtl: {
    env: 'FLOW_PROJECT_IDLE_TTL', kind: 'int', default: 604_800, min: 60, max: 315_360_000,
    doc: 'seconds a project with no member and no op is kept: then the memory log forgets it and its Redis keys ' +
      'expire; it comes back with a new epoch (its clients get reset)'
  },
  replayPageBytes: {
    env: 'FLOW_REPLAY_PAGE_BYTES', kind: 'int', default: 1024 * 1024, min: 64 * 1024, max: 64 * 1024 * 1024,
    doc: 'largest page of history one read returns (replays of join and sync, GET /projects/:project/ops): a ' +
      'page ends early rather than grow past it, and the next page continues'
  },
  replayBytesPerSecond: {
    env: 'FLOW_REPLAY_BYTES_PER_SECOND', kind: 'int', default: 8 * 1024 * 1024, min: 64 * 1024,
    max: Number.MAX_SAFE_INTEGER,
    doc: 'history one connection is sent per second at most by its replays (join with since, sync); beyond, ' +
      'the replay waits, and it always waits for the connection to drain'
  },
  identityReadBytesPerSecond: {
    env: 'FLOW_IDENTITY_READ_BYTES_PER_SECOND', kind: 'int', default: 4 * 1024 * 1024, min: 64 * 1024,
    max: Number.MAX_SAFE_INTEGER,
    doc: 'history and project reads one identity (a user; an address without authentication) is sent per ' +
      'second at most, across all its connections and requests: replays wait, HTTP reads get 429'
  },
  identityWriteBytesPerSecond: {
    env: 'FLOW_IDENTITY_WRITE_BYTES_PER_SECOND', kind: 'int', default: 1024 * 1024, min: 64 * 1024,
    max: Number.MAX_SAFE_INTEGER,
    doc: 'bytes one identity may send per second, across all its connections and requests (frames, posted ' +
      'ops, snapshots): past it the server stops reading its connections for a while, HTTP writes get 429'
  },
  snapshotMaxBytes: {
    env: 'FLOW_SNAPSHOT_MAX_BYTES', kind: 'int', default: 4 * 1024 * 1024, min: 1024, max: 512 * 1024 * 1024,
    doc: 'largest snapshot state, as JSON: a larger snapshot frame or PUT is refused with limit_exceeded'
  },
  snapshotEvery: {
    env: 'FLOW_SNAPSHOT_EVERY', kind: 'int', default: 1000, min: 1, max: 10_000_000,
    doc: 'with a host reducer (the plugin\'s `snapshots.reduce` option): store a snapshot every this many ops ' +
      'of a project'
  },
  maxPayloadBytes: {
    env: 'FLOW_MAX_PAYLOAD_BYTES', kind: 'int', default: 65536, min: 1024, max: 16 * 1024 * 1024,
    doc: 'largest WebSocket frame; a larger one closes the connection with 1009'
  },
  maxPresenceBytes: {
    env: 'FLOW_MAX_PRESENCE_BYTES', kind: 'int', default: 4096, min: 2, max: 1024 * 1024,
    doc: 'largest presence object, as JSON'
  },
  maxProjectsPerConnection: {
    env: 'FLOW_MAX_PROJECTS_PER_CONNECTION', kind: 'int', default: 64, min: 1, max: 100_000,
    doc: 'projects one connection may join'
  },
  joinedMembersMax: {
    env: 'FLOW_JOINED_MEMBERS_MAX', kind: 'int', default: 100, min: 1, max: 100_000,
    doc: 'members a `joined` lists at most, for a client that joined with the `member_page` feature (1.3): it ' +
      'carries the count and the first this many, the rest by `list_members` pages of this size by default. Other ' +
      'clients get the whole list'
  },
  memberBatchMs: {
    env: 'FLOW_MEMBER_BATCH_MS', kind: 'int', default: 0, min: 0, max: 1000,
    doc: 'for clients that joined with the `member_batch` feature (1.3): member events are coalesced over this ' +
      'many ms into one `members` frame per member, instead of over one event-loop turn (0). A join storm into ' +
      'large rooms then costs one write per member per window, not one per join; events arrive up to this late'
  },
  flushWindowMs: {
    env: 'FLOW_FLUSH_WINDOW_MS', kind: 'int', default: 0, min: 0, max: 100,
    doc: 'how long the frames written to a connection are held so that they leave in one system call: 0 sends ' +
      'at the end of each event-loop turn (the lowest latency); a few ms let the frames of several turns share ' +
      'one write under load (fewer system calls per delivery), each frame up to this much later'
  },
  resumeGraceMs: {
    env: 'FLOW_RESUME_GRACE_MS', kind: 'int', default: 10_000, min: 0, max: 600_000,
    doc: 'how long the session of a client that joined with the `resume` feature (1.3) is held after its ' +
      'connection dropped without a close frame, before its leave is announced: a reconnect with its resume ' +
      'token within it resumes the session silently. At most two thirds of SESSION_TTL_SECONDS is used; 0: off'
  },
  rateLimit: {
    env: 'FLOW_RATE_LIMIT', kind: 'int', default: 1000, min: 1, max: 10_000_000,
    doc: 'frames per second per connection (token bucket refill)'
  },
  rateBurst: {
    env: 'FLOW_RATE_BURST', kind: 'int', default: 2000, min: 1, max: 10_000_000,
    doc: 'token bucket size: frames a connection may send at once'
  },
  heartbeatMs: {
    env: 'FLOW_HEARTBEAT_INTERVAL_MS', kind: 'int', default: 30000, min: 100, max: 3_600_000,
    doc: 'WebSocket ping interval; a connection that misses two is ended'
  },
  maxOpsInFlight: {
    env: 'FLOW_MAX_OPS_IN_FLIGHT', kind: 'int', default: 10_000, min: 1, max: 10_000_000,
    doc: 'ops an instance may have waiting for the op log at once; beyond, new ops are refused with rate_limited ' +
      '(WebSocket) or 429 (HTTP) instead of queueing without bound'
  },
  maxBufferedBytes: {
    env: 'FLOW_MAX_BUFFERED_BYTES', kind: 'int', default: 8 * 1024 * 1024, min: 1024, max: 1024 * 1024 * 1024,
    doc: 'unsent data a connection may hold before it is closed with 1008 (slow consumer)'
  },
  shutdownTimeoutMs: {
    env: 'FLOW_SHUTDOWN_TIMEOUT_MS', kind: 'int', default: 5000, min: 0, max: 600_000,
    doc: 'longest drain before connections are closed with 1001 on shutdown'
  },
  opsPageMax: {
    env: 'FLOW_OPS_PAGE_MAX', kind: 'int', default: 1000, min: 500, max: 100_000,
    doc: 'cap of `limit` in `GET /projects/:project/ops`'
  },
  maxConnectionsPerIp: {
    env: 'FLOW_MAX_CONNECTIONS_PER_IP', kind: 'int', default: 10_000, min: 0, max: 10_000_000,
    doc: 'open WebSocket connections one client address may hold; more are refused with 429 (0: no limit). ' +
      'Behind a proxy, set FLOW_TRUST_PROXY so the address is the client\'s'
  },
  httpRateLimit: {
    env: 'FLOW_HTTP_RATE_LIMIT', kind: 'int', default: 100, min: 1, max: 10_000_000,
    doc: 'requests per second to the project HTTP API per identity (token user, API key) or, without one, per ' +
      'address; more get 429 with retry-after'
  },
  projectsPerMinute: {
    env: 'FLOW_PROJECTS_PER_MINUTE', kind: 'int', default: 60, min: 1, max: 10_000_000,
    doc: 'new projects one identity may create per minute (a project is created by its first op); more ops to ' +
      'new projects are refused with rate_limited (429)'
  },
  trustProxy: {
    env: 'FLOW_TRUST_PROXY', kind: 'string',
    doc: '`npm start` only: proxies whose X-Forwarded-For gives the client address (comma-separated addresses ' +
      'or CIDRs, or `true` for any); unset: the TCP peer is the client'
  },
  allowedOrigins: {
    env: 'FLOW_ALLOWED_ORIGINS', kind: 'string',
    doc: 'comma-separated origins (`https://app.example.com`) a browser may connect from; others get 403. Unset: ' +
      'any origin. Clients that send no Origin (not browsers) are not affected'
  },
  maxEventLoopDelayMs: {
    env: 'FLOW_MAX_EVENT_LOOP_DELAY_MS', kind: 'int', default: 1000, min: 0, max: 600_000,
    doc: 'event-loop delay over which the server answers 503 (0: off)'
  },
  maxEventLoopUtilization: {
    env: 'FLOW_MAX_EVENT_LOOP_UTILIZATION', kind: 'float', default: 0, min: 0, max: 1,
    doc: 'event-loop utilisation over which the server answers 503 (0: off)'
  },
  maxHeapUsedBytes: {
    env: 'FLOW_MAX_HEAP_USED_BYTES', kind: 'int', default: 0, min: 0,
    max: Number.MAX_SAFE_INTEGER,
    doc: 'heap used over which the server answers 503 (0: off)'
  },
  maxRssBytes: {
    env: 'FLOW_MAX_RSS_BYTES', kind: 'int', default: 0, min: 0,
    max: Number.MAX_SAFE_INTEGER,
    doc: 'RSS over which the server answers 503 (0: off)'
  },
  healthCheckIntervalMs: {
    env: 'FLOW_HEALTH_CHECK_INTERVAL_MS', kind: 'int', default: 5000, min: 100, max: 600_000,
    doc: 'how often the health check, pressure sampling and the Redis memory and eviction-policy reads run'
  },
  openapi: {
    env: 'FLOW_OPENAPI', kind: 'bool', default: true,
    doc: 'serve the OpenAPI 3.1 document of the HTTP API at `{prefix}/docs/json`; `false`: not served (404)'
  },
  openapiUi: {
    env: 'FLOW_OPENAPI_UI', kind: 'bool', default: false,
    doc: 'serve Swagger UI at `{prefix}/docs` (needs `FLOW_OPENAPI`)'
  },
  redisUrl: {
    env: 'REDIS_URL', kind: 'url', default: 'redis://127.0.0.1:6379',
    doc: '`redis://` or `rediss://` URL, with username and password when needed'
  },
  redisHost: { env: 'REDIS_HOST', kind: 'string', doc: 'Redis host; overrides the host of `REDIS_URL`' },
  redisPort: {
    env: 'REDIS_PORT', kind: 'int', min: 1, max: 65535,
    doc: 'Redis port; overrides the port of `REDIS_URL`'
  },
  redisUsername: { env: 'REDIS_USERNAME', kind: 'string', doc: 'Redis ACL user; overrides the one in `REDIS_URL`' },
  redisPassword: { env: 'REDIS_PASSWORD', kind: 'secret', doc: 'Redis password; overrides the one in `REDIS_URL`' },
  redisDb: {
    env: 'REDIS_DB', kind: 'int', min: 0, max: 15,
    doc: 'Redis database number; overrides the one in `REDIS_URL`'
  },
  redisTls: { env: 'REDIS_TLS', kind: 'bool', doc: '`true` connects with TLS (as `rediss://`)' },
  redisTlsCaFile: {
    env: 'REDIS_TLS_CA_FILE', kind: 'string',
    doc: 'PEM file of the CA that signed the Redis server\'s certificate (TLS)'
  },
  redisTlsCertFile: {
    env: 'REDIS_TLS_CERT_FILE', kind: 'string',
    doc: 'PEM client certificate, when Redis asks for one (TLS)'
  },
  redisTlsKeyFile: { env: 'REDIS_TLS_KEY_FILE', kind: 'string', doc: 'PEM key of the client certificate (TLS)' },
  redisSentinels: {
    env: 'REDIS_SENTINELS', kind: 'string',
    doc: 'comma-separated `host:port` of Redis Sentinels (a few are enough): Flow asks them for the primary of ' +
      '`REDIS_SENTINEL_NAME` and follows it across failovers; the user, password and database of `REDIS_URL` ' +
      '(or `REDIS_USERNAME`, `REDIS_PASSWORD`, `REDIS_DB`) still apply, its host and port are not used'
  },
  redisSentinelName: {
    env: 'REDIS_SENTINEL_NAME', kind: 'string',
    doc: 'the master group name the sentinels monitor (`sentinel monitor <name> ...`); needed with `REDIS_SENTINELS`'
  },
  ackDurability: {
    env: 'FLOW_ACK_DURABILITY', kind: 'enum', default: 'memory', values: ['memory', 'replica'],
    doc: 'what an op\'s ack (on the Redis op log) waits for: `memory`, the primary has it; `replica`, also ' +
      '`FLOW_ACK_REPLICAS` replicas (Redis `WAIT`, one per event-loop turn for all its appends), so a failover ' +
      'to one of them loses no acked op; past `FLOW_ACK_TIMEOUT_MS` the op is answered `unavailable` (retry it ' +
      'with its id)'
  },
  ackReplicas: {
    env: 'FLOW_ACK_REPLICAS', kind: 'int', default: 1, min: 1, max: 16,
    doc: 'replicas that must have an op before its ack, with `FLOW_ACK_DURABILITY=replica`'
  },
  ackTimeoutMs: {
    env: 'FLOW_ACK_TIMEOUT_MS', kind: 'int', default: 500, min: 10, max: 30_000,
    doc: 'longest wait for the replicas with `FLOW_ACK_DURABILITY=replica`; below `FLOW_REDIS_COMMAND_TIMEOUT_MS` ' +
      '(the wait holds the command connection)'
  },
  redisConnectWaitMs: {
    env: 'REDIS_CONNECT_WAIT_MS', kind: 'int', default: 2000, min: 0, max: 60_000,
    doc: 'longest wait for Redis at boot; after it the server starts anyway'
  },
  redisCommandTimeoutMs: {
    env: 'FLOW_REDIS_COMMAND_TIMEOUT_MS', kind: 'int', default: 1000, min: 50, max: 60_000,
    doc: 'how long Redis may stay silent (no reply to any call) while a call waits, before the ports fall back to ' +
      'memory; a call fails after 10× this (at least 30 s) whatever else answers'
  },
  redisProbeIntervalMs: {
    env: 'FLOW_REDIS_PROBE_INTERVAL_MS', kind: 'int', default: 1000, min: 100, max: 60_000,
    doc: 'how often the end-to-end Redis probe (stream append + Pub/Sub round trip) runs while healthy'
  },
  outageBufferOps: {
    env: 'FLOW_OUTAGE_BUFFER_OPS', kind: 'int', default: 100_000, min: 100, max: 10_000_000,
    doc: 'ops an instance accepts during a Redis outage before it answers unavailable'
  },
  outageBufferBytes: {
    env: 'FLOW_OUTAGE_BUFFER_BYTES', kind: 'int', default: 64 * 1024 * 1024, min: 1024 * 1024,
    max: Number.MAX_SAFE_INTEGER,
    doc: 'bytes of ops an instance accepts during a Redis outage before it answers unavailable'
  },
  useRedisCollaboration: {
    env: 'USE_REDIS_COLLABORATION', kind: 'bool', default: false,
    doc: '`true`: sessions in Redis (SessionStore port)'
  },
  useRedisWebsockets: {
    env: 'USE_REDIS_WEBSOCKETS', kind: 'bool', default: false,
    doc: '`true`: cross-instance fan-out over Redis Pub/Sub (Broadcaster port)'
  },
  useRedisEventOrdering: {
    env: 'USE_REDIS_EVENT_ORDERING', kind: 'bool', default: false,
    doc: '`true`: op log in Redis Streams, one seq per project cluster-wide (OperationLog port)'
  },
  keyPrefix: {
    env: 'FLOW_KEY_PREFIX', kind: 'string', default: 'flow', pattern: KEY_PREFIX,
    doc: 'prefix of every Redis key and channel'
  },
  instanceLeaseMs: {
    env: 'FLOW_INSTANCE_LEASE_MS', kind: 'int', default: 5000, min: 500, max: 600_000,
    doc: 'lease of an instance in Redis: a crashed instance\'s sessions leave this long after its last renewal ' +
      '(plus one reap interval)'
  },
  redisMemoryWarnRatio: {
    env: 'FLOW_REDIS_MEMORY_WARN_RATIO', kind: 'float', default: 0.8, min: 0.1, max: 1,
    doc: 'share of Redis maxmemory in use over which /health warns'
  },
  redisAllowEviction: {
    env: 'FLOW_REDIS_ALLOW_EVICTION', kind: 'bool', default: false,
    doc: '`true` lets the Redis op log run under an eviction policy other than noeviction, which may evict ' +
      'idempotency ids and history (ops could then be appended twice); without it the op log refuses such a Redis'
  },
  jwtSecret: { env: 'FLOW_JWT_SECRET', kind: 'secret', doc: 'HS256 secret; turns authentication on' },
  jwtAudience: { env: 'FLOW_JWT_AUDIENCE', kind: 'string', doc: 'the `aud` a token must name (checked when set)' },
  jwtIssuer: { env: 'FLOW_JWT_ISSUER', kind: 'string', doc: 'the `iss` a token must carry (checked when set)' },
  jwtRequireExp: {
    env: 'FLOW_JWT_REQUIRE_EXP', kind: 'bool', default: true,
    doc: 'tokens without `exp` are refused; `false` accepts them (they never expire)'
  },
  jwtDefaultProjects: {
    env: 'FLOW_JWT_DEFAULT_PROJECTS', kind: 'string',
    doc: 'projects (comma-separated ids, `prefix*` or `*`) a token without a `projects` claim may join or ' +
      'read; unset: such a token is refused (401)'
  },
  jwtPublicKey: {
    env: 'FLOW_JWT_PUBLIC_KEY', kind: 'secret',
    doc: 'PEM public key for RS256/ES256; turns authentication on'
  },
  apiKey: { env: 'FLOW_API_KEY', kind: 'secret', doc: 'key for the HTTP API (`Authorization: Bearer <key>`)' },
  auth: { env: 'FLOW_AUTH', kind: 'enum', values: ['none'], doc: '`none` runs without authentication on purpose' }
} as const satisfies Record<string, Setting>

type Settings = typeof SETTINGS
type ValueOf<S> = S extends { kind: 'int' | 'float' } ? number
  : S extends { kind: 'bool' } ? boolean
    : string
type HasDefault<S> = S extends { default: unknown } ? true : false

/** The resolved configuration: every setting with a default is present. */
export type FlowConfig = {
  readonly [K in keyof Settings as HasDefault<Settings[K]> extends true ? K : never]: ValueOf<Settings[K]>
} & {
  readonly [K in keyof Settings as HasDefault<Settings[K]> extends true ? never : K]?: ValueOf<Settings[K]>
}

/** Options a host app may pass to the plugin: any setting, by option name. */
export type FlowConfigOptions = { readonly [K in keyof Settings]?: ValueOf<Settings[K]> }

const INT = /^-?\d+$/
const FLOAT = /^-?\d+(\.\d+)?$/

function parse (name: string, setting: Setting, raw: unknown, from: 'env' | 'option'): string | number | boolean {
  const where = from === 'env' ? setting.env : `option ${name} (${setting.env})`
  const fail = (why: string): never => { throw new ConfigError(`${where} ${why}`) }
  switch (setting.kind) {
    case 'int':
    case 'float': {
      let n: number
      if (typeof raw === 'number') n = raw
      else if (typeof raw === 'string' && (setting.kind === 'int' ? INT : FLOAT).test(raw.trim())) n = Number(raw)
      else return fail(`must be ${setting.kind === 'int' ? 'an integer' : 'a number'}, got ${JSON.stringify(raw)}`)
      if (setting.kind === 'int' && !Number.isSafeInteger(n)) fail(`must be an integer, got ${JSON.stringify(raw)}`)
      if (!Number.isFinite(n)) fail(`must be a finite number, got ${JSON.stringify(raw)}`)
      if (setting.min !== undefined && n < setting.min) fail(`must be >= ${setting.min}, got ${n}`)
      if (setting.max !== undefined && n > setting.max) fail(`must be <= ${setting.max}, got ${n}`)
      return n
    }
    case 'bool': {
      if (typeof raw === 'boolean') return raw
      const s = String(raw).trim().toLowerCase()
      if (s === 'true' || s === '1' || s === 'yes') return true
      if (s === 'false' || s === '0' || s === 'no' || s === '') return false
      return fail(`must be true or false, got ${JSON.stringify(raw)}`)
    }
    case 'enum': {
      const s = String(raw).trim()
      if (setting.values?.includes(s) !== true) {
        fail(`must be one of ${setting.values?.join(', ')}, got ${JSON.stringify(raw)}`)
      }
      return s
    }
    case 'url': {
      const s = String(raw).trim()
      let url: URL
      try { url = new URL(s) } catch { return fail('must be a URL such as redis://127.0.0.1:6379') }
      if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
        fail(`must start with redis:// or rediss://, got ${url.protocol}//`)
      }
      return s
    }
    case 'secret':
    case 'string': {
      if (typeof raw !== 'string') return fail('must be a string')
      if (raw.length === 0) return fail('must not be empty')
      if (setting.pattern !== undefined && !setting.pattern.test(raw)) {
        return fail(`must match ${String(setting.pattern)}`)
      }
      return raw
    }
  }
}

/**
 * Reads the configuration: defaults, then the environment, then the options
 * a host app passed. Throws FLOW_ERR_CONFIG_INVALID naming the variable (or
 * option) of the first bad value.
 */
export function resolveConfig (options: FlowConfigOptions = {}, env: NodeJS.ProcessEnv = process.env): FlowConfig {
  const out: Record<string, string | number | boolean> = {}
  for (const [name, s] of Object.entries(SETTINGS) as Array<[string, Setting]>) {
    const fromOption = (options as Record<string, unknown>)[name]
    const fromEnv = env[s.env]
    // An empty variable is unset, except for strings (where it is a bad value).
    const envSet = fromEnv !== undefined && !(fromEnv === '' && s.kind !== 'string')
    if (fromOption !== undefined) out[name] = parse(name, s, fromOption, 'option')
    else if (envSet) out[name] = parse(name, s, fromEnv, 'env')
    else if (s.default !== undefined) out[name] = s.default
  }
  for (const key of Object.keys(options)) {
    if (!(key in SETTINGS)) throw new ConfigError(`unknown option ${key}`)
  }
  const config = out as unknown as FlowConfig
  if (config.auth === 'none' && (config.jwtSecret !== undefined || config.jwtPublicKey !== undefined)) {
    throw new ConfigError('FLOW_AUTH=none cannot be combined with FLOW_JWT_SECRET or FLOW_JWT_PUBLIC_KEY')
  }
  if (config.openapiUi && !config.openapi) {
    throw new ConfigError('FLOW_OPENAPI_UI=true needs the OpenAPI document: FLOW_OPENAPI=false turns it off')
  }
  if (config.redisSentinels !== undefined || config.redisSentinelName !== undefined) checkSentinels(config)
  if (config.ackDurability === 'replica' && config.ackTimeoutMs >= config.redisCommandTimeoutMs) {
    throw new ConfigError(`FLOW_ACK_TIMEOUT_MS (${config.ackTimeoutMs}) must be below FLOW_REDIS_COMMAND_TIMEOUT_MS ` +
      `(${config.redisCommandTimeoutMs}): the replicas' wait holds the command connection, and a longer one ` +
      'would look like Redis gone silent')
  }
  if (config.nodeEnv === 'production' && config.auth !== 'none' &&
      config.jwtSecret === undefined && config.jwtPublicKey === undefined) {
    throw new ConfigError('NODE_ENV=production needs FLOW_JWT_SECRET or FLOW_JWT_PUBLIC_KEY, ' +
      'or FLOW_AUTH=none to run without authentication on purpose')
  }
  return config
}

/** A Redis Sentinel's address. */
export interface SentinelAddress {
  readonly host: string
  readonly port: number
}

const SENTINEL = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9_.-]+)):(\d{1,5})$/

/**
 * The sentinels of `REDIS_SENTINELS`: comma-separated `host:port` (an IPv6
 * address in brackets, `[::1]:26379`), blanks around the commas ignored.
 * Throws FLOW_ERR_CONFIG_INVALID naming REDIS_SENTINELS and the bad entry.
 */
export function parseSentinels (value: string): SentinelAddress[] {
  const out: SentinelAddress[] = []
  for (const raw of value.split(',')) {
    const entry = raw.trim()
    const m = SENTINEL.exec(entry)
    const port = m === null ? Number.NaN : Number(m[3])
    if (m === null || port < 1 || port > 65535) {
      throw new ConfigError('REDIS_SENTINELS must be comma-separated host:port pairs ' +
        `(e.g. sentinel-1:26379,sentinel-2:26379), got ${JSON.stringify(entry)}`)
    }
    out.push({ host: m[1] ?? m[2] ?? '', port })
  }
  return out
}

/**
 * REDIS_SENTINELS and REDIS_SENTINEL_NAME go together, and replace
 * REDIS_HOST / REDIS_PORT (the sentinels name the primary).
 */
function checkSentinels (config: FlowConfig): void {
  if (config.redisSentinels === undefined) {
    throw new ConfigError('REDIS_SENTINEL_NAME needs REDIS_SENTINELS (the sentinels to ask for its primary)')
  }
  if (config.redisSentinelName === undefined) {
    throw new ConfigError('REDIS_SENTINELS needs REDIS_SENTINEL_NAME (the master group name the sentinels monitor)')
  }
  parseSentinels(config.redisSentinels)
  if (config.redisHost !== undefined || config.redisPort !== undefined) {
    throw new ConfigError('REDIS_HOST and REDIS_PORT name one Redis: with REDIS_SENTINELS the sentinels name ' +
      'the primary; unset them')
  }
  const tls = (config.redisTls ?? config.redisUrl.trim().startsWith('rediss:')) ||
    config.redisTlsCaFile !== undefined || config.redisTlsCertFile !== undefined
  if (tls) {
    throw new ConfigError('REDIS_SENTINELS does not support TLS yet (REDIS_TLS, rediss://, REDIS_TLS_*_FILE): ' +
      'reach the sentinels and the primary without TLS, or use one Redis with REDIS_URL')
  }
}

/** Whether connections and the project API need a token. */
export function authEnabled (config: FlowConfig): boolean {
  return config.jwtSecret !== undefined || config.jwtPublicKey !== undefined
}
