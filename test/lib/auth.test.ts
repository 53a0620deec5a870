import t from 'tap'
import { createHmac, generateKeyPairSync, sign, type KeyObject } from 'node:crypto'
import { bearerToken, createAuthenticator, openIdentity, userIdProblem } from '../../lib/auth.js'
import { ConfigError, UnauthorizedError, type FlowError } from '../../lib/errors.js'

const SECRET = 'test-secret-of-reasonable-length-0123456789'
const NOW = 1_700_000_000_000
const NOW_S = NOW / 1000
/** An hour after NOW: tokens need an exp unless a test is about it. */
const EXP = NOW_S + 3600
/** What a token needs to be accepted by default, besides sub: an exp, and a projects claim (here: every project). */
const VALID = { exp: EXP, projects: ['*'] }

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const RSA_PEM = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString()
const EC_PEM = ec.publicKey.export({ type: 'spki', format: 'pem' }).toString()

function b64 (value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

/** Signs `header.payload` (already encoded parts) with the header's algorithm. */
function signParts (alg: string, headerPart: string, payloadPart: string, key: string | KeyObject): string {
  const input = `${headerPart}.${payloadPart}`
  let signature: Buffer
  if (alg === 'HS256') signature = createHmac('sha256', key).update(input).digest()
  else if (alg === 'RS256') signature = sign('sha256', Buffer.from(input), key)
  else if (alg === 'ES256') signature = sign('sha256', Buffer.from(input), { key: key as KeyObject, dsaEncoding: 'ieee-p1363' })
  else signature = Buffer.alloc(0)
  return `${input}.${signature.toString('base64url')}`
}

function hs256 (payload: unknown, secret: string = SECRET): string {
  return signParts('HS256', b64({ alg: 'HS256', typ: 'JWT' }), b64(payload), secret)
}

function rs256 (payload: unknown): string {
  return signParts('RS256', b64({ alg: 'RS256', typ: 'JWT' }), b64(payload), rsa.privateKey)
}

function es256 (payload: unknown): string {
  return signParts('ES256', b64({ alg: 'ES256', typ: 'JWT' }), b64(payload), ec.privateKey)
}

/** Runs `fn` and returns the UnauthorizedError it throws; any other outcome fails the test. */
function authError (fn: () => unknown): FlowError {
  try {
    fn()
  } catch (err) {
    if (err instanceof UnauthorizedError) return err
    throw err
  }
  throw new Error('expected an UnauthorizedError, nothing was thrown')
}

const withSecret = createAuthenticator({ jwtSecret: SECRET })
const withRsa = createAuthenticator({ jwtPublicKey: RSA_PEM })
const withEc = createAuthenticator({ jwtPublicKey: EC_PEM })

t.test('accepts a valid HS256 token and takes the userId from sub', async (t) => {
  const identity = withSecret.verifyToken(hs256({ sub: 'alice', ...VALID }), NOW)
  t.equal(identity.userId, 'alice')
  t.equal(identity.expiresAt, EXP * 1000)
  t.ok(identity.allows('any-project'))
})

t.test('accepts a valid RS256 token against an RSA public key', async (t) => {
  t.equal(withRsa.verifyToken(rs256({ sub: 'bob', ...VALID }), NOW).userId, 'bob')
})

t.test('accepts a valid ES256 token against an EC P-256 public key', async (t) => {
  t.equal(withEc.verifyToken(es256({ sub: 'carol', ...VALID }), NOW).userId, 'carol')
})

t.test('accepts HS256 and the key algorithm when both a secret and a public key are set', async (t) => {
  const both = createAuthenticator({ jwtSecret: SECRET, jwtPublicKey: RSA_PEM })
  t.equal(both.verifyToken(hs256({ sub: 'h', ...VALID }), NOW).userId, 'h')
  t.equal(both.verifyToken(rs256({ sub: 'r', ...VALID }), NOW).userId, 'r')
  t.match(authError(() => both.verifyToken(es256({ sub: 'e' }), NOW)).message, /alg/)
})

t.test('rejects a token whose payload was changed after signing', async (t) => {
  const [header, , signature] = hs256({ sub: 'alice' }).split('.')
  const forged = `${header}.${b64({ sub: 'mallory' })}.${signature}`
  const err = authError(() => withSecret.verifyToken(forged, NOW))
  t.equal(err.code, 'FLOW_ERR_UNAUTHORIZED')
  t.equal(err.message, 'bad signature')
})

t.test('rejects a token whose signature bytes were changed', async (t) => {
  for (const [auth, token] of [[withSecret, hs256({ sub: 'a' })], [withRsa, rs256({ sub: 'a' })], [withEc, es256({ sub: 'a' })]] as const) {
    const [header, payload, signature] = token.split('.') as [string, string, string]
    const bytes = Buffer.from(signature, 'base64url')
    bytes[0] = (bytes[0] ?? 0) ^ 0xff
    t.equal(authError(() => auth.verifyToken(`${header}.${payload}.${bytes.toString('base64url')}`, NOW)).message, 'bad signature')
  }
})

t.test('rejects a signature of the wrong length', async (t) => {
  const [header, payload] = es256({ sub: 'a' }).split('.')
  const short = Buffer.alloc(63, 1).toString('base64url')
  t.equal(authError(() => withEc.verifyToken(`${header}.${payload}.${short}`, NOW)).message, 'bad signature')
  const [hh, hp] = hs256({ sub: 'a' }).split('.')
  t.equal(authError(() => withSecret.verifyToken(`${hh}.${hp}.${short}`, NOW)).message, 'bad signature')
})

t.test('rejects a token signed with another secret', async (t) => {
  const err = authError(() => withSecret.verifyToken(hs256({ sub: 'alice' }, 'another-secret'), NOW))
  t.equal(err.code, 'FLOW_ERR_UNAUTHORIZED')
  t.equal(err.message, 'bad signature')
})

t.test('rejects alg none with or without a signature', async (t) => {
  const header = b64({ alg: 'none', typ: 'JWT' })
  const payload = b64({ sub: 'alice' })
  for (const auth of [withSecret, withRsa, createAuthenticator({ jwtSecret: SECRET, jwtPublicKey: EC_PEM })]) {
    t.match(authError(() => auth.verifyToken(`${header}.${payload}.`, NOW)).message, /alg/)
    const signed = createHmac('sha256', SECRET).update(`${header}.${payload}`).digest('base64url')
    t.match(authError(() => auth.verifyToken(`${header}.${payload}.${signed}`, NOW)).message, /alg/)
  }
})

t.test('rejects an alg it does not support and a header without alg', async (t) => {
  const payload = b64({ sub: 'alice' })
  for (const alg of ['HS512', 'RS512', 'PS256', 'hs256']) {
    const token = signParts('HS256', b64({ alg }), payload, SECRET)
    t.match(authError(() => withSecret.verifyToken(token, NOW)).message, /alg/, alg)
  }
  const noAlg = signParts('HS256', b64({ typ: 'JWT' }), payload, SECRET)
  t.match(authError(() => withSecret.verifyToken(noAlg, NOW)).message, /no alg/)
})

t.test('rejects a header with a crit extension', async (t) => {
  const token = signParts('HS256', b64({ alg: 'HS256', crit: ['b64'], b64: false }), b64({ sub: 'a' }), SECRET)
  t.match(authError(() => withSecret.verifyToken(token, NOW)).message, /crit/)
})

t.test('rejects an HS256 token signed with the public key PEM as HMAC secret (algorithm confusion)', async (t) => {
  const confused = hs256({ sub: 'mallory' }, RSA_PEM)
  t.match(authError(() => withRsa.verifyToken(confused, NOW)).message, /alg/)
  const confusedEc = hs256({ sub: 'mallory' }, EC_PEM)
  t.match(authError(() => withEc.verifyToken(confusedEc, NOW)).message, /alg/)
  // with a secret configured too, HS256 is checked against the secret only
  const both = createAuthenticator({ jwtSecret: SECRET, jwtPublicKey: RSA_PEM })
  t.equal(authError(() => both.verifyToken(confused, NOW)).message, 'bad signature')
})

t.test('rejects an RS256 token against an EC key and an ES256 token against an RSA key', async (t) => {
  t.match(authError(() => withEc.verifyToken(rs256({ sub: 'a' }), NOW)).message, /alg/)
  t.match(authError(() => withRsa.verifyToken(es256({ sub: 'a' }), NOW)).message, /alg/)
})

t.test('rejects RS256 and ES256 tokens when only a secret is configured', async (t) => {
  t.match(authError(() => withSecret.verifyToken(rs256({ sub: 'a' }), NOW)).message, /alg/)
  t.match(authError(() => withSecret.verifyToken(es256({ sub: 'a' }), NOW)).message, /alg/)
})

t.test('rejects a token that expired beyond the clock skew', async (t) => {
  const err = authError(() => withSecret.verifyToken(hs256({ sub: 'a', exp: NOW_S - 31 }), NOW))
  t.equal(err.code, 'FLOW_ERR_UNAUTHORIZED')
  t.equal(err.message, 'token expired')
})

t.test('accepts a token that expired within the clock skew and reports expiresAt', async (t) => {
  const identity = withSecret.verifyToken(hs256({ sub: 'a', ...VALID, exp: NOW_S - 29 }), NOW)
  t.equal(identity.expiresAt, (NOW_S - 29) * 1000)
  t.equal(withSecret.verifyToken(hs256({ sub: 'a', ...VALID, exp: NOW_S + 3600 }), NOW).expiresAt, NOW + 3_600_000)
})

t.test('honours a configured clock skew, zero included', async (t) => {
  const strict = createAuthenticator({ jwtSecret: SECRET, clockSkewSeconds: 0 })
  t.equal(authError(() => strict.verifyToken(hs256({ sub: 'a', exp: NOW_S }), NOW)).message, 'token expired')
  t.equal(strict.verifyToken(hs256({ sub: 'a', ...VALID, exp: NOW_S + 1 }), NOW).userId, 'a')
  t.equal(authError(() => strict.verifyToken(hs256({ sub: 'a', ...VALID, nbf: NOW_S + 1 }), NOW)).message, 'token not yet valid')
  t.throws(() => createAuthenticator({ jwtSecret: SECRET, clockSkewSeconds: -1 }), /clockSkewSeconds/)
})

t.test('rejects a token whose nbf is in the future beyond the clock skew', async (t) => {
  const err = authError(() => withSecret.verifyToken(hs256({ sub: 'a', ...VALID, nbf: NOW_S + 31 }), NOW))
  t.equal(err.message, 'token not yet valid')
})

t.test('accepts a token whose nbf is in the future within the clock skew', async (t) => {
  t.equal(withSecret.verifyToken(hs256({ sub: 'a', ...VALID, nbf: NOW_S + 29 }), NOW).userId, 'a')
})

t.test('uses the current time when no time is given', async (t) => {
  const nowS = Math.floor(Date.now() / 1000)
  t.equal(authError(() => withSecret.verifyToken(hs256({ sub: 'a', exp: nowS - 120 }))).message, 'token expired')
  t.equal(withSecret.verifyToken(hs256({ sub: 'a', ...VALID, exp: nowS + 120 })).userId, 'a')
})

t.test('rejects exp and nbf that are not numbers', async (t) => {
  for (const claims of [{ exp: String(NOW_S + 60) }, { exp: null }, { nbf: 'soon' }, { exp: 1e306 }]) {
    t.match(authError(() => withSecret.verifyToken(hs256({ sub: 'a', ...claims }), NOW)).message, /bad (exp|nbf) claim/)
  }
})

t.test('rejects a token without a usable sub', async (t) => {
  t.equal(authError(() => withSecret.verifyToken(hs256({ name: 'alice', ...VALID }), NOW)).message, 'token has no sub')
  t.equal(authError(() => withSecret.verifyToken(hs256({ sub: '', ...VALID }), NOW)).message, 'token has no sub')
  t.equal(authError(() => withSecret.verifyToken(hs256({ sub: 42, ...VALID }), NOW)).message, 'token has no sub')
  t.match(authError(() => withSecret.verifyToken(hs256({ sub: 'x'.repeat(129), ...VALID }), NOW)).message, /sub is too long/)
  t.equal(withSecret.verifyToken(hs256({ sub: 'x'.repeat(128), ...VALID }), NOW).userId, 'x'.repeat(128))
})

t.test('rejects malformed tokens with an UnauthorizedError only', async (t) => {
  const header = b64({ alg: 'HS256' })
  const good = hs256({ sub: 'a' })
  const cases: Array<[string, string, RegExp]> = [
    ['empty', '', /empty/],
    ['two parts', good.split('.').slice(0, 2).join('.'), /three parts/],
    ['four parts', `${good}.${good.split('.')[2] ?? ''}`, /three parts/],
    ['payload not base64url', signParts('HS256', header, '***', SECRET), /malformed/],
    ['signature not base64url', `${good.split('.').slice(0, 2).join('.')}.***`, /malformed/],
    ['empty signature', `${good.split('.').slice(0, 2).join('.')}.`, /malformed/],
    ['padded base64', signParts('HS256', header, `${b64({ sub: 'a' })}==`, SECRET), /malformed/],
    ['standard base64 alphabet', signParts('HS256', header, Buffer.from('{"sub":"a?>"}').toString('base64'), SECRET), /malformed/],
    ['impossible base64 length', signParts('HS256', header, 'abcde', SECRET), /malformed/],
    ['header not JSON', signParts('HS256', Buffer.from('{alg:HS256').toString('base64url'), b64({ sub: 'a' }), SECRET), /header is not JSON/],
    ['header an array', signParts('HS256', b64(['HS256']), b64({ sub: 'a' }), SECRET), /header is not a JSON object/],
    ['payload not JSON', signParts('HS256', header, Buffer.from('sub=alice').toString('base64url'), SECRET), /payload is not JSON/],
    ['payload not UTF-8', signParts('HS256', header, Buffer.from([0x7b, 0xff, 0x7d]).toString('base64url'), SECRET), /payload is not JSON/],
    ['payload an array', signParts('HS256', header, b64([{ sub: 'a' }]), SECRET), /payload is not a JSON object/],
    ['payload null', signParts('HS256', header, b64(null), SECRET), /payload is not a JSON object/],
    ['payload a string', signParts('HS256', header, b64('alice'), SECRET), /payload is not a JSON object/]
  ]
  for (const [name, token, message] of cases) {
    const err = authError(() => withSecret.verifyToken(token, NOW))
    t.equal(err.code, 'FLOW_ERR_UNAUTHORIZED', name)
    t.match(err.message, message, name)
  }
})

t.test('rejects a token longer than 8 KiB', async (t) => {
  const big = hs256({ sub: 'a', pad: 'x'.repeat(8192) })
  t.equal(authError(() => withSecret.verifyToken(big, NOW)).message, 'token is too long')
  const fits = hs256({ sub: 'a', ...VALID, pad: 'x'.repeat(5000) })
  t.ok(fits.length <= 8192)
  t.equal(withSecret.verifyToken(fits, NOW).userId, 'a')
})

t.test('allows exactly the listed project ids', async (t) => {
  const identity = withSecret.verifyToken(hs256({ sub: 'a', exp: EXP, projects: ['doc-1', 'doc-2'] }), NOW)
  t.ok(identity.allows('doc-1'))
  t.ok(identity.allows('doc-2'))
  t.notOk(identity.allows('doc-3'))
  t.notOk(identity.allows('doc-10'))
  t.notOk(identity.allows('doc'))
})

t.test('allows projects starting with a prefix* pattern', async (t) => {
  const identity = withSecret.verifyToken(hs256({ sub: 'a', exp: EXP, projects: ['team-a.', 'board-*'] }), NOW)
  t.ok(identity.allows('board-1'))
  t.ok(identity.allows('board-'))
  t.ok(identity.allows('team-a.'))
  t.notOk(identity.allows('team-a.x'))
  t.notOk(identity.allows('board'))
  t.notOk(identity.allows('xboard-1'))
})

t.test('allows every project with a * entry', async (t) => {
  const identity = withSecret.verifyToken(hs256({ sub: 'a', exp: EXP, projects: ['doc-1', '*'] }), NOW)
  t.ok(identity.allows('doc-1'))
  t.ok(identity.allows('anything'))
})

t.test('allows no project with an empty projects claim', async (t) => {
  const identity = withSecret.verifyToken(hs256({ sub: 'a', exp: EXP, projects: [] }), NOW)
  t.notOk(identity.allows('doc-1'))
})

t.test('rejects a projects claim of the wrong shape', async (t) => {
  const claims: unknown[] = [
    'doc-1',
    null,
    42,
    { 0: 'doc-1' },
    ['doc-1', 7],
    [['doc-1']],
    [''],
    ['doc 1'],
    ['a*b'],
    ['**'],
    ['x'.repeat(129)],
    [...Array.from({ length: 1000 }, () => 'a'), 'b']
  ]
  for (const projects of claims) {
    const err = authError(() => withSecret.verifyToken(hs256({ sub: 'a', exp: EXP, projects }), NOW))
    t.equal(err.message, 'bad projects claim', JSON.stringify(projects).slice(0, 40))
  }
  const max = [...Array.from({ length: 999 }, () => 'a'), 'b']
  t.ok(withSecret.verifyToken(hs256({ sub: 'a', exp: EXP, projects: max }), NOW).allows('b'))
})

/** The message of the ConfigError `fn` throws; any other outcome fails the test. */
function configError (fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    if (err instanceof ConfigError) return err.message
    throw err
  }
  throw new Error('expected a ConfigError, nothing was thrown')
}

