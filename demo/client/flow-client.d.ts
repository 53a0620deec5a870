// Types of {prefix}/client/flow-client.js for demo/app.js's type check: the
// server serves that URL from dist/browser/flow-client.js, the client's
// single-file build, whose API is client/index.ts's. Never served.
export * from '../../client/index.js'
