import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import Fastify, { type FastifyInstance } from 'fastify'
import swagger from '@fastify/swagger'
import flow, { type FlowOptions } from '../../app.js'

/** The parts of an OpenAPI 3.1 document these tests read. */
interface Operation {
  readonly summary?: string
  readonly description?: string
  readonly tags?: readonly string[]
  readonly parameters?: ReadonlyArray<{ readonly name: string, readonly in: string, readonly description?: string, readonly schema?: unknown }>
  readonly responses: Readonly<Record<string, { readonly description: string, readonly content?: Readonly<Record<string, { readonly schema: unknown }>> }>>
}
interface Document {
  readonly openapi: string
  readonly info: { readonly title: string, readonly version: string }
  readonly paths: Readonly<Record<string, Readonly<Record<string, Operation>>>>
  readonly components: { readonly schemas: Readonly<Record<string, unknown>> }
}

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']

/** Flow embedded in a host under `prefix`, ready (not listening). */
async function embedded (t: Test, options: FlowOptions = {}, setup?: (app: FastifyInstance) => Promise<void>): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  if (setup !== undefined) await setup(app)
  await app.register(flow, { env: {}, maxEventLoopDelayMs: 0, ...options })
  await app.ready()
  t.teardown(async () => { await app.close() })
  return app
}

/**
 * The structural rules of OpenAPI 3.1 this document must keep (no
 * validator package is installed, and none is added for this): a version,
 * an info with title and version, paths that start with `/` and whose
 * templated segments each have a required path parameter, operations with
 * at least one response, each response with a description, and every
 * `$ref` pointing at a schema the document holds. Returns the problems.
 */
function problems (doc: Document): string[] {
  const found: string[] = []
  if (!/^3\.1\.\d+$/.test(doc.openapi)) found.push(`openapi is ${String(doc.openapi)}`)
  if (typeof doc.info?.title !== 'string' || typeof doc.info?.version !== 'string') found.push('info needs title and version')
  if (typeof doc.paths !== 'object' || doc.paths === null) return [...found, 'no paths']
  for (const [path, item] of Object.entries(doc.paths)) {
    if (!path.startsWith('/')) found.push(`${path} does not start with /`)
    const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1])
    for (const [method, op] of Object.entries(item)) {
      if (!METHODS.includes(method)) continue
      const where = `${method.toUpperCase()} ${path}`
      const responses = Object.entries(op.responses ?? {})
      if (responses.length === 0) found.push(`${where} has no responses`)
      for (const [status, response] of responses) {
        if (!/^([1-5]\d\d|[1-5]XX|default)$/.test(status)) found.push(`${where}: bad status ${status}`)
        if (typeof response.description !== 'string' || response.description === '') found.push(`${where} ${status} has no description`)
      }
      for (const name of templated) {
        const param = op.parameters?.find((p) => p.in === 'path' && p.name === name)
        if (param === undefined || (param as { required?: boolean }).required !== true) found.push(`${where}: path parameter ${String(name)} is not declared required`)
      }
    }
  }
  const refs = JSON.stringify(doc).matchAll(/"\$ref":"([^"]*)"/g)
  for (const [, ref = ''] of refs) {
    const name = /^#\/components\/schemas\/(.+)$/.exec(ref)?.[1]
    if (name === undefined || !(name in (doc.components?.schemas ?? {}))) found.push(`dangling $ref ${ref}`)
  }
  return found
}

/** Every `METHOD path` of the document. */
function operations (doc: Document): string[] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.keys(item).filter((m) => METHODS.includes(m)).map((m) => `${m.toUpperCase()} ${path}`)).sort()
}

/** The fields of the shared error body, as the document gives them. */
const ERROR_FIELDS = { statusCode: { type: 'integer' }, code: { type: 'string' }, error: { type: 'string' }, message: { type: 'string' } }

const FLOW_ROUTES = [
  'GET /rt/health',
  'GET /rt/metrics',
  'GET /rt/projects/{project}/members',
  'GET /rt/projects/{project}/ops',
  'GET /rt/projects/{project}/snapshot',
  'GET /rt/ws',
  'GET /rt/ws/stats',
  'POST /rt/projects/{project}/ops',
  'PUT /rt/projects/{project}/snapshot'
]

