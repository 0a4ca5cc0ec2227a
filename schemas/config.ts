import { type Static, Type } from '@sinclair/typebox'

/**
 * The service's environment, one key per property. Defaults live here and nowhere else:
 * `.env.example` and the README's configuration table are generated from this schema
 * (`make docs`), and a test fails when they drift.
 *
 * Two keywords of our own: `expected`, the phrase used in the one-line start-up error when a
 * value does not fit (TypeBox's own messages name types, not intentions), and `secret`, which
 * keeps the value out of that message.
 */
export const ConfigSchema = Type.Object({
  HOST: Type.String({
    default: '0.0.0.0',
    minLength: 1,
    description: 'Interface the HTTP server binds to.',
  }),
  HTTP_PORT: Type.Integer({
    default: 8080,
    minimum: 0,
    maximum: 65535,
    description: 'TCP port of the HTTP API (0 picks a free port).',
  }),
  // A union of literals (not stringEnum): TypeBox's Value checker only knows its own kinds.
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((level) => Type.Literal(level)),
    { default: 'info', description: 'Minimum level of the JSON log lines written to stdout.' },
  ),
  DATABASE_URL: Type.Optional(
    Type.String({
      pattern: '^postgres(ql)?://',
      secret: true,
      expected: 'a postgres:// or postgresql:// connection URL',
      description:
        'PostgreSQL connection URL. Unset: the service starts an embedded PostgreSQL itself (see EMBEDDED_DATABASE_DIR).',
    }),
  ),
  DATABASE_POOL_MAX: Type.Integer({
    default: 10,
    minimum: 1,
    maximum: 1000,
    description:
      'Connections of the pool that serves HTTP requests (job status, lists, uploads, errors). The process opens other pools beside it; in all at most DATABASE_POOL_MAX + EXPORT_MAX_STREAMS + 1, plus 3 × WORKER_POOL_SIZE + 4 with RUN_JOBS (docs/api.md, "Database connections").',
  }),
  DATABASE_CONNECT_TIMEOUT_SECONDS: Type.Integer({
    default: 10,
    minimum: 1,
    maximum: 600,
    description: 'How long opening one database connection may take before it fails.',
  }),
  MIGRATE_ON_START: Type.Boolean({
    default: true,
    description:
      'Run pending migrations at start-up. When false, /ready answers 503 until `make migrate-up` has run them.',
  }),
  EMBEDDED_DATABASE_DIR: Type.String({
    default: './.data/postgres',
    minLength: 1,
    description: 'Data directory of the embedded PostgreSQL (used only when DATABASE_URL is unset).',
  }),
  EMBEDDED_DATABASE_PORT: Type.Integer({
    default: 0,
    minimum: 0,
    maximum: 65535,
    description: 'Port of the embedded PostgreSQL on 127.0.0.1; 0 picks a free port at each start.',
  }),
  IMPORT_DIR: Type.String({
    default: './imports',
    minLength: 1,
    description:
      'Directory for uploaded import files with STORAGE=fs (created at start-up; instances may share it), and for temporary files.',
  }),
  EXPORT_DIR: Type.String({
    default: './exports',
    minLength: 1,
    description: 'Directory for finished export files with STORAGE=fs (created at start-up; instances may share it).',
  }),
  STORAGE: Type.Union([Type.Literal('fs'), Type.Literal('s3')], {
    default: 'fs',
    description:
      'Where uploads, import sources and export files live: fs, the directories IMPORT_DIR and EXPORT_DIR (instances share them, or run alone); s3, a bucket of S3 or an S3-compatible store (instances share nothing but it and the database).',
  }),
  S3_ENDPOINT: Type.String({
    default: '',
    pattern: '^(https?://.+)?$',
    expected: 'empty (AWS) or an http:// or https:// URL',
    description: 'URL of an S3-compatible store (MinIO, Ceph, Swift, R2…); empty: AWS S3 of S3_REGION.',
  }),
  S3_REGION: Type.String({
    default: 'us-east-1',
    minLength: 1,
    description: 'Region of the bucket (S3-compatible stores mostly accept us-east-1).',
  }),
  S3_BUCKET: Type.String({
    default: '',
    pattern: '^([a-z0-9][a-z0-9._-]{1,253}[a-z0-9])?$',
    expected: 'a bucket name (lower-case letters, digits, dots and hyphens)',
    description: 'Bucket of uploads, import sources and export files (required with STORAGE=s3; it must exist).',
  }),
  S3_PREFIX: Type.String({
    default: '',
    pattern: '^([^/].*/)?$',
    expected: 'empty or a key prefix ending with / (not starting with one)',
    description:
      'Prefix of every key the service writes (e.g. bulk-io/): uploads under <prefix>imports/, exports under <prefix>exports/.',
  }),
  S3_FORCE_PATH_STYLE: Type.Boolean({
    default: false,
    description:
      'Address the bucket in the URL path (endpoint/bucket/key) instead of as a host name; most S3-compatible stores (MinIO, Swift) need true.',
  }),
  S3_CHECKSUMS: Type.Union([Type.Literal('when_required'), Type.Literal('when_supported')], {
    default: 'when_required',
    description:
      'Checksums the S3 client sends and checks: when_required works with every S3-compatible store; when_supported adds the SDK’s CRC checksums to each request and response (AWS S3, recent MinIO).',
  }),
  S3_IMPORT_BUCKETS: Type.String({
    default: '',
    pattern: '^([a-z0-9][a-z0-9._-]{1,253}[a-z0-9])?(,[a-z0-9][a-z0-9._-]{1,253}[a-z0-9])*$',
    expected: 'a comma-separated list of bucket names',
    description:
      'Buckets an import may read with a s3://bucket/key URL, with the service’s credentials (comma-separated); empty: none.',
  }),
  S3_PRESIGN_TTL_SECONDS: Type.Integer({
    default: 3600,
    minimum: 60,
    maximum: 604_800,
    description: 'How long presigned URLs stay valid: direct uploads’ PUT URLs and redirected export downloads.',
  }),
  S3_PART_BYTES: Type.Integer({
    default: 8_388_608,
    minimum: 5_242_880,
    maximum: 5_368_709_120,
    description:
      'Part size of the multipart uploads the service writes (uploads passed through, export files: at most 10,000 parts, so 80 GiB by default; each upload holds about three parts in memory) and of direct uploads (larger for files of more than 10,000 parts). At least 5 MiB, S3’s minimum.',
  }),
  S3_MAX_ATTEMPTS: Type.Integer({
    default: 5,
    minimum: 1,
    maximum: 100,
    description:
      'Attempts of one store request (and of a read that breaks off: it goes on from the byte it reached) before its error counts; retries back off exponentially.',
  }),
  STORE_ORPHAN_SECONDS: Type.Integer({
    default: 86_400,
    minimum: 1,
    description:
      'Unfinished writes (partial files, multipart uploads of a process that died) and stored objects no job refers to are removed this long after they were written.',
  }),
  EXPORT_DOWNLOAD_REDIRECT: Type.Boolean({
    default: false,
    description:
      'With STORAGE=s3, GET /api/v1/exports/{id}/download answers 302 to a presigned URL of the file (valid S3_PRESIGN_TTL_SECONDS) instead of passing the bytes through.',
  }),
  WORKER_POOL_SIZE: Type.Integer({
    default: 10,
    minimum: 1,
    maximum: 1000,
    description: 'Jobs (imports and async exports) this process runs at once (each claims its job with a lease).',
  }),
  BATCH_SIZE: Type.Integer({
    default: 1000,
    minimum: 1,
    maximum: 100_000,
    description: 'Records per batch: one upsert statement and one transaction each.',
  }),
  IMPORT_THREADS: Type.Union([Type.Literal('auto'), Type.Integer({ minimum: 0, maximum: 256 })], {
    default: 'auto',
    expected: 'auto or an integer from 0 to 256',
    description:
      'Threads that parse and validate import batches; auto: one per CPU core but one (at least one); 0: none, the job thread does it (~20 MB less, slower).',
  }),
  RUN_JOBS: Type.Boolean({
    default: true,
    description:
      'Run jobs (imports, async exports) in this process; false makes an API-only instance (others run the jobs).',
  }),
  JOB_LEASE_SECONDS: Type.Integer({
    default: 30,
    minimum: 2,
    maximum: 600,
    description:
      'Lease of a running job, renewed while it runs: another process takes the job over this long after its owner died.',
  }),
  JOB_MAX_ATTEMPTS: Type.Integer({
    default: 5,
    minimum: 1,
    maximum: 100,
    description:
      'Runs of a job that may end abnormally (its process or job thread died) before the job fails with attempts_exhausted. Runs handed back at shutdown do not count.',
  }),
  JOB_POLL_INTERVAL_MS: Type.Integer({
    default: 1000,
    minimum: 50,
    description: 'How often idle runners look for queued jobs and expired leases (new jobs also wake them at once).',
  }),
  RECORD_MAX_BYTES: Type.Integer({
    default: 1_048_576,
    minimum: 1024,
    description: 'Largest record (CSV row, NDJSON line, JSON element) read; a larger one is a parse_error.',
  }),
  IMPORT_MAX_ERRORS: Type.Integer({
    default: 1_000_000,
    minimum: 0,
    description: 'Per-record errors stored per job; later ones are counted in `failed` but not listed.',
  }),
  UPLOAD_MAX_BYTES: Type.Integer({
    default: 10_737_418_240,
    minimum: 1,
    description: 'Largest uploaded import file (10 GiB); a larger upload is refused with 413.',
  }),
  IMPORT_URL_MAX_BYTES: Type.Integer({
    default: 10_737_418_240,
    minimum: 1,
    description: 'Largest file an import may download from a URL.',
  }),
  IMPORT_URL_TIMEOUT_MS: Type.Integer({
    default: 600_000,
    minimum: 100,
    description: 'Longest time an import may take to download its URL.',
  }),
  IMPORT_URL_MAX_REDIRECTS: Type.Integer({
    default: 5,
    minimum: 0,
    maximum: 20,
    description: 'Redirects an import URL may follow (each hop is checked like the first).',
  }),
  IMPORT_URL_ALLOW_PRIVATE: Type.Boolean({
    default: false,
    description: 'Allow import URLs that resolve to loopback, private, link-local or metadata addresses.',
  }),
  EXPORT_TTL_SECONDS: Type.Integer({
    default: 86_400,
    minimum: 1,
    description:
      'How long a finished export file is kept: after it, the file is deleted and the job answers that it expired.',
  }),
  EXPORT_MAX_STREAMS: Type.Integer({
    default: 8,
    minimum: 1,
    maximum: 1000,
    description:
      'Streaming exports this process serves at once (each holds a database connection); more get a 429 problem.',
  }),
  EXPORT_GZIP_LEVEL: Type.Integer({
    default: 1,
    minimum: 1,
    maximum: 9,
    description:
      'gzip level of compressed exports (streams sent to clients that accept gzip, async files with compression gzip): 1 is fastest.',
  }),
  EXPORT_CSV_ESCAPE_FORMULAS: Type.Boolean({
    default: false,
    description:
      'CSV exports prefix a text cell starting with = + - @, tab or carriage return with a single quote, so spreadsheets do not run it as a formula. Such values then differ on re-import.',
  }),
  IDEMPOTENCY_TTL_SECONDS: Type.Integer({
    default: 86_400,
    minimum: 1,
    description: 'How long an Idempotency-Key is remembered.',
  }),
  IDEMPOTENCY_WAIT_MS: Type.Integer({
    default: 10_000,
    minimum: 0,
    description:
      'How long a request waits for an in-flight request with the same Idempotency-Key before answering 409.',
  }),
  BODY_LIMIT_BYTES: Type.Integer({
    default: 1_048_576,
    minimum: 1024,
    description: 'Largest JSON request body accepted; larger bodies get a 413 problem.',
  }),
  HTTP_KEEP_ALIVE_TIMEOUT_MS: Type.Integer({
    default: 72_000,
    minimum: 0,
    description: 'Idle keep-alive connection timeout; keep it above your load balancer’s idle timeout.',
  }),
  HTTP_REQUEST_TIMEOUT_MS: Type.Integer({
    default: 3_600_000,
    minimum: 0,
    description: 'Longest time a client may take to send one whole request (large uploads included); 0 disables.',
  }),
  API_KEYS: Type.String({
    default: '',
    pattern: '^([^,\\s]{16,})?(,[^,\\s]{16,})*$',
    secret: true,
    expected: 'a comma-separated list of keys of at least 16 characters without spaces',
    description:
      'Comma-separated API keys. Empty: authentication is off. Set: every /api/* request needs `Authorization: Bearer <key>` or `X-API-Key: <key>`.',
  }),
  METRICS_AUTH: Type.Boolean({
    default: false,
    description: 'Require one of API_KEYS on /metrics too (Prometheus: `authorization: { credentials: <key> }`).',
  }),
  HEALTH_TIMEOUT_MS: Type.Integer({
    default: 2000,
    minimum: 10,
    description: 'How long the database check of /health and /ready may take before it counts as down.',
  }),
  SHUTDOWN_DRAIN_DELAY_MS: Type.Integer({
    default: 0,
    minimum: 0,
    description:
      'After SIGTERM, how long /ready answers 503 while the server still serves, so load balancers stop routing here first.',
  }),
  SHUTDOWN_TIMEOUT_MS: Type.Integer({
    default: 30_000,
    minimum: 100,
    description: 'Longest graceful shutdown; when it is exceeded the process exits with code 1.',
  }),
})

export type Config = Static<typeof ConfigSchema>
