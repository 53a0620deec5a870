import t from 'tap'
import { Backoff, backoffCeiling, backoffDelay, backoffOptions, DEFAULT_BACKOFF } from '../../client/backoff.js'

const opts = { minDelayMs: 250, maxDelayMs: 10_000 }

t.test('the ceiling doubles from the minimum with each attempt and stops at the maximum', async (t) => {
  t.same(Array.from({ length: 8 }, (_, n) => backoffCeiling(n, opts)), [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000])
  t.equal(backoffCeiling(10_000, opts), 10_000, 'a huge attempt stays finite')
  t.equal(backoffCeiling(-3, opts), 250, 'a negative attempt counts as the first')
})

t.test('full jitter: the delay is uniform between 0 and the ceiling', async (t) => {
  t.equal(backoffDelay(3, opts, () => 0), 0, 'the lowest draw waits not at all')
  t.equal(backoffDelay(3, opts, () => 0.5), 1000, 'half the ceiling')
  t.equal(backoffDelay(3, opts, () => 0.999_999), 1999, 'the highest draw stays below the ceiling')
  const delays = Array.from({ length: 2000 }, () => backoffDelay(3, opts))
  t.ok(delays.every((d) => Number.isInteger(d) && d >= 0 && d < 2000), 'every delay is an integer in [0, 2000)')
  const mean = delays.reduce((a, b) => a + b, 0) / delays.length
  // The mean of 2,000 uniform draws on [0, 2000) is 1000 give or take 13 (one standard error).
  t.ok(mean > 850 && mean < 1150, `the delays spread over the whole range (mean ${mean.toFixed(0)})`)
  t.ok(delays.some((d) => d < 200) && delays.some((d) => d > 1800), 'draws reach both ends')
})

t.test('a Backoff counts attempts and starts again from the minimum after a stable connection', async (t) => {
  let now = 0
  const b = new Backoff({ minDelayMs: 100, maxDelayMs: 1000, stableAfterMs: 5000 }, () => 0.5, () => now)
  t.same([b.next(), b.next(), b.next()], [
    { attempt: 0, delayMs: 50 },
    { attempt: 1, delayMs: 100 },
    { attempt: 2, delayMs: 200 }
  ], 'failed attempts back off')
  b.opened()
  now += 4999
  t.equal(b.stable, false, 'not stable before stableAfterMs')
  t.same(b.next(), { attempt: 3, delayMs: 400 }, 'a connection that dropped before it was stable keeps backing off')
  b.opened()
  now += 5000
  t.equal(b.stable, true)
  t.same(b.next(), { attempt: 0, delayMs: 50 }, 'after a stable connection the next retry is the first again')
  t.same(b.next(), { attempt: 1, delayMs: 100 })
  t.equal(b.stable, false, 'a failed attempt is not a connection')
  b.reset()
  t.same(b.next(), { attempt: 0, delayMs: 50 }, 'reset starts again')
})

t.test('reconnect options get defaults and are checked', async (t) => {
  t.same(backoffOptions(), DEFAULT_BACKOFF)
  t.same(DEFAULT_BACKOFF, { minDelayMs: 250, maxDelayMs: 10_000, stableAfterMs: 5000 })
  t.same(backoffOptions({ minDelayMs: 10, maxDelayMs: undefined }), { ...DEFAULT_BACKOFF, minDelayMs: 10 })
  t.throws(() => backoffOptions({ minDelayMs: 500, maxDelayMs: 100 }), RangeError)
  t.throws(() => backoffOptions({ minDelayMs: -1 }), /reconnect.minDelayMs/)
  t.throws(() => backoffOptions({ stableAfterMs: Number.NaN }), /reconnect.stableAfterMs/)
})