t.test('the OpenAPI document at <prefix>/docs/json lists every Flow HTTP route with the prefix, and no other', async (t) => {
  const app = await embedded(t, { prefix: '/rt' }, async (host) => {
    host.get('/hello', async () => 'host')
  })
  const res = await app.inject({ method: 'GET', url: '/rt/docs/json' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /application\/json/)
  const doc = res.json<Document>()
  t.same(operations(doc), FLOW_ROUTES, 'Flow\'s routes, and not the host\'s nor the document\'s own')
  t.same(problems(doc), [], 'valid OpenAPI 3.1, structurally')
  t.equal(doc.info.title, 'Flow realtime HTTP API', 'Flow\'s title, not the host\'s package name')
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  t.equal(doc.info.version, pkg.version, 'Flow\'s version')
})

t.test('every operation is described, and its error answers use the shared error body', async (t) => {
  const app = await embedded(t, { prefix: '/rt' })
  const doc = (await app.inject({ method: 'GET', url: '/rt/docs/json' })).json<Document>()
  t.match(doc.components.schemas.FlowError, {
    type: 'object',
    required: ['statusCode', 'code', 'error', 'message'],
    properties: { code: { type: 'string' } }
  })
  t.same((doc.components.schemas.FlowError as { properties: { code: { enum: string[] } } }).properties.code.enum,
    ['bad_request', 'unknown_type', 'unauthorized', 'forbidden', 'not_joined', 'limit_exceeded', 'rate_limited', 'unavailable', 'not_found', 'internal'])
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const where = `${method.toUpperCase()} ${path}`
      t.ok(op.summary !== undefined && op.description !== undefined, `${where} has a summary and a description`)
      t.ok(op.tags !== undefined && op.tags.length > 0, `${where} has a tag`)
      t.ok('500' in op.responses, `${where} documents 500`)
      for (const [status, response] of Object.entries(op.responses)) {
        if (Number(status) < 400) continue
        const schema = response.content?.['application/json']?.schema as { $ref?: string, properties?: object } | undefined
        if (schema?.$ref !== undefined) t.equal(schema.$ref, '#/components/schemas/FlowError', `${where} ${status} is the error body`)
        else t.match(schema?.properties, ERROR_FIELDS, `${where} ${status} has the error body's fields (and more)`)
      }
      for (const param of op.parameters ?? []) t.ok(param.description, `${where}: ${param.in} ${param.name} is described`)
    }
  }
  const post = doc.paths['/rt/projects/{project}/ops']?.post
  t.same(Object.keys(post?.responses ?? {}).sort(), ['200', '201', '400', '401', '403', '413', '429', '500', '503'])
  const history = doc.paths['/rt/projects/{project}/ops']?.get
  t.same(history?.parameters?.map((p) => `${p.in} ${p.name}`).sort(), ['path project', 'query limit', 'query since', 'query snapshot'])
  t.match(history?.responses['200']?.content?.['application/json']?.schema, {
    properties: { epoch: { type: 'string' }, seq: { type: 'integer' }, reset: { type: 'boolean' }, ops: { type: 'array' } }
  })
  t.match(doc.paths['/rt/metrics']?.get?.responses['200']?.content, { 'text/plain; version=0.0.4; charset=utf-8': {} })
  t.same(doc.paths['/rt/ws']?.get?.parameters?.map((p) => `${p.in} ${p.name}`).sort(), ['query token', 'query userId'])
})