t.test('refuses a token without a projects claim when no default projects are configured', async (t) => {
  for (const auth of [withSecret, withRsa, withEc]) {
    const token = auth === withSecret ? hs256({ sub: 'a', exp: EXP }) : auth === withRsa ? rs256({ sub: 'a', exp: EXP }) : es256({ sub: 'a', exp: EXP })
    const err = authError(() => auth.verifyToken(token, NOW))
    t.equal(err.message, 'token has no projects claim, and FLOW_JWT_DEFAULT_PROJECTS is not set')
  }
})

t.test('gives a token without a projects claim the configured default projects', async (t) => {
  const auth = createAuthenticator({ jwtSecret: SECRET, defaultProjects: 'lobby, team-* ,doc.1' })
  const identity = auth.verifyToken(hs256({ sub: 'a', exp: EXP }), NOW)
  t.ok(identity.allows('lobby'))
  t.ok(identity.allows('team-red'))
  t.ok(identity.allows('doc.1'))
  t.notOk(identity.allows('lobby-2'))
  t.notOk(identity.allows('doc-1'))
  const every = createAuthenticator({ jwtSecret: SECRET, defaultProjects: '*' }).verifyToken(hs256({ sub: 'a', exp: EXP }), NOW)
  t.ok(every.allows('anything'))
})

