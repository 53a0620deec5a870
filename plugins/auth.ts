import fp from 'fastify-plugin'
import { normalizeIP } from '@fastify/rate-limit'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { bearerToken, createAuthenticator, openIdentity, userIdProblem } from '../lib/auth.js'
import { authEnabled } from '../lib/config.js'
import { ForbiddenError, UnauthorizedError, wireCode } from '../lib/errors.js'
import type { Identity } from '../lib/hub/transport.js'

/**
 * A host app's own authentication: resolve the caller or throw (401). An
 * identity whose userId is not a valid user id (lib/auth.ts `userIdProblem`)
 * is refused with 401 too.
 */
export type AuthenticateHook = (request: FastifyRequest) => Identity | Promise<Identity>

export interface AuthPluginOptions {
  readonly authenticate?: AuthenticateHook
}

declare module 'fastify' {
  interface FastifyRequest {
    /** who made the request; set by flow-auth's hooks on Flow routes */
    flowIdentity: Identity | null
  }
  interface FastifyInstance {
    /** preValidation hooks: WebSocket upgrade, project reads, project writes */
    flowAuth: {
      readonly mode: 'jwt' | 'hook' | 'open'
      readonly socket: (request: FastifyRequest) => Promise<void>
      readonly read: (request: FastifyRequest) => Promise<void>
      readonly write: (request: FastifyRequest) => Promise<void>
    }
  }
}

const USER_ID = /^[A-Za-z0-9_.@:-]{1,128}$/

/**
 * Whom a client's requests and connections count against (the HTTP rate
 * limit, the byte budgets): its user, or, when clients carry no credential
 * (open mode: every caller names itself), its address (an IPv6 address by
 * its /64, which one client usually holds whole).
 */
export function identityKey (identity: Identity | null, ip: string, mode: 'jwt' | 'hook' | 'open'): string {
  if (identity !== null && mode !== 'open') return `user:${identity.userId}`
  return `ip:${normalizeIP(ip)}`
}
const apiIdentity: Identity = { userId: 'api', allows: () => true }

/**
 * Who may connect and call the project API. A JWT (secret or public key),
 * the API key for HTTP, a host's `authenticate` hook, or open mode.
 */
async function authPlugin (fastify: FastifyInstance, opts: AuthPluginOptions): Promise<void> {
  const { config } = fastify.flowConfig
  const auth = createAuthenticator({
    jwtSecret: config.jwtSecret,
    jwtPublicKey: config.jwtPublicKey,
    apiKey: config.apiKey,
    audience: config.jwtAudience,
    issuer: config.jwtIssuer,
    requireExp: config.jwtRequireExp,
    defaultProjects: config.jwtDefaultProjects
  })
  const hook = opts.authenticate
  const mode = hook !== undefined ? 'hook' : authEnabled(config) ? 'jwt' : 'open'
  if (mode === 'open') {
    fastify.log.warn('authentication is off: anyone who reaches this server may join any project (set FLOW_JWT_SECRET or FLOW_JWT_PUBLIC_KEY)')
  }
  if (mode === 'jwt' && config.nodeEnv === 'production' && config.jwtAudience === undefined && config.jwtIssuer === undefined) {
    fastify.log.warn('tokens are not bound to this service: any token signed with the same secret or key is accepted, ' +
      'one minted for another service too (set FLOW_JWT_AUDIENCE or FLOW_JWT_ISSUER)')
  }
  fastify.decorateRequest('flowIdentity', null)

  const checkProject = (request: FastifyRequest, identity: Identity, write: boolean): void => {
    const project = (request.params as { project?: string }).project
    if (project === undefined) return
    if (!identity.allows(project, 'read')) throw new ForbiddenError(`not allowed to access ${project}`)
    if (write && !identity.allows(project, 'write')) throw new ForbiddenError(`read-only in ${project}`)
  }

  const viaHook = async (request: FastifyRequest): Promise<Identity> => {
    let identity: Identity
    try {
      identity = await (hook as AuthenticateHook)(request)
    } catch (err) {
      // A refusal the hook chose (403, 429...) stands; anything else it throws is a 401.
      if (wireCode(err) !== null) throw err
      throw new UnauthorizedError(err instanceof Error ? err.message : 'not authenticated', { cause: err })
    }
    // The hook may pass on what a client sent (a header): its userId is held to the rule of a token's sub.
    const problem = userIdProblem((identity as Partial<Identity> | null | undefined)?.userId)
    if (problem !== undefined) throw new UnauthorizedError(`the authenticate hook's userId ${problem}`)
    return identity
  }

  const socket = async (request: FastifyRequest): Promise<void> => {
    if (mode === 'hook') {
      request.flowIdentity = await viaHook(request)
      return
    }
    const query = request.query as { token?: unknown, userId?: unknown }
    const token = bearerToken(request.headers.authorization) ?? (typeof query.token === 'string' ? query.token : undefined)
    if (mode === 'jwt') {
      if (token === undefined) throw new UnauthorizedError('a token is required (Authorization: Bearer or ?token=)')
      request.flowIdentity = auth.verifyToken(token)
      return
    }
    const userId = typeof query.userId === 'string' && USER_ID.test(query.userId) ? query.userId : 'anonymous'
    request.flowIdentity = openIdentity(userId)
  }

  const http = (write: boolean) => async (request: FastifyRequest): Promise<void> => {
    let identity: Identity
    const token = bearerToken(request.headers.authorization)
    if (token !== undefined && auth.isApiKey(token)) identity = apiIdentity
    else if (mode === 'hook') identity = await viaHook(request)
    else if (mode === 'jwt') {
      if (token === undefined) throw new UnauthorizedError('an API key or a token is required (Authorization: Bearer)')
      identity = auth.verifyToken(token)
    } else if (write && config.apiKey !== undefined) {
      throw new UnauthorizedError('the API key is required (Authorization: Bearer <key>)')
    } else identity = apiIdentity
    checkProject(request, identity, write)
    request.flowIdentity = identity
  }

  fastify.decorate('flowAuth', { mode, socket, read: http(false), write: http(true) })
}

export default fp(authPlugin, { name: 'flow-auth', fastify: '5.x', dependencies: ['flow-config'] })
