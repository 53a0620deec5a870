import { ErrorReply } from 'redis'
import { ProtocolError } from '../../lib/errors.js'

/** A call that took longer than the failover's command timeout. */
export class TimeoutError extends Error {
  constructor (what: string, ms: number) {
    super(`${what} took longer than ${ms} ms`)
    this.name = 'TimeoutError'
  }
}

/** Resolves like `promise`, or rejects with a TimeoutError after `ms`. */
export async function withTimeout<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => { reject(new TimeoutError(what, ms)) }, ms)
        timer.unref()
      })
    ])
  } finally {
    clearTimeout(timer)
  }
}

/** Server replies that mean "Redis cannot serve now", not "this command is wrong". */
const OUTAGE_REPLY = /^(LOADING|BUSY|MASTERDOWN|READONLY|TRYAGAIN|CLUSTERDOWN|OOM|NOAUTH|NOPERM|WRONGPASS)\b/

/**
 * Whether an error means the dependency is away (connection lost, refused,
 * timed out, Redis loading or out of memory), so the port should fall back,
 * rather than a bad call (a validation TypeError, a protocol error, a
 * WRONGTYPE reply), which is the caller's to see.
 */
export function isOutage (err: unknown): boolean {
  if (err instanceof ProtocolError || err instanceof TypeError || err instanceof RangeError) return false
  if (err instanceof ErrorReply) return OUTAGE_REPLY.test(err.message)
  return err instanceof Error
}