t.test('lets a projects claim, even an empty one, override the default projects', async (t) => {
  const auth = createAuthenticator({ jwtSecret: SECRET, defaultProjects: 'lobby' })
  const unscoped = auth.verifyToken(hs256({ sub: 'a', exp: EXP }), NOW)
  t.ok(unscoped.allows('lobby'), 'the defaults apply without a claim')
  t.notOk(unscoped.allows('doc-1'), 'and only they')
  const listed = auth.verifyToken(hs256({ sub: 'a', exp: EXP, projects: ['doc-1'] }), NOW)
  t.ok(listed.allows('doc-1'))
  t.notOk(listed.allows('lobby'), 'a claim is not widened by the defaults')
  t.notOk(auth.verifyToken(hs256({ sub: 'a', exp: EXP, projects: [] }), NOW).allows('lobby'))
  t.equal(authError(() => auth.verifyToken(hs256({ sub: 'a', exp: EXP, projects: 'doc-1' }), NOW)).message, 'bad projects claim')
})

t.test('throws at creation naming FLOW_JWT_DEFAULT_PROJECTS for a bad pattern', async (t) => {
  for (const setting of ['', ',', 'lobby,', 'a,,b', 'doc 1', 'a*b', '**', 'team-*,x/y', 'x'.repeat(129), Array.from({ length: 1001 }, () => 'a').join(',')]) {
    t.match(configError(() => createAuthenticator({ jwtSecret: SECRET, defaultProjects: setting })), /FLOW_JWT_DEFAULT_PROJECTS/, JSON.stringify(setting).slice(0, 40))
  }
  t.match(configError(() => createAuthenticator({ jwtSecret: SECRET, defaultProjects: 'lobby,a*b' })), /"a\*b" is not a project id, a prefix\* pattern or \*/)
  t.match(configError(() => createAuthenticator({ defaultProjects: 'a b' })), /FLOW_JWT_DEFAULT_PROJECTS/, 'checked even without a secret or key')
})

