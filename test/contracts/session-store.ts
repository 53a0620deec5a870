/**
 * The SessionStore contract: the JSDoc of ports/session-store.ts as tests.
 * Every adapter's test file runs it with two stores sharing one backing
 * store, like two instances on one Redis.
 *
 * Written to run against a shared, long-lived store: each test uses its own
 * project ids and never assumes a fresh store. Expiry is awaited by polling
 * with a deadline, never by sleeping a fixed time.
 */
import type { Test } from 'tap'
import { randomBytes } from 'node:crypto'
import type { ExpiredSession, SessionRef, SessionStore } from '../../ports/session-store.js'
import type { Member } from '../../lib/types.js'
import { waitFor } from '../helpers/wait.js'

export interface SessionStoreHarness {
  readonly a: SessionStore
  readonly b: SessionStore
  /** frees everything the factory made */
  readonly close: () => Promise<void>
}

export type SessionStoreFactory = (opts: { ttlMs: number }) => Promise<SessionStoreHarness>

/** TTL of tests that do not exercise expiry: never reached by them. */
const LONG_TTL_MS = 60_000
/** TTL of the expiry tests: short, yet far above the time a call takes. */
const SHORT_TTL_MS = 300
/** Deadline for an expired session to leave `list` or reach `reap`. */
const EXPIRY_TIMEOUT_MS = SHORT_TTL_MS + 3000

let counter = 0

/** A project or session id unique across runs: a counter and a random suffix. */
function uniqueId (prefix: string): string {
  counter += 1
  return `${prefix}-${counter}-${randomBytes(4).toString('hex')}`
}

function newMember (overrides: Partial<Member> = {}): Member {
  counter += 1
  return {
    sessionId: uniqueId('session'),
    userId: `user-${counter}`,
    presence: { cursor: { x: counter, y: 2 }, name: 'Zoë 👩‍💻', tags: ['a', null], status: null },
    joinedAt: 1_700_000_000_000 + counter,
    ...overrides
  }
}

function sessionIds (members: readonly Member[]): string[] {
  return members.map(member => member.sessionId)
}

