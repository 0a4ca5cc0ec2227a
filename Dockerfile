# The service image: Node.js 24 runs the TypeScript sources directly (type stripping), so there is
# nothing to compile. Two stages: dependencies are installed apart, and only what runs is copied.
FROM node:24-bookworm-slim AS dependencies
WORKDIR /app
# patches/: fixes to dependencies, applied by the postinstall step (patch-package).
COPY package.json package-lock.json ./
COPY patches ./patches
# Production dependencies only; optional ones are the embedded PostgreSQL's binaries (and the
# `node` package), which a container (given DATABASE_URL, on this Node.js image) does not need.
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund

FROM node:24-bookworm-slim
ENV NODE_ENV=production
# Node's compile cache: from the second start on (and for the job threads from the first), the
# TypeScript sources are read back compiled; a directory that cannot be written only turns it off.
ENV NODE_COMPILE_CACHE=/tmp/node-compile-cache
# Two malloc arenas instead of one per thread that allocates: the threads of an import then hold
# ~37 MB less (docs/benchmarks.md, "Memory"), at the same speed.
ENV MALLOC_ARENA_MAX=2
WORKDIR /app
COPY --from=dependencies /app/node_modules ./node_modules
COPY package.json ./
COPY app ./app
COPY db ./db
COPY plugins ./plugins
COPY routes ./routes
COPY schemas ./schemas
COPY resources ./resources

# Uploads and export files with STORAGE=fs (a shared volume on Kubernetes); with STORAGE=s3
# (compose.yaml, deploy/kubernetes-s3) the bucket holds them and these directories only temporary files.
RUN mkdir -p /data/imports /data/exports && chown -R node:node /data
USER node
ENV IMPORT_DIR=/data/imports EXPORT_DIR=/data/exports HTTP_PORT=8080
EXPOSE 8080

# Liveness: the process answers (readiness, which needs the database, is the orchestrator's probe).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/live').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# A small young generation keeps the resident set low under bulk work (see README: memory).
CMD ["node", "--max-semi-space-size=4", "--max-old-space-size=256", "app/server.ts"]
