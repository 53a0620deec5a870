import t from 'tap'
import Fastify from 'fastify'
import flow, { options } from '../../app.js'
import { redactUrl } from '../../lib/redact.js'

t.test('the plugin declares its name and the Fastify range it runs on (fastify-plugin checks it at register)', async (t) => {
  const meta = (flow as unknown as Record<symbol, { name?: string, fastify?: string } | undefined>)[Symbol.for('plugin-meta')]
  t.match(meta, { name: 'flow', fastify: '5.x' })
})

t.test('the exported server options fit the longest project id and hide credentials in logs', async (t) => {
  t.ok(options.routerOptions.maxParamLength >= 128)
  const { serializers, hooks } = options.logger
  t.same(serializers.req({ method: 'GET', url: '/ws?token=abc&x=1', ip: '::1' }), { method: 'GET', url: '/ws?token=[REDACTED]&x=1', remoteAddress: '::1' })
  t.equal(hooks.streamWrite('{"msg":"Route GET:/x?apiKey=k not found"}'), '{"msg":"Route GET:/x?apiKey=[REDACTED] not found"}')
  t.equal(redactUrl('/ws;TOKEN=abc'), '/ws;TOKEN=[REDACTED]')
})

t.test('as fastify start -o does: the server options also handed to the plugin are not taken for settings', async (t) => {
  const app = Fastify({ ...options, logger: false })
  t.teardown(async () => { await app.close() })
  // fastify-cli: Object.assign({}, file.options, pluginOptions)
  await app.register(flow, { ...options, env: {} } as Parameters<typeof flow>[1])
  await app.ready()
  t.equal((await app.inject({ url: '/health' })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: `/projects/${'p'.repeat(128)}/ops`, payload: { data: 1 } })).statusCode, 201)
})

t.test('any other unknown option is still refused', async (t) => {
  const app = Fastify({ logger: false })
  t.teardown(async () => { await app.close() })
  await t.rejects(async () => {
    await app.register(flow, { env: {}, routerOptions: { maxParamLength: 300 } } as Parameters<typeof flow>[1])
  }, /unknown option routerOptions/, 'only the very objects of `options` are dropped')
})
