import t, { type Test } from 'tap'
import { once } from 'node:events'
import { CircuitBreaker, systemClock, type CircuitBreakerOptions, type Clock } from '../../lib/breaker.js'
import { deferred, withDeadline, type Deferred } from '../helpers/wait.js'

interface FakeTimer {
  readonly id: number
  readonly at: number
  readonly fn: () => void
}

/** Lets every pending promise callback run (the fake clock uses no real timers). */
async function flush (): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => { setImmediate(resolve) })
}

/**
 * A clock whose time only moves in {@link FakeClock.advance}: timers are kept
 * sorted by due time (then creation order) and fire one by one, with promise
 * callbacks flushed after each, so probe results settle before the next timer.
 */
class FakeClock implements Clock {
  #now: number
  #nextId = 1
  #timers: FakeTimer[] = []

  constructor (start = 1_000) {
    this.#now = start
  }

  now (): number {
    return this.#now
  }

  setTimeout (fn: () => void, ms: number): unknown {
    const timer = { id: this.#nextId++, at: this.#now + ms, fn }
    this.#timers.push(timer)
    this.#timers.sort((a, b) => a.at - b.at || a.id - b.id)
    return timer.id
  }

  clearTimeout (handle: unknown): void {
    this.#timers = this.#timers.filter((timer) => timer.id !== handle)
  }

  /** Number of timers not yet fired nor cleared. */
  get pending (): number {
    return this.#timers.length
  }

  /** Moves time forward by `ms`, firing every timer due on the way. */
  async advance (ms: number): Promise<void> {
    const target = this.#now + ms
    await flush()
    for (;;) {
      const next = this.#timers[0]
      if (next === undefined || next.at > target) break
      this.#timers.shift()
      this.#now = next.at
      next.fn()
      await flush()
    }
    this.#now = target
    await flush()
  }
}

type Step = 'ok' | Error | Deferred<void>

/**
 * A probe that plays `steps` in order, one per call ('ok' resolves, an Error
 * rejects, a Deferred settles when the test says); 'ok' once they run out.
 */
function scripted (steps: Step[] = []): { probe: () => Promise<void>, calls: () => number, maxInFlight: () => number } {
  let calls = 0
  let inFlight = 0
  let maxInFlight = 0
  const probe = async (): Promise<void> => {
    calls++
    inFlight++
    maxInFlight = Math.max(maxInFlight, inFlight)
    try {
      const step = steps.shift() ?? 'ok'
      if (step instanceof Error) throw step
      if (step !== 'ok') await step.promise
    } finally {
      inFlight--
    }
  }
  return { probe, calls: () => calls, maxInFlight: () => maxInFlight }
}

function describe (reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason)
}

/**
 * A breaker on a fake clock (probe delay 100 ms, cap 800 ms, probe timeout
 * 1,000 ms unless overridden) and the list of its events as
 * `'<time> <event>[ <reason>]'`, each with the state seen by the listener.
 */
function setup (t: Test, options: Partial<CircuitBreakerOptions> = {}): { clock: FakeClock, breaker: CircuitBreaker, events: string[] } {
  const clock = new FakeClock()
  const breaker = new CircuitBreaker({
    probe: scripted().probe,
    probeDelayMs: 100,
    maxProbeDelayMs: 800,
    probeTimeoutMs: 1_000,
    clock,
    ...options
  })
  const events: string[] = []
  breaker.on('open', (reason) => { events.push(`${clock.now()} open ${describe(reason)} [${breaker.state}]`) })
  breaker.on('half-open', () => { events.push(`${clock.now()} half-open [${breaker.state}]`) })
  breaker.on('close', () => { events.push(`${clock.now()} close [${breaker.state}]`) })
  breaker.on('probe-failed', (reason) => { events.push(`${clock.now()} probe-failed ${describe(reason)} [${breaker.state}]`) })
  t.teardown(() => { breaker.dispose() })
  return { clock, breaker, events }
}

t.test('opens when consecutive failures reach the threshold, not before', async (t) => {
  const { breaker, events } = setup(t, { failureThreshold: 3 })
  breaker.failure(new Error('one'))
  breaker.failure(new Error('two'))
  t.equal(breaker.state, 'closed')
  t.same(events, [])
  breaker.failure(new Error('three'))
  t.equal(breaker.state, 'open')
  t.same(events, ['1000 open three [open]'], 'the reason is the failure that reached the threshold')
  t.equal(breaker.opens, 1)
})

