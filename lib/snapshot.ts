import { isProjectId } from './ids.js'
import type { Snapshot } from '../ports/snapshot-store.js'

/** An epoch as the op logs make them (random, URL-safe) and as clients echo them. */
const EPOCH = /^[A-Za-z0-9_-]{1,64}$/

/** Whether `value` has the form of an epoch (one that no log has is still refused as not current). */
export function isEpoch (value: unknown): value is string {
  return typeof value === 'string' && EPOCH.test(value)
}

/**
 * The state of a snapshot as the stores keep it (JSON text), after the checks
 * every SnapshotStore adapter makes before touching its store: a valid
 * project id and epoch, an integer seq >= 0, and a state JSON can hold.
 * Throws a TypeError naming what is wrong.
 */
export function snapshotStateJson (snapshot: Snapshot): string {
  if (!isProjectId(snapshot.project)) throw new TypeError(`invalid project id ${JSON.stringify(snapshot.project)}`)
  if (typeof snapshot.epoch !== 'string' || !EPOCH.test(snapshot.epoch)) {
    throw new TypeError('snapshot epoch must be 1 to 64 characters of A-Z a-z 0-9 _ -')
  }
  if (!Number.isSafeInteger(snapshot.seq) || snapshot.seq < 0) {
    throw new TypeError('snapshot seq must be an integer >= 0')
  }
  return stateJson(snapshot.state)
}

/** A state as JSON text; a TypeError when it is not a JSON value (undefined, a function, a bigint, a cycle). */
export function stateJson (state: unknown): string {
  let json: string | undefined
  try {
    json = JSON.stringify(state)
  } catch (err) {
    throw new TypeError(`snapshot state is not a JSON value: ${(err as Error).message}`)
  }
  // undefined, a function, a symbol: JSON.stringify gives nothing to store.
  if (typeof json !== 'string') throw new TypeError('snapshot state must be a JSON value')
  return json
}