t.test('refuses a token without exp unless exp is not required', async (t) => {
  for (const token of [hs256({ sub: 'a', projects: ['*'] }), hs256({ sub: 'a', projects: ['*'], nbf: NOW_S - 10 })]) {
    t.equal(authError(() => withSecret.verifyToken(token, NOW)).message, 'token has no exp')
  }
  t.equal(authError(() => withRsa.verifyToken(rs256({ sub: 'a', projects: ['*'] }), NOW)).message, 'token has no exp')
  const lenient = createAuthenticator({ jwtSecret: SECRET, requireExp: false })
  const identity = lenient.verifyToken(hs256({ sub: 'a', projects: ['*'] }), NOW)
  t.equal(identity.userId, 'a')
  t.equal(identity.expiresAt, undefined, 'it never expires')
  t.equal(authError(() => lenient.verifyToken(hs256({ sub: 'a', projects: ['*'], exp: NOW_S - 3600 }), NOW)).message, 'token expired', 'an exp it carries is still honoured')
  t.equal(authError(() => lenient.verifyToken(hs256({ sub: 'a', projects: ['*'], exp: 'never' }), NOW)).message, 'bad exp claim')
})

t.test('with an audience configured, refuses a token whose aud is missing, another or malformed', async (t) => {
  const auth = createAuthenticator({ jwtSecret: SECRET, audience: 'flow-rt' })
  t.equal(auth.verifyToken(hs256({ sub: 'a', ...VALID, aud: 'flow-rt' }), NOW).userId, 'a')
  t.equal(auth.verifyToken(hs256({ sub: 'a', ...VALID, aud: ['billing', 'flow-rt'] }), NOW).userId, 'a', 'an array holding it')
  const cases: Array<[unknown, string]> = [
    [undefined, 'token has no aud'],
    ['billing-service', 'token aud does not match'],
    ['FLOW-RT', 'token aud does not match'],
    ['flow-rt ', 'token aud does not match'],
    [['billing-service'], 'token aud does not match'],
    [[], 'token aud does not match'],
    [42, 'bad aud claim'],
    [null, 'bad aud claim'],
    [{ 'flow-rt': true }, 'bad aud claim'],
    [['flow-rt', 7], 'bad aud claim']
  ]
  for (const [aud, message] of cases) {
    const err = authError(() => auth.verifyToken(hs256({ sub: 'a', ...VALID, aud }), NOW))
    t.equal(err.message, message, JSON.stringify(aud))
    t.notMatch(err.message, /billing/, 'the message does not echo the claim')
  }
  t.equal(withSecret.verifyToken(hs256({ sub: 'a', ...VALID, aud: 'billing-service' }), NOW).userId, 'a', 'not checked when none is configured')
})