t.test('the threshold defaults to one failure', async (t) => {
  const { breaker, events } = setup(t)
  breaker.failure('down')
  t.equal(breaker.state, 'open')
  t.same(events, ['1000 open down [open]'])
})

t.test('a success resets the consecutive-failure count', async (t) => {
  const { breaker } = setup(t, { failureThreshold: 3 })
  breaker.failure()
  breaker.failure()
  breaker.success()
  breaker.failure()
  breaker.failure()
  t.equal(breaker.state, 'closed', 'two failures since the success')
  breaker.failure()
  t.equal(breaker.state, 'open')
})

t.test('trip opens a closed circuit at once whatever the count, and is a no-op when already open', async (t) => {
  const { breaker, events } = setup(t, { failureThreshold: 5 })
  breaker.failure()
  breaker.trip('connection dropped')
  t.equal(breaker.state, 'open')
  breaker.trip('again')
  breaker.failure('ignored')
  t.same(events, ['1000 open connection dropped [open]'])
  t.equal(breaker.opens, 1)
})

t.test('a success while open does not close the circuit: only a probe does', async (t) => {
  const { clock, breaker, events } = setup(t, { probe: scripted([new Error('still down')]).probe })
  breaker.trip('down')
  breaker.success()
  t.equal(breaker.state, 'open')
  await clock.advance(100)
  t.equal(breaker.state, 'open', 'the failed probe keeps it open')
  t.same(events, ['1000 open down [open]', '1100 half-open [half-open]', '1100 probe-failed still down [open]'])
})

t.test('emits open, half-open and close in order, after the state changed, and counts transitions', async (t) => {
  const { clock, breaker, events } = setup(t)
  t.equal(breaker.since, 1000, 'since starts at construction')
  breaker.trip('boom')
  t.equal(breaker.since, 1000)
  await clock.advance(99)
  t.equal(breaker.state, 'open', 'no probe before the delay')
  await clock.advance(1)
  t.equal(breaker.state, 'closed')
  t.equal(breaker.since, 1100)
  t.same(events, ['1000 open boom [open]', '1100 half-open [half-open]', '1100 close [closed]'])
  t.equal(breaker.opens, 1)
  t.equal(breaker.closes, 1)
  breaker.failure('again')
  await clock.advance(100)
  t.equal(breaker.opens, 2)
  t.equal(breaker.closes, 2)
})

t.test('a failed probe emits probe-failed with its reason, not a second open, and probes again', async (t) => {
  const { clock, breaker, events } = setup(t, { probe: scripted([new Error('refused')]).probe })
  breaker.trip('dropped')
  await clock.advance(100)
  t.equal(breaker.state, 'open')
  t.equal(breaker.since, 1100, 'reopening is a state change')
  t.equal(breaker.opens, 1, 'one outage, one open')
  await clock.advance(200)
  t.same(events, [
    '1000 open dropped [open]',
    '1100 half-open [half-open]',
    '1100 probe-failed refused [open]',
    '1300 half-open [half-open]',
    '1300 close [closed]'
  ])
  t.equal(breaker.opens, 1)
  t.equal(breaker.closes, 1)
})

t.test('failure() and trip() while half-open do not change the state: the probe decides', async (t) => {
  const pending = deferred()
  const { clock, breaker, events } = setup(t, { probe: scripted([pending]).probe })
  breaker.trip('down')
  await clock.advance(100)
  t.equal(breaker.state, 'half-open')
  breaker.failure('during probe')
  breaker.trip('during probe')
  t.equal(breaker.state, 'half-open')
  pending.resolve()
  await clock.advance(0)
  t.equal(breaker.state, 'closed')
  t.same(events, ['1000 open down [open]', '1100 half-open [half-open]', '1100 close [closed]'])
})

t.test('backs off exponentially between failed probes up to the cap, and from the base again after closing', async (t) => {
  const steps: Step[] = Array.from({ length: 6 }, (_, i) => new Error(`fail ${i + 1}`))
  const { clock, breaker, events } = setup(t, { probe: scripted(steps).probe, probeDelayMs: 100, maxProbeDelayMs: 500 })
  breaker.trip('down')
  await clock.advance(10_000)
  const probes = (): number[] => events.filter((e) => e.includes('half-open')).map((e) => Number(e.split(' ')[0]))
  // delays 100, 200, 400, 500 (capped), 500, 500, then the seventh probe succeeds
  t.same(probes(), [1100, 1300, 1700, 2200, 2700, 3200, 3700])
  t.equal(breaker.state, 'closed')
  events.length = 0
  breaker.trip('down again')
  await clock.advance(99)
  t.equal(breaker.state, 'open', 'not yet')
  await clock.advance(1)
  t.same(events, ['11000 open down again [open]', '11100 half-open [half-open]', '11100 close [closed]'], 'back to the base delay')
})

