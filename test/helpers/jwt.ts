import { createHmac } from 'node:crypto'

/** The HS256 secret the auth tests configure as `jwtSecret`. */
export const SECRET = 'flow-test-secret-0123456789abcdef'

function part (value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

/** A compact HS256 JWS over `payload`, signed with `secret`. */
export function hs256 (payload: Record<string, unknown>, secret: string = SECRET): string {
  const input = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(payload)}`
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
}

/** Seconds since the Unix epoch, as JWT `exp` and `nbf` count. */
export function nowSeconds (): number {
  return Math.floor(Date.now() / 1000)
}
