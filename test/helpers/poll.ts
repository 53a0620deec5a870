import { setTimeout as delay } from 'node:timers/promises'

/**
 * Polls `probe` until it returns something other than undefined, or rejects
 * after `timeoutMs` naming `what`. For conditions no event announces (a
 * counter in /ws/stats, a sampled pressure gauge, a lock held by another
 * test process).
 */
export async function eventually<T> (what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 5000, intervalMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await delay(intervalMs)
  }
}

/** Settles like `promise`, or rejects naming `what` when it has not settled within `timeoutMs`. */
export async function within<T> (what: string, promise: Promise<T>, timeoutMs = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)) }, timeoutMs)
  })
  try {
    return await Promise.race([promise, deadline])
  } finally {
    clearTimeout(timer)
  }
}