t.test('runs recover after a good probe and before close', async (t) => {
  const order: string[] = []
  const { clock, breaker } = setup(t, {
    probe: async () => { order.push(`probe ${breaker.state}`) },
    recover: async () => { order.push(`recover ${breaker.state}`) }
  })
  breaker.on('close', () => { order.push('close') })
  breaker.trip()
  await clock.advance(100)
  t.same(order, ['probe half-open', 'recover half-open', 'close'])
})

t.test('does not run recover after a failed probe', async (t) => {
  let recovers = 0
  const { clock, breaker } = setup(t, {
    probe: scripted([new Error('no')]).probe,
    recover: async () => { recovers++ }
  })
  breaker.trip()
  await clock.advance(100)
  t.equal(recovers, 0)
  await clock.advance(200)
  t.equal(recovers, 1, 'runs after the next, good probe')
  t.equal(breaker.state, 'closed')
})

t.test('a failing recover keeps the circuit open and is reported like a failed probe', async (t) => {
  const outcomes: Array<Error | undefined> = [new Error('resync failed'), undefined]
  const { clock, breaker, events } = setup(t, {
    recover: async () => {
      const outcome = outcomes.shift()
      if (outcome !== undefined) throw outcome
    }
  })
  breaker.trip('down')
  await clock.advance(100)
  t.equal(breaker.state, 'open')
  t.equal(breaker.closes, 0)
  await clock.advance(200)
  t.same(events, [
    '1000 open down [open]',
    '1100 half-open [half-open]',
    '1100 probe-failed resync failed [open]',
    '1300 half-open [half-open]',
    '1300 close [closed]'
  ], 'the delay doubled as after a failed probe')
})

t.test('a hanging probe fails after probeTimeoutMs and its late success is ignored', async (t) => {
  const hanging = deferred()
  let recovers = 0
  const reasons: unknown[] = []
  const { clock, breaker, events } = setup(t, {
    probe: scripted([hanging]).probe,
    recover: async () => { recovers++ },
    probeTimeoutMs: 1_000
  })
  breaker.on('probe-failed', (reason) => { reasons.push(reason) })
  breaker.trip('down')
  await clock.advance(100)
  await clock.advance(999)
  t.equal(breaker.state, 'half-open', 'still waiting one ms before the timeout')
  await clock.advance(1)
  t.equal(breaker.state, 'open')
  t.match(reasons, [{ message: 'probe timed out after 1000 ms', code: 'FLOW_ERR_BREAKER_PROBE_TIMEOUT' }])
  hanging.resolve()
  await clock.advance(0)
  t.equal(breaker.state, 'open', 'the late success does not close the circuit')
  t.equal(recovers, 0, 'nor runs recover')
  await clock.advance(200)
  t.equal(breaker.state, 'closed', 'the next probe, after the doubled delay, does')
  t.same(events.map((e) => e.split(' ').slice(0, 2).join(' ')), [
    '1000 open', '1100 half-open', '2100 probe-failed', '2300 half-open', '2300 close'
  ])
})

t.test('the probe timeout bounds probe and recover together', async (t) => {
  const hanging = deferred()
  const { clock, breaker, events } = setup(t, {
    probe: async () => {},
    recover: async () => { await hanging.promise },
    probeTimeoutMs: 500
  })
  breaker.trip('down')
  await clock.advance(100)
  t.equal(breaker.state, 'half-open', 'recover is running')
  await clock.advance(500)
  t.equal(breaker.state, 'open')
  t.same(events.at(-1), '1600 probe-failed probe timed out after 500 ms [open]')
  hanging.resolve()
  await clock.advance(0)
  t.equal(breaker.state, 'open', 'the late recover is ignored')
})

