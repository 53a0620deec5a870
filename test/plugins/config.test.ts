import t from 'tap'
import Fastify from 'fastify'
import flow from '../../app.js'
import { authEnabled, parseSentinels, resolveConfig, type FlowConfigOptions } from '../../lib/config.js'

/** The error `fn` throws; fails the test when it returns. */
function thrown (fn: () => unknown): Error & { code?: string } {
  try {
    fn()
  } catch (err) {
    if (err instanceof Error) return err
    throw err
  }
  throw new Error('expected an error, nothing was thrown')
}

t.test('resolveConfig rejects a bad environment value with FLOW_ERR_CONFIG_INVALID naming the variable', async (t) => {
  const cases: Array<[NodeJS.ProcessEnv, RegExp]> = [
    [{ PORT: 'abc' }, /PORT must be an integer, got "abc"/],
    [{ PORT: '3000.5' }, /PORT must be an integer/],
    [{ PORT: '-1' }, /PORT must be >= 0/],
    [{ PORT: '65536' }, /PORT must be <= 65535/],
    [{ SESSION_TTL_SECONDS: '0' }, /SESSION_TTL_SECONDS must be >= 2, got 0/],
    [{ SESSION_TTL_SECONDS: 'soon' }, /SESSION_TTL_SECONDS must be an integer/],
    [{ USE_REDIS_WEBSOCKETS: 'maybe' }, /USE_REDIS_WEBSOCKETS must be true or false, got "maybe"/],
    [{ USE_REDIS_COLLABORATION: 'on' }, /USE_REDIS_COLLABORATION must be true or false/],
    [{ USE_REDIS_EVENT_ORDERING: '2' }, /USE_REDIS_EVENT_ORDERING must be true or false/],
    [{ REDIS_URL: 'http://x' }, /REDIS_URL must start with redis:\/\/ or rediss:\/\/, got http:\/\//],
    [{ REDIS_URL: 'localhost:6379' }, /REDIS_URL must/],
    [{ REDIS_URL: 'not a url' }, /REDIS_URL must be a URL/],
    [{ FLOW_AUTH: 'off' }, /FLOW_AUTH must be one of none, got "off"/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL must be one of/],
    [{ FLOW_OPS_PAGE_MAX: '100' }, /FLOW_OPS_PAGE_MAX must be >= 500/],
    [{ FLOW_KEY_PREFIX: '' }, /FLOW_KEY_PREFIX must not be empty/]
  ]
  for (const [env, message] of cases) {
    const err = thrown(() => resolveConfig({}, env))
    t.equal(err.code, 'FLOW_ERR_CONFIG_INVALID', `${JSON.stringify(env)}: code`)
    t.match(err.message, message, `${JSON.stringify(env)}: message`)
  }
})

t.test('FLOW_AUTH=none with a JWT secret or public key is a configuration error', async (t) => {
  for (const env of [{ FLOW_AUTH: 'none', FLOW_JWT_SECRET: 's' }, { FLOW_AUTH: 'none', FLOW_JWT_PUBLIC_KEY: 'pem' }]) {
    const err = thrown(() => resolveConfig({}, env))
    t.equal(err.code, 'FLOW_ERR_CONFIG_INVALID')
    t.match(err.message, /FLOW_AUTH=none cannot be combined with FLOW_JWT_SECRET or FLOW_JWT_PUBLIC_KEY/)
  }
})

t.test('NODE_ENV=production refuses to start without authentication unless FLOW_AUTH=none', async (t) => {
  const err = thrown(() => resolveConfig({}, { NODE_ENV: 'production' }))
  t.match(err.message, /NODE_ENV=production needs FLOW_JWT_SECRET or FLOW_JWT_PUBLIC_KEY, or FLOW_AUTH=none/)
  t.match(thrown(() => resolveConfig({}, { NODE_ENV: 'production', FLOW_JWT_SECRET: '' })).message, /NODE_ENV=production/, 'an empty secret is no secret')
  t.equal(resolveConfig({}, { NODE_ENV: 'production', FLOW_AUTH: 'none' }).auth, 'none')
  t.equal(resolveConfig({}, { NODE_ENV: 'production', FLOW_JWT_SECRET: 's' }).jwtSecret, 's')
  t.equal(resolveConfig({ jwtSecret: 's' }, { NODE_ENV: 'production' }).jwtSecret, 's', 'a secret passed as an option counts')
})

t.test('defaults apply when nothing is set', async (t) => {
  const config = resolveConfig({}, {})
  t.match(config, {
    port: 3000,
    host: '127.0.0.1',
    sessionTtlSeconds: 30,
    keyPrefix: 'flow',
    redisUrl: 'redis://127.0.0.1:6379',
    useRedisCollaboration: false,
    useRedisWebsockets: false,
    useRedisEventOrdering: false,
    historyMemory: 1000,
    historyRedis: 10000,
    maxPayloadBytes: 65536,
    maxPresenceBytes: 4096,
    maxProjectsPerConnection: 64,
    rateLimit: 1000,
    rateBurst: 2000,
    heartbeatMs: 30000,
    maxBufferedBytes: 8 * 1024 * 1024,
    shutdownTimeoutMs: 5000,
    opsPageMax: 1000
  })
  t.equal(config.jwtSecret, undefined)
  t.equal(authEnabled(config), false)
})

t.test('the contract variables are read with their meaning', async (t) => {
  const config = resolveConfig({}, {
    PORT: '8080',
    HOST: '0.0.0.0',
    REDIS_URL: 'rediss://user:pass@redis.example:6380/0',
    USE_REDIS_COLLABORATION: 'true',
    USE_REDIS_WEBSOCKETS: 'false',
    USE_REDIS_EVENT_ORDERING: 'TRUE',
    SESSION_TTL_SECONDS: '45',
    FLOW_KEY_PREFIX: 'tenant-a',
    FLOW_JWT_SECRET: 'secret',
    FLOW_API_KEY: 'key'
  })
  t.match(config, {
    port: 8080,
    host: '0.0.0.0',
    redisUrl: 'rediss://user:pass@redis.example:6380/0',
    useRedisCollaboration: true,
    useRedisWebsockets: false,
    useRedisEventOrdering: true,
    sessionTtlSeconds: 45,
    keyPrefix: 'tenant-a',
    jwtSecret: 'secret',
    apiKey: 'key'
  })
  t.equal(authEnabled(config), true)
  t.equal(authEnabled(resolveConfig({}, { FLOW_JWT_PUBLIC_KEY: 'pem' })), true)
})

t.test('options win over the environment and a bad option is named with its variable', async (t) => {
  t.equal(resolveConfig({ port: 4000 }, { PORT: '5000' }).port, 4000)
  t.equal(resolveConfig({ sessionTtlSeconds: 10 }, { SESSION_TTL_SECONDS: 'garbage' }).sessionTtlSeconds, 10, 'an option hides a bad variable')
  t.match(thrown(() => resolveConfig({ sessionTtlSeconds: 1 }, {})).message, /option sessionTtlSeconds \(SESSION_TTL_SECONDS\) must be >= 2/)
  t.match(thrown(() => resolveConfig({ port: 1.5 }, {})).message, /option port \(PORT\) must be an integer/)
  t.match(thrown(() => resolveConfig({ redisUrl: 'http://x' }, {})).message, /option redisUrl \(REDIS_URL\) must start with redis:\/\//)
  const unknown = thrown(() => resolveConfig({ sesionTtlSeconds: 10 } as FlowConfigOptions, {}))
  t.match(unknown.message, /unknown option sesionTtlSeconds/)
})

t.test('registering the plugin with a bad option fails the boot with the option named', async (t) => {
  const app = Fastify({ logger: false })
  t.teardown(async () => { await app.close() })
  await app.register(flow, { env: {}, sessionTtlSeconds: 0 }).ready().then(
    () => { t.fail('the app booted') },
    (err: unknown) => {
      t.match(err, { code: 'FLOW_ERR_CONFIG_INVALID', message: /SESSION_TTL_SECONDS/ })
    }
  )
})

t.test('the plugin reads the environment it is given, not process.env, when env is passed', async (t) => {
  const app = Fastify({ logger: false })
  t.teardown(async () => { await app.close() })
  await app.register(flow, { env: { SESSION_TTL_SECONDS: '12', FLOW_KEY_PREFIX: 'given' } })
  await app.ready()
  t.equal(app.flow.config.sessionTtlSeconds, 12)
  t.equal(app.flow.config.keyPrefix, 'given')
})

t.test('REDIS_SENTINELS and REDIS_SENTINEL_NAME are read together and checked, naming the variable', async (t) => {
  const config = resolveConfig({}, { REDIS_SENTINELS: 's1:26379, 10.0.0.2:26380,[::1]:26381', REDIS_SENTINEL_NAME: 'flow' })
  t.equal(config.redisSentinelName, 'flow')
  t.same(parseSentinels(config.redisSentinels ?? ''), [
    { host: 's1', port: 26379 }, { host: '10.0.0.2', port: 26380 }, { host: '::1', port: 26381 }
  ], 'host:port pairs, blanks ignored, IPv6 in brackets')
  for (const bad of ['s1', 's1:', 's1:0', 's1:70000', 's1:26379,', 'a b:1', 'http://s1:26379']) {
    t.match(thrown(() => resolveConfig({}, { REDIS_SENTINELS: bad, REDIS_SENTINEL_NAME: 'flow' })).message,
      /REDIS_SENTINELS must be comma-separated host:port pairs/, `${JSON.stringify(bad)} is refused`)
  }
  t.match(thrown(() => resolveConfig({}, { REDIS_SENTINELS: 's1:26379' })).message, /REDIS_SENTINELS needs REDIS_SENTINEL_NAME/)
  t.match(thrown(() => resolveConfig({}, { REDIS_SENTINEL_NAME: 'flow' })).message, /REDIS_SENTINEL_NAME needs REDIS_SENTINELS/)
  t.match(thrown(() => resolveConfig({}, { REDIS_SENTINELS: 's1:26379', REDIS_SENTINEL_NAME: 'flow', REDIS_HOST: 'r' })).message,
    /REDIS_HOST and REDIS_PORT name one Redis/)
  t.match(thrown(() => resolveConfig({}, { REDIS_SENTINELS: 's1:26379', REDIS_SENTINEL_NAME: 'flow', REDIS_URL: 'rediss://r:6379' })).message,
    /REDIS_SENTINELS does not support TLS yet/)
  t.match(thrown(() => resolveConfig({ redisSentinels: 's1:26379', redisSentinelName: '' }, {})).message,
    /option redisSentinelName \(REDIS_SENTINEL_NAME\) must not be empty/)
  t.equal(resolveConfig({}, {}).redisSentinels, undefined, 'unset by default: one Redis, REDIS_URL')
})

t.test('FLOW_ACK_DURABILITY and its replicas and timeout are read and checked, naming the variable', async (t) => {
  const defaults = resolveConfig({}, {})
  t.same([defaults.ackDurability, defaults.ackReplicas, defaults.ackTimeoutMs], ['memory', 1, 500], 'memory acks by default')
  const config = resolveConfig({}, { FLOW_ACK_DURABILITY: 'replica', FLOW_ACK_REPLICAS: '2', FLOW_ACK_TIMEOUT_MS: '200' })
  t.same([config.ackDurability, config.ackReplicas, config.ackTimeoutMs], ['replica', 2, 200])
  t.match(thrown(() => resolveConfig({}, { FLOW_ACK_DURABILITY: 'disk' })).message, /FLOW_ACK_DURABILITY/)
  t.match(thrown(() => resolveConfig({}, { FLOW_ACK_REPLICAS: '0' })).message, /FLOW_ACK_REPLICAS/)
  t.match(thrown(() => resolveConfig({}, { FLOW_ACK_DURABILITY: 'replica', FLOW_ACK_TIMEOUT_MS: '1000' })).message,
    /FLOW_ACK_TIMEOUT_MS \(1000\) must be below FLOW_REDIS_COMMAND_TIMEOUT_MS \(1000\)/, 'a wait as long as the watchdog\'s is refused')
  t.equal(resolveConfig({}, { FLOW_ACK_TIMEOUT_MS: '1000' }).ackTimeoutMs, 1000, 'not checked while acks are memory ones')
})
