import { createHash, createHmac, createPublicKey, timingSafeEqual, verify, type KeyObject } from 'node:crypto'
import type { Identity } from './hub/transport.js'
import { ConfigError, UnauthorizedError, type FlowError } from './errors.js'

/** How tokens and the API key are checked (docs/protocol.md, configuration). */
export interface AuthOptions {
  /** FLOW_JWT_SECRET: HS256 secret. */
  readonly jwtSecret?: string
  /** FLOW_JWT_PUBLIC_KEY: PEM public key, RSA (RS256) or EC P-256 (ES256). */
  readonly jwtPublicKey?: string
  /** FLOW_API_KEY: key for the HTTP API. */
  readonly apiKey?: string
  /** Leeway for `exp` and `nbf`, in seconds (default 30). */
  readonly clockSkewSeconds?: number
}

/** Verifies tokens and API keys. Holds no Fastify or `ws` types. */
export interface Authenticator {
  /** Whether a JWT secret or public key is configured. */
  readonly enabled: boolean
  /**
   * Verifies a compact JWS and returns who it names. `now` is ms since the
   * epoch (default `Date.now()`). Throws an UnauthorizedError
   * (FLOW_ERR_UNAUTHORIZED: HTTP 401, no socket; its message says why,
   * without echoing token content) for any
   * bad, expired, not yet valid or unsupported token, never another error.
   */
  verifyToken (token: string, now?: number): Identity
  /**
   * Whether `candidate` is the configured API key, compared in constant time
   * over SHA-256 digests (lengths do not leak). False when no key is set.
   */
  isApiKey (candidate: string): boolean
}

type Alg = 'HS256' | 'RS256' | 'ES256'

/** Longest token accepted, in characters. */
const MAX_TOKEN_LENGTH = 8192
const MAX_SUB_LENGTH = 128
const MAX_PROJECT_PATTERNS = 1000
/** Leeway for `exp` and `nbf` unless configured otherwise. */
export const DEFAULT_CLOCK_SKEW_SECONDS = 30
/** docs/protocol.md project ids, and `prefix*` patterns over the same alphabet. */
const EXACT_PROJECT = /^[A-Za-z0-9_.-]{1,128}$/
const PROJECT_PREFIX = /^[A-Za-z0-9_.-]{0,127}\*$/
const BASE64URL = /^[A-Za-z0-9_-]+$/

const utf8 = new TextDecoder('utf-8', { fatal: true })

function unauthorized (message: string): FlowError {
  return new UnauthorizedError(message)
}

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Strict base64url: no padding, no foreign characters, canonical trailing bits. */
function decodePart (part: string): Buffer {
  if (!BASE64URL.test(part) || part.length % 4 === 1) throw unauthorized('malformed token')
  const bytes = Buffer.from(part, 'base64url')
  if (bytes.toString('base64url') !== part) throw unauthorized('malformed token')
  return bytes
}

function decodeJson (part: string, what: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(utf8.decode(decodePart(part)))
  } catch (err) {
    if (err instanceof UnauthorizedError) throw err
    throw unauthorized(`token ${what} is not JSON`)
  }
  if (!isRecord(value)) throw unauthorized(`token ${what} is not a JSON object`)
  return value
}

/** Builds the project check of a `projects` claim; throws for a bad claim. */
function projectMatcher (claim: unknown): (project: string) => boolean {
  if (claim === undefined) return allowAll
  if (!Array.isArray(claim) || claim.length > MAX_PROJECT_PATTERNS) throw unauthorized('bad projects claim')
  const exact = new Set<string>()
  const prefixes: string[] = []
  let any = false
  for (const entry of claim as unknown[]) {
    if (typeof entry !== 'string') throw unauthorized('bad projects claim')
    if (entry === '*') any = true
    else if (PROJECT_PREFIX.test(entry)) prefixes.push(entry.slice(0, -1))
    else if (EXACT_PROJECT.test(entry)) exact.add(entry)
    else throw unauthorized('bad projects claim')
  }
  if (any) return allowAll
  return (project) => {
    if (exact.has(project)) return true
    for (const prefix of prefixes) {
      if (project.startsWith(prefix)) return true
    }
    return false
  }
}

function allowAll (): boolean {
  return true
}

function numericClaim (payload: Record<string, unknown>, name: 'exp' | 'nbf'): number | undefined {
  const value = payload[name]
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isFinite(value * 1000)) throw unauthorized(`bad ${name} claim`)
  return value
}

/** Parses FLOW_JWT_PUBLIC_KEY; throws a plain Error naming it when unusable. */
function loadPublicKey (pem: string): { key: KeyObject, alg: Alg } {
  // A PEM squeezed into one environment line often carries literal "\n".
  const text = !pem.includes('\n') && pem.includes('\\n') ? pem.replaceAll('\\n', '\n') : pem
  let key: KeyObject
  try {
    key = createPublicKey(text)
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err)
    throw new ConfigError(`FLOW_JWT_PUBLIC_KEY is not a valid PEM public key: ${why}`)
  }
  if (key.asymmetricKeyType === 'rsa') return { key, alg: 'RS256' }
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve
    if (curve !== 'prime256v1') {
      throw new ConfigError(`FLOW_JWT_PUBLIC_KEY is an EC key on ${curve ?? 'an unknown curve'}; ES256 needs P-256`)
    }
    return { key, alg: 'ES256' }
  }
  const type = key.asymmetricKeyType ?? 'unknown'
  const supported = 'only RSA (RS256) and EC P-256 (ES256) keys are supported'
  throw new ConfigError(`FLOW_JWT_PUBLIC_KEY is a ${type} key; ${supported}`)
}