t.test('with an issuer configured, refuses a token whose iss is missing or another', async (t) => {
  const auth = createAuthenticator({ jwtPublicKey: EC_PEM, issuer: 'https://id.example.com' })
  t.equal(auth.verifyToken(es256({ sub: 'a', ...VALID, iss: 'https://id.example.com' }), NOW).userId, 'a')
  const cases: Array<[unknown, string]> = [
    [undefined, 'token has no iss'],
    ['https://evil.example.com', 'token iss does not match'],
    ['https://id.example.com/', 'token iss does not match'],
    [['https://id.example.com'], 'token iss does not match'],
    [null, 'token iss does not match']
  ]
  for (const [iss, message] of cases) {
    const err = authError(() => auth.verifyToken(es256({ sub: 'a', ...VALID, iss }), NOW))
    t.equal(err.message, message, JSON.stringify(iss))
    t.notMatch(err.message, /evil/, 'the message does not echo the claim')
  }
  t.equal(withEc.verifyToken(es256({ sub: 'a', ...VALID, iss: 'https://evil.example.com' }), NOW).userId, 'a', 'not checked when none is configured')
})

t.test('checks aud and iss together, before any other claim', async (t) => {
  const auth = createAuthenticator({ jwtSecret: SECRET, audience: 'flow-rt', issuer: 'id' })
  t.equal(auth.verifyToken(hs256({ sub: 'a', ...VALID, aud: 'flow-rt', iss: 'id' }), NOW).userId, 'a')
  t.equal(authError(() => auth.verifyToken(hs256({ sub: 'a', ...VALID, aud: 'flow-rt', iss: 'other' }), NOW)).message, 'token iss does not match')
  t.equal(authError(() => auth.verifyToken(hs256({ sub: 'a', ...VALID, aud: 'other', iss: 'id' }), NOW)).message, 'token aud does not match')
  // A token of another service says so, whatever else is wrong with it.
  t.equal(authError(() => auth.verifyToken(hs256({ sub: '\n', iss: 'other' }), NOW)).message, 'token iss does not match')
})

