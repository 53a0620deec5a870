import { createHash, createHmac, createPublicKey, timingSafeEqual, verify, type KeyObject } from 'node:crypto'
import type { Access, Identity } from './hub/transport.js'
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
  /** FLOW_JWT_AUDIENCE: when set, a token's `aud` must be it, or an array holding it. */
  readonly audience?: string
  /** FLOW_JWT_ISSUER: when set, a token's `iss` must be it. */
  readonly issuer?: string
  /** FLOW_JWT_REQUIRE_EXP: whether a token without `exp` is refused (default true). */
  readonly requireExp?: boolean
  /**
   * FLOW_JWT_DEFAULT_PROJECTS: comma-separated project ids, `prefix*` patterns
   * or `*`, the projects of a token without a `projects` claim. Unset, such a
   * token is refused.
   */
  readonly defaultProjects?: string
}

/** Verifies tokens and API keys. Holds no Fastify or `ws` types. */
export interface Authenticator {
  /** Whether a JWT secret or public key is configured. */
  readonly enabled: boolean
  /**
   * Verifies a compact JWS and returns who it names. `now` is ms since the
   * epoch (default `Date.now()`). Checks, after the signature: `iss` and
   * `aud` when configured, `exp` (required unless `requireExp` is false),
   * `nbf`, `sub` (a user id, see `userIdProblem`), `projects` (or the
   * configured defaults when the claim is absent): the projects it may read
   * and write, and `read`: those it may only read (a read-only member; a
   * token with `read` alone writes nowhere). Throws an
   * UnauthorizedError (FLOW_ERR_UNAUTHORIZED: HTTP 401, no socket; its
   * message names the check that failed, without echoing token content) for
   * any bad, expired, not yet valid, foreign or unsupported token, never
   * another error.
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
/** Longest user id, in code points (docs/protocol.md, Tokens). */
export const MAX_USER_ID_LENGTH = 128
const MAX_PROJECT_PATTERNS = 1000
/** Leeway for `exp` and `nbf` unless configured otherwise. */
export const DEFAULT_CLOCK_SKEW_SECONDS = 30
/** docs/protocol.md project ids, and `prefix*` patterns over the same alphabet. */
const EXACT_PROJECT = /^[A-Za-z0-9_.-]{1,128}$/
const PROJECT_PREFIX = /^[A-Za-z0-9_.-]{0,127}\*$/
const BASE64URL = /^[A-Za-z0-9_-]+$/
/**
 * What a user id may not hold, anywhere: controls (C0, C1, DEL), format
 * characters (bidi embeddings, overrides, isolates and marks, zero-width
 * spaces, the BOM, tag characters) except ZWNJ and ZWJ (emoji sequences and
 * several scripts need them), line and paragraph separators, lone surrogates.
 */
const UNPRINTABLE = /[\p{Cc}\p{Cs}\p{Zl}\p{Zp}]|(?![\u200C\u200D])\p{Cf}/u
const EDGE_SPACE = /^\s|\s$/u

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

type ProjectCheck = (project: string) => boolean

/**
 * The check of a list of project patterns: exact ids, `prefix*`, `*`.
 * Calls `refuse` with the first entry that is none of them.
 */
function projectMatcher (entries: readonly unknown[], refuse: (entry: unknown) => never): ProjectCheck {
  const exact = new Set<string>()
  const prefixes: string[] = []
  let any = false
  for (const entry of entries) {
    if (typeof entry !== 'string') refuse(entry)
    else if (entry === '*') any = true
    else if (PROJECT_PREFIX.test(entry)) prefixes.push(entry.slice(0, -1))
    else if (EXACT_PROJECT.test(entry)) exact.add(entry)
    else refuse(entry)
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

/** The project check of a `projects` (or `read`) claim; throws for a claim of the wrong shape. */
function claimMatcher (claim: unknown, name = 'projects'): ProjectCheck {
  const bad = (): never => { throw unauthorized(`bad ${name} claim`) }
  if (!Array.isArray(claim) || claim.length > MAX_PROJECT_PATTERNS) return bad()
  return projectMatcher(claim as unknown[], bad)
}

/** FLOW_JWT_DEFAULT_PROJECTS parsed; throws a ConfigError naming it for a bad pattern. */
function defaultMatcher (setting: string): ProjectCheck {
  const entries = setting.split(',').map((entry) => entry.trim())
  if (entries.length > MAX_PROJECT_PATTERNS) {
    throw new ConfigError(`FLOW_JWT_DEFAULT_PROJECTS has more than ${MAX_PROJECT_PATTERNS} patterns`)
  }
  return projectMatcher(entries, (entry) => {
    throw new ConfigError(`FLOW_JWT_DEFAULT_PROJECTS: ${JSON.stringify(entry)} is not a project id, ` +
      'a prefix* pattern or *')
  })
}

function allowAll (): boolean {
  return true
}

function allowNone (): boolean {
  return false
}

/**
 * Why `userId` cannot name a user, or undefined when it can. A user id is 1
 * to 128 code points, holds no character UNPRINTABLE lists and has no
 * whitespace at either end (it is refused, not trimmed). The phrase follows
 * the name of where the id came from: `token sub is too long (...)`.
 */
export function userIdProblem (userId: unknown): string | undefined {
  if (typeof userId !== 'string' || userId.length === 0) return 'is missing'
  // In code points (a lone surrogate counts as one, and is refused below); a code point is at most two
  // UTF-16 units, so a longer string is too long without being spread.
  if (userId.length > 2 * MAX_USER_ID_LENGTH || [...userId].length > MAX_USER_ID_LENGTH) {
    return `is too long (over ${MAX_USER_ID_LENGTH} characters)`
  }
  if (UNPRINTABLE.test(userId)) return 'has a control, format (bidi, zero-width) or line separator character'
  if (EDGE_SPACE.test(userId)) return 'has whitespace at its start or end'
  return undefined
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

/** Whether an `aud` claim names `audience`: the string itself, or an array holding it. */
function audienceMatches (claim: unknown, audience: string): boolean {
  if (typeof claim === 'string') return claim === audience
  if (Array.isArray(claim) && claim.every((entry) => typeof entry === 'string')) return claim.includes(audience)
  throw unauthorized('bad aud claim')
}

/**
 * Creates the authenticator. Throws a ConfigError at once, naming the
 * variable, when the public key PEM cannot be parsed or is of an
 * unsupported type, when the secret, audience or issuer is empty, or when
 * a default project pattern is bad; a RangeError when the clock skew is
 * not a non-negative number.
 */
export function createAuthenticator (options: AuthOptions): Authenticator {
  const skewMs = (options.clockSkewSeconds ?? DEFAULT_CLOCK_SKEW_SECONDS) * 1000
  if (!Number.isFinite(skewMs) || skewMs < 0) throw new RangeError('clockSkewSeconds must be a non-negative number')
  if (options.jwtSecret === '') throw new ConfigError('FLOW_JWT_SECRET is empty')
  if (options.audience === '') throw new ConfigError('FLOW_JWT_AUDIENCE is empty')
  if (options.issuer === '') throw new ConfigError('FLOW_JWT_ISSUER is empty')
  const { audience, issuer } = options
  const requireExp = options.requireExp ?? true
  const defaults = options.defaultProjects === undefined ? undefined : defaultMatcher(options.defaultProjects)
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
    // Is it meant for this service, is it current, who, and which projects.
    if (issuer !== undefined) {
      if (payload.iss === undefined) throw unauthorized('token has no iss')
      if (payload.iss !== issuer) throw unauthorized('token iss does not match')
    }
    if (audience !== undefined) {
      if (payload.aud === undefined) throw unauthorized('token has no aud')
      if (!audienceMatches(payload.aud, audience)) throw unauthorized('token aud does not match')
    }
    const exp = numericClaim(payload, 'exp')
    const nbf = numericClaim(payload, 'nbf')
    if (exp === undefined && requireExp) throw unauthorized('token has no exp')
    if (exp !== undefined && now >= exp * 1000 + skewMs) throw unauthorized('token expired')
    if (nbf !== undefined && now < nbf * 1000 - skewMs) throw unauthorized('token not yet valid')
    const sub = payload.sub
    const subProblem = userIdProblem(sub)
    if (subProblem === 'is missing') throw unauthorized('token has no sub')
    if (subProblem !== undefined) throw unauthorized(`token sub ${subProblem}`)
    const userId = sub as string
    let writes: ProjectCheck
    if (payload.projects !== undefined) writes = claimMatcher(payload.projects)
    else if (defaults !== undefined) writes = defaults
    else if (payload.read !== undefined) writes = allowNone
    else throw unauthorized('token has no projects claim, and FLOW_JWT_DEFAULT_PROJECTS is not set')
    // `read`: projects the token may join and read but not change (read-only member).
    const reads = payload.read === undefined ? allowNone : claimMatcher(payload.read, 'read')
    const allows = (project: string, access: Access = 'read'): boolean =>
      writes(project) || (access === 'read' && reads(project))
    return exp === undefined ? { userId, allows } : { userId, allows, expiresAt: exp * 1000 }
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
