import { execFile, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { CreateBucketCommand } from '@aws-sdk/client-s3'
import t from 'tap'
import { parse } from 'yaml'
import { buildTestApp, generated, importAndWait, root, until, usersCsv } from '../helper.ts'
import { SWIFT_PACKAGES, s3ClientOf, startS3Server } from '../setup/s3-server.ts'

// The dashboard (grafana/dashboards) and the rules (prometheus/rules.yml) against a real
// Prometheus (Debian's `prometheus` package; CI installs it) that scrapes a real service while it
// imports and exports: every panel's query and every rule's expression must parse and return at
// least one series, which proves that their metric names and labels are those /metrics emits.
// An alert `<measure> <op> <threshold>` is evaluated as `<measure> <op> bool <threshold>`, so that
// it returns its series whether it would fire or not. The service keeps its files in a bucket
// (STORAGE=s3, on the S3 server of test/setup/s3-server.ts): only the S3 store reports the
// bulkio_store_* metrics, which the object-store panels and BulkIoStoreErrors read.

const prometheus = '/usr/bin/prometheus'
const promtool = '/usr/bin/promtool'
const swift = '/usr/bin/swift-proxy-server'
const skip =
  !process.env.CI &&
  ((!existsSync(prometheus) && `${prometheus} is missing (apt-get install -y prometheus)`) ||
    (!existsSync(swift) && `${swift} is missing (apt-get install -y ${SWIFT_PACKAGES})`))
const run = promisify(execFile)

interface Dashboard {
  panels: { type: string; title: string; targets?: { expr: string }[] }[]
}
interface Rules {
  groups: { rules: { record?: string; alert?: string; expr: string }[] }[]
}

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** Grafana's own variables, as a Prometheus query needs them. */
function withGrafanaVariables(expr: string): string {
  return expr.replaceAll('$__rate_interval', '1m').replaceAll('$__interval', '15s').replaceAll('$__range', '1h')
}

/** `<measure> <op> <threshold>` → `<measure> <op> bool <threshold>` (the last comparison). */
function asMeasure(expr: string): string {
  const comparisons = [...expr.matchAll(/(==|!=|>=|<=|>|<)\s+(?!bool\b)(-?[\d.]+)\s*$/g)]
  const last = comparisons.at(-1)
  if (!last || last.index === undefined) throw new Error(`an alert must end in <op> <threshold>: ${expr}`)
  return `${expr.slice(0, last.index)}${last[1]} bool ${last[2]}`
}

t.test('every dashboard panel and every rule returns series from a real scrape', { skip }, async (t) => {
  const config = await readFile(path.join(root, 'prometheus', 'prometheus.yml'), 'utf8')
  t.match(config, /targets: \["service:8080"\]/, 'the scrape target is the compose service and its HTTP_PORT')
  await run(promtool, ['check', 'config', path.join(root, 'prometheus', 'prometheus.yml')])
  await run(promtool, ['check', 'rules', path.join(root, 'prometheus', 'rules.yml')])

  // Stopped after the service closes (teardowns run last first).
  const s3 = await startS3Server()
  t.teardown(() => s3.stop())
  const bucket = 'bulk-io-metrics'
  const admin = s3ClientOf(s3)
  await admin.send(new CreateBucketCommand({ Bucket: bucket }))
  admin.destroy()
  // The service's S3 client takes its credentials from the AWS chain: the environment, which the
  // job thread copies when it starts.
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY }
  process.env.AWS_ACCESS_KEY_ID = s3.accessKeyId
  process.env.AWS_SECRET_ACCESS_KEY = s3.secretAccessKey
  t.teardown(() => {
    for (const [key, value] of [
      ['AWS_ACCESS_KEY_ID', saved.id],
      ['AWS_SECRET_ACCESS_KEY', saved.secret],
    ] as const) {
      if (value === undefined) delete process.env[key]
      else process.env[key] = value
    }
  })

  const app = await buildTestApp(t, {
    environment: {
      BATCH_SIZE: '500',
      STORAGE: 's3',
      S3_ENDPOINT: s3.endpoint,
      S3_REGION: s3.region,
      S3_BUCKET: bucket,
      S3_FORCE_PATH_STYLE: 'true',
    },
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const servicePort = (app.server.address() as { port: number }).port
  app.jobs.start()

  const directory = await mkdtemp(path.join(tmpdir(), 'bulk-io-prometheus-'))
  t.teardown(() => rm(directory, { recursive: true, force: true }))
  await writeFile(
    path.join(directory, 'prometheus.yml'),
    config
      .replaceAll('15s', '1s')
      .replace('service:8080', `127.0.0.1:${servicePort}`)
      .replace('- rules.yml', `- ${path.join(root, 'prometheus', 'rules.yml')}`),
  )
  const prometheusPort = await freePort()
  const server = spawn(
    prometheus,
    [
      `--config.file=${path.join(directory, 'prometheus.yml')}`,
      `--storage.tsdb.path=${path.join(directory, 'data')}`,
      `--web.listen-address=127.0.0.1:${prometheusPort}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  let log = ''
  server.stderr.on('data', (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-4000)
  })
  t.teardown(() => {
    server.kill('SIGKILL')
  })
  const api = `http://127.0.0.1:${prometheusPort}/api/v1`
  const query = async (expr: string) => {
    const response = await fetch(`${api}/query?query=${encodeURIComponent(expr)}`)
    return (await response.json()) as { status: string; error?: string; data?: { result: unknown[] } }
  }
  await until(
    async () => (await fetch(`http://127.0.0.1:${prometheusPort}/-/ready`).catch(() => undefined))?.ok || undefined,
    `Prometheus to be ready (${log})`,
    30_000,
  )

  // What the service does meanwhile: imports with failures in two formats (uploads written to the
  // bucket, read back by the jobs), a refused request, a stream export and an async export
  // (written to the bucket) downloaded (read from it).
  const csv = `${usersCsv(20_000).trimEnd()}\nnot-an-email,Bad,reader\n`
  const imported = await importAndWait(app, { resource: 'users', file: csv, filename: 'users.csv' })
  t.equal(imported.counters.failed, 1)
  await importAndWait(app, {
    resource: 'users',
    file: await generated({ resource: 'users', format: 'ndjson', rows: 2_000, seed: 7 }),
    filename: 'users.ndjson',
  })
  t.equal((await app.inject({ url: '/api/v1/imports/00000000-0000-4000-8000-000000000000' })).statusCode, 404)
  t.equal((await app.inject({ url: '/api/v1/exports/users/stream?format=csv' })).statusCode, 200)
  const started = await app.inject({ method: 'POST', url: '/api/v1/exports', payload: { resource: 'users' } })
  const exportId = started.json<{ id: string }>().id
  await until(async () => {
    const job = (await app.inject({ url: `/api/v1/exports/${exportId}` })).json<{ done: boolean }>()
    return job.done || undefined
  }, 'the async export to finish')
  t.equal((await app.inject({ url: `/api/v1/exports/${exportId}/download` })).statusCode, 200)

  // Enough scrapes after all of it for rates over a minute, and a round of the rules.
  await until(
    async () => {
      const result = await query('count_over_time(up{job="bulk-io"}[1m])')
      const samples = Number((result.data?.result[0] as { value?: [number, string] } | undefined)?.value?.[1] ?? 0)
      return samples >= 8 || undefined
    },
    `eight scrapes of the service (${log})`,
    60_000,
  )
  await new Promise((resolve) => setTimeout(resolve, 3_000))

  // The store's series carry what it did, not only the zeros they start at.
  const values = async (expr: string) =>
    Object.fromEntries(
      (((await query(expr)).data?.result ?? []) as { metric: Record<string, string>; value: [number, string] }[]).map(
        (series) => [series.metric.operation, Number(series.value[1])],
      ),
    )
  const requests = await values('sum by (operation) (bulkio_store_operations_total{store="s3", outcome="ok"})')
  const bytes = await values('sum by (operation) (bulkio_store_bytes_total{store="s3"})')
  for (const operation of ['write', 'read', 'stat']) {
    t.ok((requests[operation] ?? 0) > 0, `store ${operation} requests: ${requests[operation]}`)
  }
  for (const operation of ['write', 'read']) {
    t.ok((bytes[operation] ?? 0) > 0, `store bytes ${operation}: ${bytes[operation]}`)
  }

  const dashboard = JSON.parse(
    await readFile(path.join(root, 'grafana', 'dashboards', 'bulk-io.json'), 'utf8'),
  ) as Dashboard
  const panels = dashboard.panels.filter((panel) => panel.type !== 'row')
  t.ok(panels.length >= 19, `${panels.length} panels`)
  t.ok(
    panels.some((panel) =>
      panel.targets?.some((target) => target.expr.includes('bulkio_store_operation_seconds_bucket')),
    ),
    'the object-store panels are there',
  )
  for (const panel of panels) {
    for (const target of panel.targets ?? []) {
      const result = await query(withGrafanaVariables(target.expr))
      t.equal(result.status, 'success', `${panel.title}: ${target.expr} parses ${result.error ?? ''}`)
      t.ok((result.data?.result.length ?? 0) > 0, `${panel.title}: ${target.expr} returns series`)
    }
  }

  const rules = parse(await readFile(path.join(root, 'prometheus', 'rules.yml'), 'utf8')) as Rules
  const all = rules.groups.flatMap((group) => group.rules)
  t.ok(all.some((rule) => rule.alert) && all.some((rule) => rule.record), 'alert and recording rules')
  for (const rule of all) {
    const expr = rule.alert ? asMeasure(rule.expr.trim()) : rule.expr.trim()
    const result = await query(expr)
    const name = rule.alert ?? rule.record
    t.equal(result.status, 'success', `${name} parses ${result.error ?? ''}`)
    t.ok((result.data?.result.length ?? 0) > 0, `${name} returns series: ${expr}`)
  }
})