export function sessionStoreContract (t: Test, name: string, factory: SessionStoreFactory): void {
  t.test(`${name} fulfils the SessionStore contract`, async t => {
    async function open (t: Test, ttlMs = LONG_TTL_MS): Promise<SessionStoreHarness> {
      const harness = await factory({ ttlMs })
      t.teardown(harness.close)
      return harness
    }

    t.test('lists a member added through the other instance, presence included', async t => {
      const { a, b } = await open(t)
      const project = uniqueId('project')
      t.strictSame(await b.list(project), [], 'a new project has no member')
      const member = newMember()
      await a.add(project, member)
      t.strictSame(await b.list(project), [member], 'listed by the other instance')
      t.strictSame(await a.list(project), [member], 'listed by the same instance')
    })

    t.test('lists members oldest join first', async t => {
      const { a, b } = await open(t)
      const project = uniqueId('project')
      const base = 1_700_000_000_000
      const members = [3, 1, 4, 2].map(n => newMember({ joinedAt: base + n }))
      for (const [i, member] of members.entries()) await (i % 2 === 0 ? a : b).add(project, member)
      const sorted = [...members].sort((x, y) => x.joinedAt - y.joinedAt)
      t.strictSame(await a.list(project), sorted)
      t.strictSame(await b.list(project), sorted)
    })

    t.test('replaces a session added again with the same id: one entry, the new member', async t => {
      const { a, b } = await open(t)
      const project = uniqueId('project')
      const member = newMember()
      const other = newMember()
      await a.add(project, member)
      await a.add(project, other)
      await a.add(project, member)
      t.strictSame(await b.list(project), [member, other], 'adding the same member again keeps one entry')
      const again = { ...member, userId: 'someone-else', presence: { status: 'again' }, joinedAt: other.joinedAt + 1 }
      await b.add(project, again)
      t.strictSame(await a.list(project), [other, again], 'replaced by the other instance: one entry, the new member')
      t.strictSame(await a.remove(project, member.sessionId), again, 'remove resolves the new member')
      t.equal(await b.remove(project, member.sessionId), null, 'once')
      t.strictSame(await b.list(project), [other])
    })

    t.test('stores the presence version given to add, 0 by default, and add replaces it', async t => {
      const { a, b } = await open(t)
      const project = uniqueId('project')
      const member = newMember()
      await a.add(project, member)
      t.equal(await b.setPresence(project, member.sessionId, { v: 0 }, 0), true, 'version 0 against the default: the session is there')
      t.strictSame((await a.list(project))[0]?.presence, member.presence, 'but not applied: 0 is not greater than 0')
      t.equal(await b.setPresence(project, member.sessionId, { v: 1 }, 1), true)
      t.strictSame((await a.list(project))[0]?.presence, { v: 1 }, 'version 1 is newer')

      await b.add(project, member, 10)
      t.strictSame((await a.list(project))[0]?.presence, member.presence, 'add replaced the presence')
      t.equal(await a.setPresence(project, member.sessionId, { v: 10 }, 10), true)
      t.strictSame((await b.list(project))[0]?.presence, member.presence, 'the version given to add is stored: 10 is not newer')
      t.equal(await a.setPresence(project, member.sessionId, { v: 11 }, 11), true)
      t.strictSame((await b.list(project))[0]?.presence, { v: 11 }, '11 is')

      await a.add(project, member)
      t.equal(await b.setPresence(project, member.sessionId, { v: 1 }, 1), true)
      t.strictSame((await a.list(project))[0]?.presence, { v: 1 }, 'adding again without a version starts over at 0')
    })

    t.test('rejects a presence version that is not a safe integer with a TypeError, touching nothing', async t => {
      const { a, b } = await open(t)
      const project = uniqueId('project')
      const member = newMember()
      for (const bad of [1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
        await t.rejects(a.add(project, member, bad), TypeError, `add with ${bad}`)
      }
      t.strictSame(await b.list(project), [], 'no session was added')
      await a.add(project, member)
      for (const bad of [0.5, Number.NaN, Number.NEGATIVE_INFINITY, -(2 ** 53)]) {
        await t.rejects(b.setPresence(project, member.sessionId, { bad: true }, bad), TypeError, `setPresence with ${bad}`)
      }
      t.strictSame(await a.list(project), [member], 'the presence was not touched')
    })

    t.test('resolves a removed member once, then null', async t => {
      const { a, b } = await open(t)
      const project = uniqueId('project')
      const member = newMember()
      const other = newMember()
      await a.add(project, member)
      await a.add(project, other)
      t.strictSame(await b.remove(project, member.sessionId), member, 'the first remove resolves the member')
      t.equal(await a.remove(project, member.sessionId), null, 'the second remove resolves null')
      t.equal(await b.remove(project, member.sessionId), null, 'and so does a third')
      t.strictSame(await a.list(project), [other], 'only the removed member is gone')
      t.equal(await a.remove(project, uniqueId('session')), null, 'a session never added resolves null')
    })

    t.test('resolves each member to exactly one of two concurrent removers', async t => {
      const { a, b } = await open(t)
      const project = uniqueId('project')
      const members = Array.from({ length: 20 }, () => newMember())
      for (const member of members) await a.add(project, member)
      const outcomes = await Promise.all(members.map(async member => {
        const results = await Promise.all([a.remove(project, member.sessionId), b.remove(project, member.sessionId)])
        return results.filter(result => result !== null)
      }))
      t.strictSame(outcomes, members.map(member => [member]), 'one remover got each member, the other null')
      t.strictSame(await a.list(project), [])
    })

    t.test('replaces presence, and resolves false for a session that is not there', async t => {
      const { a, b } = await open(t)
      const project = uniqueId('project')
      const member = newMember()
      await a.add(project, member)
      const presence = { status: 'away', selection: [1, 5], color: null }
      t.equal(await b.setPresence(project, member.sessionId, presence), true, 'a known session')
      t.strictSame(await a.list(project), [{ ...member, presence }], 'the presence is replaced, not merged')
      t.equal(await a.setPresence(project, uniqueId('session'), presence), false, 'an unknown session')
      t.strictSame(sessionIds(await b.list(project)), [member.sessionId], 'setPresence added no session')
      await a.remove(project, member.sessionId)
      t.equal(await b.setPresence(project, member.sessionId, presence), false, 'a removed session')
      t.strictSame(await b.list(project), [], 'setPresence did not bring it back')
    })

    t.test('never lets an older presence version overwrite a newer one, whatever the order', async t => {
      const { a, b } = await open(t)
      const project = uniqueId('project')
      const member = newMember()
      await a.add(project, member)
      const versions = Array.from({ length: 300 }, (_, i) => i + 1)
      for (let i = versions.length - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1))
        ;[versions[i], versions[j]] = [versions[j] as number, versions[i] as number]
      }
      const results = await Promise.all(versions.map(async (version, i) =>
        await (i % 2 === 0 ? a : b).setPresence(project, member.sessionId, { version, cursor: [version, -version] }, version)))
      t.ok(results.every(result => result), 'every update resolves true: the session is there')
      t.strictSame(await a.list(project), [{ ...member, presence: { version: 300, cursor: [300, -300] } }], 'the highest version is stored')
    })

    t.test('applies a presence with the same or a lower version nowhere, and one without a version always', async t => {
      const { a, b } = await open(t)
      const project = uniqueId('project')
      const member = newMember()
      await a.add(project, member)
      t.equal(await a.setPresence(project, member.sessionId, { n: 5 }, 5), true)
      t.equal(await b.setPresence(project, member.sessionId, { n: 'again' }, 5), true, 'the same version: the session is there')
      t.equal(await b.setPresence(project, member.sessionId, { n: 4 }, 4), true, 'an older version: the session is there')
      t.strictSame((await a.list(project))[0]?.presence, { n: 5 }, 'neither was applied')
      t.equal(await b.setPresence(project, member.sessionId, { n: 'unversioned' }), true)
      t.strictSame((await a.list(project))[0]?.presence, { n: 'unversioned' }, 'without a version: applied')
      t.equal(await a.setPresence(project, member.sessionId, { n: 5 }, 5), true)
      t.strictSame((await b.list(project))[0]?.presence, { n: 'unversioned' }, 'and the stored version was kept: 5 is still not newer')
      t.equal(await a.setPresence(project, member.sessionId, { n: 6 }, 6), true)
      t.strictSame((await b.list(project))[0]?.presence, { n: 6 }, '6 is')
      t.equal(await a.setPresence(project, uniqueId('session'), { n: 7 }, 7), false, 'a session that is not there: false, with a version too')
      t.strictSame(sessionIds(await b.list(project)), [member.sessionId], 'and not created')
    })

    t.test('refresh resolves the given sessions that are not there, in order, and creates none', async t => {
      const { a, b } = await open(t)
      const project = uniqueId('project')
      const elsewhere = uniqueId('project')
      const live = newMember()
      const removed = newMember()
      const other = newMember()
      await a.add(project, live)
      await a.add(project, removed)
      await a.add(project, other)
      t.strictSame(await b.remove(project, removed.sessionId), removed, 'removed by the other instance')
      t.strictSame(await a.refresh([]), [], 'an empty refresh resolves an empty list')
      const never = uniqueId('session')
      t.strictSame(await a.refresh([
        { project, sessionId: removed.sessionId },
        { project, sessionId: never },
        { project, sessionId: live.sessionId },
        { project: elsewhere, sessionId: live.sessionId },
        { project, sessionId: other.sessionId }
      ]), [
        { project, sessionId: removed.sessionId },
        { project, sessionId: never },
        { project: elsewhere, sessionId: live.sessionId }
      ], 'the removed session, one never added, one of another project')
      t.strictSame(await b.list(project), [live, other], 'no session came back or was created')
      t.strictSame(await b.list(elsewhere), [], 'no session was created in another project')
      await a.add(project, removed)
      t.strictSame(await a.refresh([{ project, sessionId: removed.sessionId }, { project, sessionId: live.sessionId }]), [], 'once re-added, it is there again')
      t.strictSame(await b.list(project), [live, removed, other], 'listed again, oldest join first')
    })

    t.test('refresh resolves a session the other instance reaped, and keeps extending the others', async t => {
      const { a, b } = await open(t, SHORT_TTL_MS)
      const project = uniqueId('project')
      const kept = newMember()
      const lost = newMember()
      await a.add(project, kept)
      await a.add(project, lost)
      const keptRef = { project, sessionId: kept.sessionId }
      const lostRef = { project, sessionId: lost.sessionId }
      // The instance refreshes only kept (as if it stalled for lost) while the other one reaps.
      const reaped: ExpiredSession[] = []
      const keptMissing: SessionRef[] = []
      await waitFor(async () => {
        keptMissing.push(...await a.refresh([keptRef]))
        reaped.push(...(await b.reap()).filter(expired => expired.project === project))
        return reaped.length > 0
      }, { what: 'the other instance to reap the unrefreshed session', intervalMs: 50, timeoutMs: EXPIRY_TIMEOUT_MS })
      t.strictSame(keptMissing, [], 'kept was there at every refresh')
      t.strictSame(reaped, [{ project, member: lost }], 'only the unrefreshed session was reaped')
      t.strictSame(await a.refresh([keptRef, lostRef]), [lostRef], 'refresh resolves the reaped session')
      t.strictSame(await b.list(project), [kept], 'kept is still listed')
      await a.add(project, lost)
      t.strictSame(await a.refresh([lostRef, keptRef]), [], 're-added, it is there again')
      t.strictSame(await b.list(project), [kept, lost])
    })

    t.test('keeps a refreshed session alive past its original TTL', async t => {
      const { a, b } = await open(t, SHORT_TTL_MS)
      const project = uniqueId('project')
      const refreshed = newMember()
      const unrefreshed = newMember()
      const addedAt = Date.now()
      await a.add(project, refreshed)
      await a.add(project, unrefreshed)
      // Refresh every 50 ms, well within the TTL, until the unrefreshed
      // session has expired and twice the TTL has passed.
      await waitFor(async () => {
        await b.refresh([{ project, sessionId: refreshed.sessionId }])
        const listed = sessionIds(await a.list(project))
        if (!listed.includes(refreshed.sessionId)) throw new Error(`the refreshed session expired after ${Date.now() - addedAt} ms`)
        return !listed.includes(unrefreshed.sessionId) && Date.now() - addedAt > 2 * SHORT_TTL_MS
      }, { what: 'the unrefreshed session to expire and twice the TTL to pass', intervalMs: 50, timeoutMs: EXPIRY_TIMEOUT_MS })
      t.strictSame(await b.list(project), [refreshed], 'the refreshed session is still listed')
      const reaped = (await Promise.all([a.reap(), b.reap()])).flat().filter(expired => expired.project === project)
      t.notOk(reaped.some(expired => expired.member.sessionId === refreshed.sessionId), 'reap leaves the refreshed session')
    })

    t.test('drops an unrefreshed session after the TTL and reaps it for exactly one caller', async t => {
      const { a, b } = await open(t, SHORT_TTL_MS)
      const project = uniqueId('project')
      const members = Array.from({ length: 10 }, () => newMember())
      for (const member of members) await a.add(project, member)
      const away = { status: 'away' }
      await b.setPresence(project, (members[0] as Member).sessionId, away)
      const expected = members.map((member, i) => ({ project, member: i === 0 ? { ...member, presence: away } : member }))

      await waitFor(async () => (await b.list(project)).length === 0, { what: 'the sessions to leave list', timeoutMs: EXPIRY_TIMEOUT_MS })
      const refs = members.map(member => ({ project, sessionId: member.sessionId }))
      t.strictSame(await a.refresh(refs), refs, 'refresh resolves every session past its TTL: not there')
      t.strictSame(await a.list(project), [], 'refreshing an expired session does not bring it back')
      t.equal(await a.setPresence(project, (members[1] as Member).sessionId, away), false, 'an expired session is not there for setPresence')

      // Both instances reap at the same time, until the sessions came out.
      const reaped: ExpiredSession[] = []
      const reapBoth = async (): Promise<void> => {
        const results = await Promise.all([a.reap(), b.reap()])
        reaped.push(...results.flat().filter(expired => expired.project === project))
      }
      await waitFor(async () => {
        await reapBoth()
        return reaped.length >= members.length
      }, { what: 'reap to resolve every expired session', timeoutMs: EXPIRY_TIMEOUT_MS })
      await reapBoth()
      const bySession = (x: ExpiredSession, y: ExpiredSession): number => x.member.sessionId.localeCompare(y.member.sessionId)
      t.strictSame([...reaped].sort(bySession), [...expected].sort(bySession), 'each session reaped once, as last stored')
      t.equal(await a.remove(project, (members[2] as Member).sessionId), null, 'a reaped session is not there for remove')
    })

    t.test('hands an expired session to exactly one of remove and reap', async t => {
      const { a, b } = await open(t, SHORT_TTL_MS)
      const project = uniqueId('project')
      const removed = newMember()
      const reaped = newMember()
      await a.add(project, removed)
      await a.add(project, reaped)
      await waitFor(async () => (await a.list(project)).length === 0, { what: 'the sessions to leave list', timeoutMs: EXPIRY_TIMEOUT_MS })
      // Not reaped yet: the owner's remove still gets it, so its leave is announced at once.
      t.strictSame(await b.remove(project, removed.sessionId), removed, 'remove resolves an expired session that was not reaped')
      const got: ExpiredSession[] = []
      await waitFor(async () => {
        got.push(...(await Promise.all([a.reap(), b.reap()])).flat().filter(expired => expired.project === project))
        return got.length > 0
      }, { what: 'reap to resolve the other session', timeoutMs: EXPIRY_TIMEOUT_MS })
      t.strictSame(got, [{ project, member: reaped }], 'reap resolves only the session remove did not take')
      t.equal(await a.remove(project, reaped.sessionId), null, 'a reaped session is not removed again')
    })

    t.test('keeps projects independent', async t => {
      const { a, b } = await open(t)
      const first = uniqueId('project')
      const second = uniqueId('project')
      const sessionId = uniqueId('session')
      const inFirst = newMember({ sessionId })
      const inSecond = newMember({ sessionId })
      await a.add(first, inFirst)
      await b.add(second, inSecond)
      t.strictSame(await a.list(first), [inFirst])
      t.strictSame(await a.list(second), [inSecond])
      const presence = { only: 'first' }
      t.equal(await a.setPresence(first, sessionId, presence), true)
      t.strictSame(await b.list(second), [inSecond], 'setPresence touched one project')
      t.strictSame(await b.remove(first, sessionId), { ...inFirst, presence }, 'remove from the first project')
      t.strictSame(await a.list(second), [inSecond], 'remove touched one project')
      t.equal(await a.setPresence(first, sessionId, presence), false, 'a session of another project is not there')
      t.equal(await a.remove(first, sessionId), null, 'nor for remove')
    })

    t.test('shares no object with the caller', async t => {
      const { a, b } = await open(t)
      const project = uniqueId('project')
      const presence = { cursor: { x: 1 } }
      const member = { sessionId: uniqueId('session'), userId: 'user', presence, joinedAt: 1 }
      await a.add(project, member)
      presence.cursor.x = 2
      t.strictSame(await b.list(project), [{ ...member, presence: { cursor: { x: 1 } } }], 'the added member is not stored')

      const listed = (await b.list(project))[0]?.presence as typeof presence
      listed.cursor.x = 3
      t.strictSame((await a.list(project))[0]?.presence, { cursor: { x: 1 } }, 'a listed member is not stored')

      const next = { cursor: { x: 4 } }
      await a.setPresence(project, member.sessionId, next)
      next.cursor.x = 5
      t.strictSame((await b.list(project))[0]?.presence, { cursor: { x: 4 } }, 'the given presence is not stored')
    })

    t.test('closes idempotently', async t => {
      const { a, b } = await open(t)
      await a.list(uniqueId('project'))
      await t.resolves(a.close(), 'first close of a')
      await t.resolves(a.close(), 'second close of a')
      await t.resolves(b.close(), 'first close of b')
      await t.resolves(b.close(), 'second close of b')
    })
  })
}