t.test('throws at creation for an empty audience or issuer', async (t) => {
  t.match(configError(() => createAuthenticator({ jwtSecret: SECRET, audience: '' })), /FLOW_JWT_AUDIENCE/)
  t.match(configError(() => createAuthenticator({ jwtSecret: SECRET, issuer: '' })), /FLOW_JWT_ISSUER/)
})

/** Subs that could spoof a name on a member list, each with what is wrong. */
const SPOOFED_SUBS: Array<[string, string]> = [
  ['mallory\nalice joined', 'a line feed'],
  ['mallory\r\nalice', 'CR LF'],
  ['mal\tlory', 'a tab'],
  ['mal\u0000lory', 'NUL'],
  ['mal\u007flory', 'DEL'],
  ['mal\u0085lory', 'C1 next line'],
  ['\u202e'.repeat(100) + 'alice', '100 right-to-left overrides'],
  ...['\u202a', '\u202b', '\u202c', '\u202d', '\u2066', '\u2067', '\u2068', '\u2069', '\u200e', '\u200f', '\u061c'].map((c): [string, string] => [`ali${c}ce`, `bidi control U+${c.codePointAt(0)?.toString(16).toUpperCase() ?? ''}`]),
  ['ali\u2028ce', 'line separator'],
  ['ali\u2029ce', 'paragraph separator'],
  ['al\u200bice', 'zero-width space'],
  ['\ufeffalice', 'byte order mark'],
  ['alice\u{e0041}', 'tag character'],
  ['ali\ud800ce', 'lone surrogate'],
  [' alice', 'leading space'],
  ['alice ', 'trailing space'],
  ['alice\u3000', 'trailing ideographic space'],
  ['\u00a0', 'only a no-break space'],
  ['x'.repeat(129), '129 characters'],
  ['😀'.repeat(129), '129 astral characters']
]