t.test('the routes answer as their schemas say: bodies keep every field', async (t) => {
  const app = await embedded(t, { prefix: '/rt' })
  const posted = await app.inject({ method: 'POST', url: '/rt/projects/doc-1/ops', payload: { id: 'a', data: { x: [1, null] } } })
  t.equal(posted.statusCode, 201)
  t.same(posted.json(), { project: 'doc-1', id: 'a', seq: 1 })
  const page = (await app.inject({ method: 'GET', url: '/rt/projects/doc-1/ops' })).json<{ ops: Array<Record<string, unknown>> }>()
  t.match(page, { project: 'doc-1', seq: 1, reset: false, epoch: String })
  t.same(Object.keys(page.ops[0] ?? {}).sort(), ['data', 'id', 'project', 'seq', 'sessionId', 'ts', 'userId'])
  t.same(page.ops[0]?.data, { x: [1, null] })
  const bad = await app.inject({ method: 'GET', url: '/rt/projects/doc-1/ops?since=-1' })
  t.equal(bad.statusCode, 400)
  t.same(Object.keys(bad.json()).sort(), ['code', 'error', 'message', 'statusCode'])
  const stats = (await app.inject({ method: 'GET', url: '/rt/ws/stats' })).json<Record<string, unknown>>()
  t.match(stats, { ops: { appended: 1 }, frames: { inByType: {} }, memory: { rss: Number }, eventLoop: { delayMs: { p99: Number } } })
})

t.test('FLOW_OPENAPI=false (or the option) serves no document', async (t) => {
  const off = await embedded(t, { prefix: '/rt', openapi: false })
  t.equal((await off.inject({ method: 'GET', url: '/rt/docs/json' })).statusCode, 404)
  t.equal((await off.inject({ method: 'GET', url: '/rt/docs' })).statusCode, 404)
  const byEnv = await embedded(t, { prefix: '/rt', env: { FLOW_OPENAPI: 'false' } })
  t.equal((await byEnv.inject({ method: 'GET', url: '/rt/docs/json' })).statusCode, 404)
})

t.test('the UI without the document is a configuration error', async (t) => {
  const app = Fastify({ logger: false })
  await t.rejects(async () => { await app.register(flow, { env: {}, openapi: false, openapiUi: true }) },
    { code: 'FLOW_ERR_CONFIG_INVALID', message: /FLOW_OPENAPI_UI/ })
  await app.close()
})

t.test('Swagger UI is off by default, and FLOW_OPENAPI_UI serves it at <prefix>/docs', async (t) => {
  const plain = await embedded(t, { prefix: '/rt' })
  t.equal((await plain.inject({ method: 'GET', url: '/rt/docs' })).statusCode, 404, 'off by default')
  const app = await embedded(t, { prefix: '/rt', openapiUi: true })
  const page = await app.inject({ method: 'GET', url: '/rt/docs' })
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], /text\/html/)
  t.match(page.body, /swagger-ui/i)
  const doc = (await app.inject({ method: 'GET', url: '/rt/docs/json' })).json<Document>()
  t.same(operations(doc), FLOW_ROUTES, 'the same document, without the UI\'s own routes')
  const asset = await app.inject({ method: 'GET', url: '/rt/docs/static/swagger-ui-bundle.js' })
  t.equal(asset.statusCode, 200, 'the UI\'s assets are served under the prefix')
})

t.test('a host with its own @fastify/swagger keeps its document, and Flow\'s lists only Flow\'s routes', async (t) => {
  const app = await embedded(t, { prefix: '/rt' }, async (host) => {
    await host.register(swagger, { openapi: { openapi: '3.0.3', info: { title: 'host', version: '9.9.9' } } })
    host.get('/hello', { schema: { summary: 'the host\'s route' } }, async () => 'host')
  })
  const hostDoc = app.swagger() as unknown as Document
  t.equal(hostDoc.info.title, 'host')
  t.equal(hostDoc.openapi, '3.0.3')
  t.ok(hostDoc.paths['/hello'], 'the host\'s document has the host\'s route')
  t.ok(hostDoc.paths['/rt/projects/{project}/ops'], 'and Flow\'s, as any plugin\'s routes')
  const flowDoc = (await app.inject({ method: 'GET', url: '/rt/docs/json' })).json<Document>()
  t.equal(flowDoc.info.title, 'Flow realtime HTTP API')
  t.same(operations(flowDoc), FLOW_ROUTES)
  t.same(problems(flowDoc), [])
})

t.test('at the root (npm start), the document is at /docs/json', async (t) => {
  const app = await embedded(t)
  const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json<Document>()
  t.same(operations(doc), FLOW_ROUTES.map((r) => r.replace('/rt', '')))
})
