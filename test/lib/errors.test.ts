import t from 'tap'
import { RateLimitedError, rateLimited, wireCode, type FlowError } from '../../lib/errors.js'

t.test('a refusal built for floods is a RateLimitedError without a stack trace', async (t) => {
  const depth = Error.stackTraceLimit
  const err: FlowError = rateLimited('too many')
  t.ok(err instanceof RateLimitedError)
  t.equal(err.statusCode, 429)
  t.equal(err.code, 'FLOW_ERR_RATE_LIMITED')
  t.equal(wireCode(err), 'rate_limited')
  t.equal(err.message, 'too many')
  // No frame lines ("    at ..."): nothing was captured.
  t.notMatch(err.stack ?? '', /\n\s+at /)
  // The process' own setting is back: other errors still get their stack.
  t.equal(Error.stackTraceLimit, depth)
  t.match(new RateLimitedError('x').stack ?? '', /\n\s+at /)
})