t.test('refuses a token whose sub is not a printable name of at most 128 characters', async (t) => {
  for (const [sub, what] of SPOOFED_SUBS) {
    const err = authError(() => withSecret.verifyToken(hs256({ sub, ...VALID }), NOW))
    t.match(err.message, /^token sub (is too long|has a control, format|has whitespace at its start or end)/, what)
    t.notOk(err.message.includes('alice') || err.message.includes('mal'), `${what}: the message does not echo the sub`)
  }
})

t.test('accepts a sub of printable characters, spaces and non-Latin scripts included', async (t) => {
  for (const sub of ['José Smith', 'user@example.com', '用户一', 'علي', '👩‍💻 dev', 'نیم‌فاصله', '😀'.repeat(128), 'x'.repeat(128), 'a']) {
    t.equal(withSecret.verifyToken(hs256({ sub, ...VALID }), NOW).userId, sub, JSON.stringify(sub))
  }
})

t.test('says why a user id is refused, for any source', async (t) => {
  t.equal(userIdProblem('alice'), undefined)
  t.equal(userIdProblem(undefined), 'is missing')
  t.equal(userIdProblem(42), 'is missing')
  t.equal(userIdProblem(''), 'is missing')
  t.equal(userIdProblem('a'.repeat(10_000)), 'is too long (over 128 characters)')
  t.equal(userIdProblem('a\nb'), 'has a control, format (bidi, zero-width) or line separator character')
  t.equal(userIdProblem('a '), 'has whitespace at its start or end')
})

t.test('recognises only the configured API key, whatever the candidate length', async (t) => {
  const auth = createAuthenticator({ apiKey: 'key-123' })
  t.equal(auth.isApiKey('key-123'), true)
  t.equal(auth.isApiKey('key-124'), false)
  t.equal(auth.isApiKey('key-1234'), false)
  t.equal(auth.isApiKey('k'), false)
  t.equal(auth.isApiKey(''), false)
  t.equal(auth.enabled, false)
})

t.test('recognises no API key when none is configured', async (t) => {
  t.equal(withSecret.isApiKey(''), false)
  t.equal(withSecret.isApiKey('anything'), false)
  t.equal(createAuthenticator({ apiKey: '' }).isApiKey(''), false)
})