t.test('probeNow runs the probe at once when open, skipping the wait', async (t) => {
  const probe = scripted()
  const { clock, breaker, events } = setup(t, { probe: probe.probe, probeDelayMs: 1_000, maxProbeDelayMs: 1_000 })
  breaker.trip('down')
  await clock.advance(10)
  breaker.probeNow()
  t.equal(breaker.state, 'half-open', 'synchronously')
  t.equal(probe.calls(), 1)
  t.equal(clock.pending, 1, 'the scheduled probe is cancelled: only the probe timeout is left')
  await clock.advance(0)
  t.equal(breaker.state, 'closed')
  await clock.advance(5_000)
  t.equal(probe.calls(), 1, 'the skipped timer does not probe again')
  t.same(events, ['1000 open down [open]', '1010 half-open [half-open]', '1010 close [closed]'])
})

t.test('probeNow does nothing while closed or while a probe runs', async (t) => {
  const pending = deferred()
  const probe = scripted([pending])
  const { clock, breaker, events } = setup(t, { probe: probe.probe })
  breaker.probeNow()
  t.equal(breaker.state, 'closed')
  t.equal(probe.calls(), 0)
  t.same(events, [])
  breaker.trip('down')
  await clock.advance(100)
  breaker.probeNow()
  breaker.probeNow()
  t.equal(probe.calls(), 1)
  t.equal(breaker.state, 'half-open')
  pending.reject(new Error('no'))
  await clock.advance(0)
  t.same(events, ['1000 open down [open]', '1100 half-open [half-open]', '1100 probe-failed no [open]'])
})

t.test('runs only one probe at a time', async (t) => {
  const first = deferred()
  const second = deferred()
  const probe = scripted([first, second])
  const { clock, breaker } = setup(t, { probe: probe.probe, probeTimeoutMs: 10_000 })
  breaker.trip('down')
  await clock.advance(100)
  for (let i = 0; i < 3; i++) {
    breaker.probeNow()
    breaker.trip('again')
    breaker.failure('again')
  }
  await clock.advance(5_000)
  t.equal(probe.calls(), 1, 'nothing starts a second probe while one runs')
  first.reject(new Error('no'))
  await clock.advance(0)
  breaker.probeNow()
  breaker.probeNow()
  await clock.advance(1_000)
  t.equal(probe.calls(), 2, 'the scheduled probe was replaced by probeNow, not added to it')
  second.resolve()
  await clock.advance(0)
  t.equal(breaker.state, 'closed')
  t.equal(probe.maxInFlight(), 1)
})

t.test('degradedMs accumulates across two outages and includes the current one', async (t) => {
  const slow = deferred()
  const { clock, breaker } = setup(t, { probe: scripted(['ok', slow]).probe })
  await clock.advance(50)
  t.equal(breaker.degradedMs, 0)
  breaker.trip('first')
  await clock.advance(30)
  t.equal(breaker.degradedMs, 30, 'the current outage counts')
  await clock.advance(70)
  t.equal(breaker.state, 'closed')
  t.equal(breaker.degradedMs, 100)
  await clock.advance(200)
  t.equal(breaker.degradedMs, 100, 'closed time does not count')
  breaker.trip('second')
  await clock.advance(100)
  t.equal(breaker.state, 'half-open')
  await clock.advance(25)
  t.equal(breaker.degradedMs, 225, 'half-open time counts')
  slow.resolve()
  await clock.advance(0)
  t.equal(breaker.state, 'closed')
  await clock.advance(1_000)
  t.equal(breaker.degradedMs, 225)
  t.equal(breaker.opens, 2)
  t.equal(breaker.closes, 2)
})

t.test('dispose stops timers and events, freezes degradedMs and is idempotent', async (t) => {
  const probe = scripted()
  const { clock, breaker, events } = setup(t, { probe: probe.probe })
  breaker.trip('down')
  await clock.advance(40)
  breaker.dispose()
  t.equal(clock.pending, 0, 'the probe timer is cleared')
  breaker.dispose()
  breaker.probeNow()
  await clock.advance(10_000)
  t.equal(probe.calls(), 0)
  t.equal(breaker.state, 'open')
  t.equal(breaker.degradedMs, 40)
  t.same(events, ['1000 open down [open]'])
})

t.test('dispose during a probe clears its timeout and ignores its result', async (t) => {
  const pending = deferred()
  let recovers = 0
  const { clock, breaker, events } = setup(t, { probe: scripted([pending]).probe, recover: async () => { recovers++ } })
  breaker.trip('down')
  await clock.advance(100)
  t.equal(clock.pending, 1, 'the probe timeout')
  breaker.dispose()
  t.equal(clock.pending, 0)
  pending.resolve()
  await clock.advance(10_000)
  t.equal(recovers, 0)
  t.equal(breaker.state, 'half-open')
  t.same(events, ['1000 open down [open]', '1100 half-open [half-open]'])
})

