import { createHmac } from 'node:crypto'

/** The HS256 secret the auth tests configure as `jwtSecret`. */
export const SECRET = 'flow-test-secret-0123456789abcdef'

function part (value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

/**
 * A compact HS256 JWS over `payload`, signed with `secret`. The server
 * refuses a token without `exp` or `projects` by default, so unless
 * `payload` says otherwise the token expires in an hour and allows every
 * project (`projects: ['*']`). A claim given as `undefined` is left out:
 * `hs256({ sub: 'a', exp: undefined })` has no `exp`.
 */
export function hs256 (payload: Record<string, unknown>, secret: string = SECRET): string {
  const claims = { exp: nowSeconds() + 3600, projects: ['*'], ...payload }
  const input = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
}

/** Seconds since the Unix epoch, as JWT `exp` and `nbf` count. */
export function nowSeconds (): number {
  return Math.floor(Date.now() / 1000)
}