t.test('is enabled only with a secret or a public key', async (t) => {
  t.equal(createAuthenticator({}).enabled, false)
  t.equal(withSecret.enabled, true)
  t.equal(withRsa.enabled, true)
  t.equal(withEc.enabled, true)
})

t.test('rejects every token when neither a secret nor a key is configured', async (t) => {
  t.match(authError(() => createAuthenticator({}).verifyToken(hs256({ sub: 'a' }), NOW)).message, /alg/)
})

t.test('parses the token of a Bearer authorization header', async (t) => {
  t.equal(bearerToken('Bearer abc.def.ghi'), 'abc.def.ghi')
  t.equal(bearerToken('bearer abc'), 'abc')
  t.equal(bearerToken('BEARER abc'), 'abc')
  t.equal(bearerToken('  Bearer   abc  '), 'abc')
  t.equal(bearerToken(undefined), undefined)
  t.equal(bearerToken(''), undefined)
  t.equal(bearerToken('Bearer'), undefined)
  t.equal(bearerToken('Bearer '), undefined)
  t.equal(bearerToken('Basic abc'), undefined)
  t.equal(bearerToken('Bearerabc'), undefined)
  t.equal(bearerToken('Bearer a b'), undefined)
})

t.test('gives an open identity access to every project', async (t) => {
  const identity = openIdentity('anonymous')
  t.equal(identity.userId, 'anonymous')
  t.ok(identity.allows('doc-1'))
  t.equal(identity.expiresAt, undefined)
})

t.test('throws at creation naming FLOW_JWT_PUBLIC_KEY for a garbage PEM', async (t) => {
  for (const pem of ['not a pem', '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n', '']) {
    let caught: unknown
    try {
      createAuthenticator({ jwtPublicKey: pem })
    } catch (err) {
      caught = err
    }
    t.ok(caught instanceof Error && !(caught instanceof UnauthorizedError), 'a configuration error, not a refused token')
    t.match((caught as Error).message, /FLOW_JWT_PUBLIC_KEY/)
  }
})

t.test('throws at creation for public keys that fit neither RS256 nor ES256', async (t) => {
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
  const ed = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString()
  t.throws(() => createAuthenticator({ jwtPublicKey: p384 }), /FLOW_JWT_PUBLIC_KEY.*P-256/)
  t.throws(() => createAuthenticator({ jwtPublicKey: ed }), /FLOW_JWT_PUBLIC_KEY.*ed25519/)
})

t.test('throws at creation for an empty secret', async (t) => {
  t.throws(() => createAuthenticator({ jwtSecret: '' }), /FLOW_JWT_SECRET/)
})

t.test('accepts a PEM whose newlines were escaped as \\n in one line', async (t) => {
  const auth = createAuthenticator({ jwtPublicKey: RSA_PEM.replaceAll('\n', '\\n') })
  t.equal(auth.verifyToken(rs256({ sub: 'a', ...VALID }), NOW).userId, 'a')
})

t.test('a read claim names projects the token may join and read but not change', async (t) => {
  const auth = createAuthenticator({ jwtSecret: SECRET })
  const both = auth.verifyToken(hs256({ sub: 'ann', exp: EXP, projects: ['board-1'], read: ['board-*', 'wiki'] }), NOW)
  t.equal(both.allows('board-1', 'write'), true, 'projects: read and write')
  t.equal(both.allows('board-1'), true)
  t.equal(both.allows('board-2', 'read'), true, 'read: joins board-2')
  t.equal(both.allows('board-2', 'write'), false, 'but may not change it')
  t.equal(both.allows('wiki'), true)
  t.equal(both.allows('wiki', 'write'), false)
  t.equal(both.allows('other'), false, 'neither claim: nothing')
  const viewer = auth.verifyToken(hs256({ sub: 'bob', exp: EXP, read: ['*'] }), NOW)
  t.equal(viewer.allows('anything'), true, 'a token with read alone reads')
  t.equal(viewer.allows('anything', 'write'), false, 'and writes nowhere')
  t.throws(() => auth.verifyToken(hs256({ sub: 'c', exp: EXP, projects: ['*'], read: 'all' }), NOW), { message: /bad read claim/ })
  t.throws(() => auth.verifyToken(hs256({ sub: 'c', exp: EXP, read: ['no spaces'] }), NOW), { message: /bad read claim/ })
})
