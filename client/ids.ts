/** Op ids (docs/protocol.md: 1 to 64 characters of `A-Z a-z 0-9 _ -`), made without Node built-ins. */

export const OP_ID = /^[A-Za-z0-9_-]{1,64}$/
export const PROJECT_ID = /^[A-Za-z0-9_.-]{1,128}$/

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-'

interface CryptoLike {
  getRandomValues (array: Uint8Array): Uint8Array
}

/**
 * A random op id of 21 characters (126 bits): Web Crypto's getRandomValues
 * where there is one (browsers, also on plain http; Node 19+), Math.random
 * otherwise. Collisions only matter within one project's history.
 */
export function randomOpId (): string {
  const bytes = new Uint8Array(21)
  const crypto = (globalThis as { crypto?: Partial<CryptoLike> }).crypto
  if (typeof crypto?.getRandomValues === 'function') crypto.getRandomValues(bytes)
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256)
  let id = ''
  for (const b of bytes) id += ALPHABET[b & 63]
  return id
}