/**
 * Creates the authenticator. Throws a plain Error at once when the public key
 * PEM cannot be parsed or is of an unsupported type (naming
 * FLOW_JWT_PUBLIC_KEY), when the secret is empty, or when the clock skew is
 * not a non-negative number.
 */
export function createAuthenticator (options: AuthOptions): Authenticator {
  const skewMs = (options.clockSkewSeconds ?? DEFAULT_CLOCK_SKEW_SECONDS) * 1000
  if (!Number.isFinite(skewMs) || skewMs < 0) throw new RangeError('clockSkewSeconds must be a non-negative number')
  if (options.jwtSecret === '') throw new ConfigError('FLOW_JWT_SECRET is empty')
  const secret = options.jwtSecret === undefined ? undefined : Buffer.from(options.jwtSecret, 'utf8')
  const publicKey = options.jwtPublicKey === undefined ? undefined : loadPublicKey(options.jwtPublicKey)
  const apiKeyDigest = options.apiKey === undefined || options.apiKey === '' ? undefined : sha256(options.apiKey)

  /** The signature check for a header `alg`; throws when that alg is not accepted. */
  const verifierFor = (alg: string): (signingInput: string, signature: Buffer) => boolean => {
    if (alg === 'HS256' && secret !== undefined) {
      return (signingInput, signature) => {
        const expected = createHmac('sha256', secret).update(signingInput).digest()
        return signature.length === expected.length && timingSafeEqual(signature, expected)
      }
    }
    if (publicKey !== undefined && alg === publicKey.alg) {
      const key = alg === 'ES256' ? { key: publicKey.key, dsaEncoding: 'ieee-p1363' as const } : publicKey.key
      return (signingInput, signature) => {
        if (alg === 'ES256' && signature.length !== 64) return false
        try {
          return verify('sha256', Buffer.from(signingInput), key, signature)
        } catch {
          return false
        }
      }
    }
    throw unauthorized('token alg is not accepted')
  }

  const verifyToken = (token: string, now: number = Date.now()): Identity => {
    if (typeof token !== 'string' || token.length === 0) throw unauthorized('token is empty')
    if (token.length > MAX_TOKEN_LENGTH) throw unauthorized('token is too long')
    const parts = token.split('.')
    if (parts.length !== 3) throw unauthorized('malformed token: expected three parts')
    const [headerPart, payloadPart, signaturePart] = parts as [string, string, string]

    const header = decodeJson(headerPart, 'header')
    if (typeof header.alg !== 'string') throw unauthorized('token header has no alg')
    // RFC 7515 4.1.11: extensions we do not understand make the token invalid.
    if (header.crit !== undefined) throw unauthorized('token header has unsupported crit')
    const verifier = verifierFor(header.alg)
    if (!verifier(`${headerPart}.${payloadPart}`, decodePart(signaturePart))) throw unauthorized('bad signature')

    const payload = decodeJson(payloadPart, 'payload')
    const sub = payload.sub
    if (typeof sub !== 'string' || sub.length === 0) throw unauthorized('token has no sub')
    if (sub.length > MAX_SUB_LENGTH) throw unauthorized('token sub is too long')
    const exp = numericClaim(payload, 'exp')
    const nbf = numericClaim(payload, 'nbf')
    if (exp !== undefined && now >= exp * 1000 + skewMs) throw unauthorized('token expired')
    if (nbf !== undefined && now < nbf * 1000 - skewMs) throw unauthorized('token not yet valid')
    const allows = projectMatcher(payload.projects)
    return exp === undefined ? { userId: sub, allows } : { userId: sub, allows, expiresAt: exp * 1000 }
  }

  const isApiKey = (candidate: string): boolean => {
    if (apiKeyDigest === undefined || typeof candidate !== 'string') return false
    return timingSafeEqual(sha256(candidate), apiKeyDigest)
  }

  return { enabled: secret !== undefined || publicKey !== undefined, verifyToken, isApiKey }
}

function sha256 (value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest()
}

/**
 * The token of an `Authorization: Bearer <token>` header (scheme matched
 * case-insensitively, surrounding spaces trimmed); undefined when the header
 * is missing, uses another scheme or carries no single token.
 */
export function bearerToken (authorization: string | undefined): string | undefined {
  if (typeof authorization !== 'string') return undefined
  const match = /^Bearer[ \t]+(\S+)$/i.exec(authorization.trim())
  return match?.[1]
}

/** An identity allowed every project, for running without authentication. */
export function openIdentity (userId: string): Identity {
  return { userId, allows: allowAll }
}
