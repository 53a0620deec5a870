import t from 'tap'
import { flagName, helpText, parseArgs } from '../../lib/cli-args.js'

t.test('a flag is its setting\'s option in kebab case and sets its variable over the environment', async (t) => {
  t.equal(flagName('sessionTtlSeconds'), 'session-ttl-seconds')
  const command = parseArgs(['--session-ttl-seconds', '60', '--log-level=warn', '--port', '4000'], { PORT: '3000', OTHER: 'kept' })
  t.match(command, {
    kind: 'run',
    env: { SESSION_TTL_SECONDS: '60', LOG_LEVEL: 'warn', PORT: '4000', OTHER: 'kept' },
    flags: { '--session-ttl-seconds': 'SESSION_TTL_SECONDS', '--log-level': 'LOG_LEVEL', '--port': 'PORT' }
  })
})

t.test('a bare boolean flag means true; true or false after it is its value', async (t) => {
  t.match(parseArgs(['--redis-tls'], {}), { kind: 'run', env: { REDIS_TLS: 'true' } })
  t.match(parseArgs(['--redis-tls', 'false', '--port', '1'], {}), { kind: 'run', env: { REDIS_TLS: 'false', PORT: '1' } })
  t.match(parseArgs(['--redis-tls', '--port', '1'], {}), { kind: 'run', env: { REDIS_TLS: 'true', PORT: '1' } })
})

t.test('help and version win over flags; usage errors win over both', async (t) => {
  t.same(parseArgs(['--port', '1', '--help'], {}), { kind: 'help' })
  t.same(parseArgs(['-v'], {}), { kind: 'version' })
  t.match(parseArgs(['--help', '--nope'], {}), { kind: 'usage', message: /unknown option --nope/ })
  t.match(parseArgs(['serve'], {}), { kind: 'usage', message: /unexpected argument "serve"/ })
  t.match(parseArgs(['--api-key=k'], {}), { kind: 'usage', message: /--api-key is not accepted on the command line/ })
})

t.test('the help text names the version', async (t) => {
  t.match(helpText('9.9.9'), /^flow-realtime 9\.9\.9: /)
})
