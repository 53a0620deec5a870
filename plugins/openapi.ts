import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'

/** Where the document and the UI live, under Flow's prefix. */
const DOCS = '/docs'

/** Flow's own version (the package.json above this module), not the host's that @fastify/swagger would read from the working directory. */
function flowVersion (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const file = join(dir, 'package.json')
    if (existsSync(file)) {
      const { version } = JSON.parse(readFileSync(file, 'utf8')) as { version?: unknown }
      return typeof version === 'string' ? version : '0.0.0'
    }
    const parent = dirname(dir)
    if (parent === dir) return '0.0.0'
    dir = parent
  }
}

/**
 * The OpenAPI 3.1 document of Flow's HTTP routes, made by @fastify/swagger
 * from their schemas, at `{prefix}/docs/json` (FLOW_OPENAPI, on by
 * default), and Swagger UI at `{prefix}/docs` (FLOW_OPENAPI_UI, off by
 * default). 3.1, not 3.0: its schemas are JSON Schema, so the routes'
 * schemas go in as they are (`type: ['string', 'null']` has no 3.0 form).
 *
 * Registered first in Flow's encapsulated context, so its `onRoute` hook
 * sees Flow's routes and no others, and its `swagger` decorator shadows a
 * host's own without touching it: a host with @fastify/swagger keeps its
 * document (which lists Flow's routes too, as it lists any plugin's).
 */
async function openapiPlugin (fastify: FastifyInstance): Promise<void> {
  const { config } = fastify.flowConfig
  if (!config.openapi) return
  await fastify.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Flow realtime HTTP API',
        version: flowVersion(),
        description: 'Projects, presence and ordered ops over HTTP. The WebSocket protocol (`GET /ws`) is ' +
          'described in docs/protocol.md; this document covers the HTTP side of it.'
      },
      tags: [
        { name: 'projects', description: 'members, history and posting ops' },
        { name: 'operations', description: 'health, stats and metrics (no token needed)' },
        { name: 'websocket', description: 'the WebSocket endpoint' }
      ],
      // Optional as a whole: authentication may be off, and the operations routes never need a token. Not
      // on each route's schema: a host's own @fastify/swagger sees Flow's routes too, and has no `bearer`.
      security: [{ bearer: [] }, {}],
      components: {
        securitySchemes: {
          bearer: {
            type: 'http',
            scheme: 'bearer',
            description: 'a JWT (when FLOW_JWT_SECRET or FLOW_JWT_PUBLIC_KEY is set) or the API key (FLOW_API_KEY)'
          }
        }
      }
    },
    // Shared schemas by their `$id` (`#/components/schemas/FlowError`), not `def-0`.
    refResolver: {
      buildLocalReference (json, _baseUri, _fragment, i) {
        return typeof json.$id === 'string' ? json.$id : `def-${i}`
      }
    }
  })
  if (config.openapiUi) {
    // Serves the UI at /docs and the document at /docs/json (and /docs/yaml), all hidden from it.
    // Loaded only when on: with @fastify/static, it is most of the start-up cost of the docs.
    const { default: swaggerUi } = await import('@fastify/swagger-ui')
    await fastify.register(swaggerUi, { routePrefix: DOCS })
    return
  }
  fastify.get(`${DOCS}/json`, { schema: { hide: true } }, async () => fastify.swagger())
}

export default fp(openapiPlugin, { name: 'flow-openapi', fastify: '5.x', dependencies: ['flow-config'] })
