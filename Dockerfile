# Flow realtime: one server instance (docker-compose.yml runs three behind HAProxy).
#
#   docker build -t flow-realtime .
#   docker run --rm -p 3000:3000 -e FLOW_AUTH=none flow-realtime            # open, memory adapters
#   docker run --rm -p 3000:3000 -e FLOW_JWT_SECRET=... flow-realtime       # JWT authentication
#
# NODE_ENV=production: the server refuses to start without FLOW_JWT_SECRET or
# FLOW_JWT_PUBLIC_KEY unless FLOW_AUTH=none says "open on purpose" (and it
# refuses FLOW_AUTH=none together with a secret or key). Every other setting
# is an environment variable from the README's configuration table.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: all dependencies, TypeScript -> dist/ ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# package.json says "engines": { "node": ">=20.19" }; npm only warns, so fail here.
RUN node -e "const [a, b] = process.versions.node.split('.').map(Number); if (a < 20 || (a === 20 && b < 19)) { console.error('Node >= 20.19 needed, got ' + process.version); process.exit(1) }"
COPY package.json package-lock.json ./
# --ignore-scripts: package.json's prepare builds dist/ in a clone, but the
# sources are copied below and built by the explicit npm run build.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY app.ts server.ts cli.ts ./
COPY lib ./lib
COPY ports ./ports
COPY adapters ./adapters
COPY plugins ./plugins
COPY client ./client
RUN npm run build && rm -f dist/.tsbuildinfo

# ---- runtime: production dependencies and dist/ only ----
FROM ${NODE_IMAGE} AS runtime
ENV HOST=0.0.0.0 \
    PORT=3000 \
    NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# fastify and @fastify/websocket are peer dependencies: npm installs them
# here too (--omit=dev keeps peers). No script of a production dependency
# needs to run, and the project's own prepare needs the sources.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The demo board served at / (plugins/demo.ts reads it at start).
COPY demo ./demo
# Files stay root-owned and read-only to the server; it writes nothing to disk.
USER node
EXPOSE 3000
# No curl in slim images: Node's own fetch. /health answers 200 unless the
# process is over its load limits (then 503), and needs no authentication.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Exec form, node as PID 1, no npm or sh in between: SIGTERM reaches the
# server, which drains (acks ops in flight, flushes, closes sockets with 1001)
# within FLOW_SHUTDOWN_TIMEOUT_MS (5 s), inside Docker's 10 s stop timeout.
CMD ["node", "dist/server.js"]