t.test('a closed breaker after dispose ignores failures and trips', async (t) => {
  const { clock, breaker, events } = setup(t)
  breaker.dispose()
  breaker.failure('x')
  breaker.trip('y')
  await clock.advance(1_000)
  t.equal(breaker.state, 'closed')
  t.equal(clock.pending, 0)
  t.same(events, [])
})

t.test('probe and recover rejections never escape as unhandled', async (t) => {
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => { process.off('unhandledRejection', onUnhandled) })

  // a probe that throws synchronously
  const sync = setup(t, { probe: () => { throw new Error('sync throw') } })
  sync.breaker.trip()
  await sync.clock.advance(100)
  t.same(sync.events.at(-1), '1100 probe-failed sync throw [open]')

  // a recover that rejects
  const recover = setup(t, { recover: async () => { throw new Error('recover') } })
  recover.breaker.trip()
  await recover.clock.advance(100)
  t.equal(recover.breaker.state, 'open')

  // a probe that rejects after its timeout
  const late = deferred()
  const timedOut = setup(t, { probe: scripted([late]).probe, probeTimeoutMs: 50 })
  timedOut.breaker.trip()
  await timedOut.clock.advance(150)
  late.reject(new Error('late'))

  // a probe that rejects after dispose
  const afterDispose = deferred()
  const disposed = setup(t, { probe: scripted([afterDispose]).probe })
  disposed.breaker.trip()
  await disposed.clock.advance(100)
  disposed.breaker.dispose()
  afterDispose.reject(new Error('after dispose'))

  await flush()
  t.same(unhandled, [])
})

t.test('rejects invalid options', async (t) => {
  const probe = async (): Promise<void> => {}
  t.throws(() => new CircuitBreaker({ probe: 'nope' as unknown as () => Promise<void> }), TypeError)
  t.throws(() => new CircuitBreaker({ probe, failureThreshold: 0 }), RangeError)
  t.throws(() => new CircuitBreaker({ probe, failureThreshold: 1.5 }), RangeError)
  t.throws(() => new CircuitBreaker({ probe, probeDelayMs: -1 }), RangeError)
  t.throws(() => new CircuitBreaker({ probe, probeDelayMs: 100, maxProbeDelayMs: 50 }), RangeError)
  t.throws(() => new CircuitBreaker({ probe, probeTimeoutMs: Number.NaN }), RangeError)
})

t.test('the default system clock probes after a real delay and its timers do not keep the process alive', async (t) => {
  const outcomes: Array<Error | undefined> = [new Error('not yet')]
  let resolveHang: (() => void) | undefined
  const breaker = new CircuitBreaker({
    probe: async () => {
      const outcome = outcomes.shift()
      if (outcome !== undefined) throw outcome
    },
    probeDelayMs: 20
  })
  t.teardown(() => { breaker.dispose(); resolveHang?.() })
  const timeouts = (): number => process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length

  const started = systemClock.now()
  const before = timeouts()
  breaker.trip('down')
  t.equal(timeouts(), before, 'the scheduled probe is not a ref\'d timer')
  const failed = once(breaker, 'probe-failed')
  const closed = once(breaker, 'close')
  await withDeadline(failed, 'the first probe failing')
  await withDeadline(closed, 'the circuit closing')
  // 20 ms, then 40 ms; a few ms of slack for Date.now's granularity
  t.ok(Date.now() - started >= 55, `closed after ${Date.now() - started} ms`)
  t.ok(breaker.degradedMs >= 55, `degraded for ${breaker.degradedMs} ms`)

  // the probe timeout timer of a running probe is unref'd too
  const hanging = new CircuitBreaker({
    probe: () => new Promise<void>((resolve) => { resolveHang = resolve }),
    probeDelayMs: 60_000,
    probeTimeoutMs: 60_000
  })
  t.teardown(() => { hanging.dispose() })
  hanging.trip()
  const idle = timeouts()
  hanging.probeNow()
  t.equal(hanging.state, 'half-open')
  t.equal(timeouts(), idle, 'the probe timeout is not a ref\'d timer')
})
