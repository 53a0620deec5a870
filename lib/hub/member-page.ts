import { createHash } from 'node:crypto'
import type { Member } from '../types.js'
import { BadRequestError } from '../errors.js'
import { randomId } from '../ids.js'

/**
 * (1.3) Paged member lists and resume tokens: what lets a join cost the
 * same in a room of 10 and a room of 10,000.
 */

/** The order of every members list: join time, then session id (a total order, so a cursor is a place in it). */
export function byJoin (a: Member, b: Member): number {
  return a.joinedAt - b.joinedAt || (a.sessionId < b.sessionId ? -1 : a.sessionId > b.sessionId ? 1 : 0)
}

/** A page of a members list. */
export interface MemberPage {
  /** the members in the list */
  readonly count: number
  readonly members: Member[]
  /** the cursor of the next page, null at the end */
  readonly next: string | null
}

/** The cursor naming the place after `member`: opaque to clients. */
function cursorOf (member: Member): string {
  return `${member.joinedAt}.${member.sessionId}`
}

/**
 * The members of `sorted` (in {@link byJoin} order) after the cursor
 * `after` (from the start without it), at most `limit`. A cursor names a
 * place, not an index: members who join or leave meanwhile do not shift it.
 */
export function pageOf (sorted: readonly Member[], after: string | undefined, limit: number): MemberPage {
  let from = 0
  if (after !== undefined) {
    const dot = after.indexOf('.')
    const joinedAt = Number(after.slice(0, dot))
    if (dot <= 0 || !Number.isSafeInteger(joinedAt)) throw new BadRequestError('after is not a members cursor')
    const place: Member = { sessionId: after.slice(dot + 1), userId: '', presence: {}, joinedAt }
    // The first member past the place (binary search: the list is sorted).
    let lo = 0
    let hi = sorted.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (byJoin(sorted[mid] as Member, place) <= 0) lo = mid + 1
      else hi = mid
    }
    from = lo
  }
  const members = sorted.slice(from, from + limit)
  const last = members[members.length - 1]
  const next = from + limit < sorted.length && last !== undefined ? cursorOf(last) : null
  return { count: sorted.length, members, next }
}

/** A new resume token: a secret the session's owner is given in `joined`, and nobody else. */
export function resumeToken (): string {
  return randomId(24)
}

/**
 * The session id a resume token names: a hash of it (the id is public, the
 * token is not, and the id does not give the token back). No store holds the
 * token: an instance that holds the session's id checks a token by hashing it.
 */
export function sessionOfToken (token: string): string {
  return createHash('sha256').update(`flow-resume:${token}`).digest().subarray(0, 12).toString('base64url')
}
