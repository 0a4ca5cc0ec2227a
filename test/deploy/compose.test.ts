import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import { parse } from 'yaml'
import { loadConfig } from '../../plugins/config.ts'
import { ConfigSchema } from '../../schemas/config.ts'
import { root } from '../helper.ts'

// compose.yaml checked without a Docker engine (none runs here): it parses, every file or folder
// it mounts or builds from exists, the service's environment holds only configuration keys (and
// the AWS SDK's credentials) with valid values, the service keeps its files in MinIO's bucket, and
// Prometheus scrapes the service under its compose name and port.

/** Read by the AWS SDK's credential chain, not by the service's configuration. */
const awsCredentials = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']

/**
 * The repository's top-level folders that `entry`'s modules reach, following relative imports and
 * `new URL(…)`, and the folders loaded whole (`path.join(root, 'routes')`, autoloaded).
 */
async function reachedFolders(entry: string): Promise<Set<string>> {
  const seen = new Set<string>()
  const loadedWhole = new Set<string>()
  const pending = [entry]
  while (pending.length > 0) {
    const file = pending.pop() as string
    if (seen.has(file)) continue
    seen.add(file)
    const text = await readFile(file, 'utf8')
    for (const [, target] of text.matchAll(/(?:from |import\(|new URL\()'(\.{1,2}\/[^']+\.ts)'/g)) {
      const resolved = path.resolve(path.dirname(file), target as string)
      if (existsSync(resolved)) pending.push(resolved)
    }
    for (const [, folder] of text.matchAll(/path\.join\(root, '(\w+)'\)/g)) loadedWhole.add(folder as string)
  }
  return new Set([...[...seen].map((file) => path.relative(root, file).split(path.sep)[0] as string), ...loadedWhole])
}

interface Service {
  build?: string
  image?: string
  command?: string | string[]
  entrypoint?: string | string[]
  environment?: Record<string, string>
  ports?: string[]
  volumes?: string[]
  healthcheck?: { test: string[] }
  depends_on?: Record<string, { condition: string }>
}

async function composeFile(): Promise<{ services: Record<string, Service>; volumes: Record<string, unknown> }> {
  return parse(await readFile(path.join(root, 'compose.yaml'), 'utf8'))
}

t.test('compose.yaml: files, configuration keys, ports and the scrape target agree', async (t) => {
  const compose = await composeFile()
  t.same(Object.keys(compose.services).sort(), [
    'grafana',
    'minio',
    'minio-bucket',
    'postgres',
    'prometheus',
    'service',
  ])
  for (const [name, service] of Object.entries(compose.services)) {
    if (service.build) t.ok(existsSync(path.join(root, service.build, 'Dockerfile')), `${name}: its Dockerfile exists`)
    for (const volume of service.volumes ?? []) {
      const source = volume.split(':')[0] as string
      if (source.startsWith('.')) t.ok(existsSync(path.join(root, source)), `${name}: ${source} exists`)
      else t.ok(source in compose.volumes, `${name}: the volume ${source} is declared`)
    }
  }
  const service = compose.services.service as Service
  const known = new Set([...Object.keys(ConfigSchema.properties), ...awsCredentials])
  for (const key of Object.keys(service.environment ?? {})) t.ok(known.has(key), `${key} is a configuration key`)
  t.doesNotThrow(() => loadConfig(service.environment), 'the service starts with that environment')
  const port = service.environment?.HTTP_PORT
  t.ok(service.ports?.includes(`${port}:${port}`), 'the service publishes HTTP_PORT')

  const prometheus = parse(await readFile(path.join(root, 'prometheus', 'prometheus.yml'), 'utf8')) as {
    scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[]
  }
  const targets = prometheus.scrape_configs.flatMap((config) => config.static_configs.flatMap((s) => s.targets))
  t.same(targets, [`service:${port}`], 'Prometheus scrapes the compose service on HTTP_PORT')
  t.ok(compose.services.prometheus?.ports?.includes('9090:9090'))
  t.ok(compose.services.grafana?.ports?.includes('3000:3000'))

  const datasource = parse(
    await readFile(path.join(root, 'grafana', 'provisioning', 'datasources', 'prometheus.yml'), 'utf8'),
  ) as { datasources: { url: string; uid: string }[] }
  t.equal(datasource.datasources[0]?.url, 'http://prometheus:9090', 'Grafana reads the compose Prometheus')
  const dashboard = JSON.parse(await readFile(path.join(root, 'grafana', 'dashboards', 'bulk-io.json'), 'utf8'))
  t.equal(
    dashboard.templating.list[0].current.value,
    datasource.datasources[0]?.uid,
    'the dashboard uses that data source',
  )
})

t.test('compose.yaml: the service keeps its files in the bucket of MinIO, which minio-bucket creates', async (t) => {
  const compose = await composeFile()
  const { minio, 'minio-bucket': bucket, service } = compose.services as Record<string, Service>
  if (!minio || !bucket || !service) throw new Error('a service is missing')
  const config = loadConfig(service.environment)
  t.equal(config.STORAGE, 's3')
  t.equal(config.S3_FORCE_PATH_STYLE, true, 'MinIO needs path-style addressing')
  t.notOk(service.volumes, 'the service mounts no volume: no files are shared through one')
  t.notOk('files' in compose.volumes, 'nor is one declared for them')

  // MinIO, pinned, serving /data from a volume, and healthy only once it answers.
  t.match(minio.image, /^minio\/minio:RELEASE\.\d{4}-\d\d-\d\dT[\d-]+Z$/, 'MinIO pinned to a release')
  t.equal(minio.command, 'server /data --console-address :9001')
  t.ok(
    minio.volumes?.some((volume) => /^[\w-]+:\/data$/.test(volume)),
    'its data on a named volume',
  )
  t.ok(minio.healthcheck?.test.length, 'a healthcheck')
  const endpoint = new URL(config.S3_ENDPOINT)
  t.equal(endpoint.hostname, 'minio', 'S3_ENDPOINT is the compose service')
  t.ok(minio.ports?.includes(`127.0.0.1:${endpoint.port}:${endpoint.port}`), 'on its S3 port')
  t.equal(service.environment?.AWS_ACCESS_KEY_ID, minio.environment?.MINIO_ROOT_USER, "the access key is MinIO's user")
  t.equal(service.environment?.AWS_SECRET_ACCESS_KEY, minio.environment?.MINIO_ROOT_PASSWORD, 'the secret its password')

  // The one-shot bucket service: waits for MinIO, creates S3_BUCKET (already there is fine).
  t.match(bucket.image, /^minio\/mc:RELEASE\.\d{4}-\d\d-\d\dT[\d-]+Z$/, 'mc pinned to a release')
  t.same(bucket.depends_on?.minio, { condition: 'service_healthy' }, 'it waits for MinIO')
  const script = [bucket.entrypoint ?? [], bucket.command ?? []].flat().join(' ').replaceAll('$$', '$')
  const alias = /mc alias set (\S+) (\S+) "\$MINIO_ROOT_USER" "\$MINIO_ROOT_PASSWORD"/.exec(script)
  t.equal(alias?.[2], config.S3_ENDPOINT, 'mc reaches MinIO at S3_ENDPOINT')
  t.match(script, `mc mb --ignore-existing ${alias?.[1]}/${config.S3_BUCKET}`, 'and creates S3_BUCKET')
  t.same(
    [bucket.environment?.MINIO_ROOT_USER, bucket.environment?.MINIO_ROOT_PASSWORD],
    [minio.environment?.MINIO_ROOT_USER, minio.environment?.MINIO_ROOT_PASSWORD],
    "with MinIO's credentials",
  )
  t.same(
    service.depends_on?.['minio-bucket'],
    { condition: 'service_completed_successfully' },
    'the service starts once the bucket exists',
  )
})

t.test('the Dockerfile: sources that exist, a non-root user, a healthcheck on /live', async (t) => {
  const dockerfile = await readFile(path.join(root, 'Dockerfile'), 'utf8')
  t.equal((dockerfile.match(/^FROM /gm) ?? []).length, 2, 'two stages')
  t.match(dockerfile, /^FROM node:24-/m, 'Node.js 24')
  for (const [, sources] of dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
    for (const source of (sources as string).split(' '))
      t.ok(existsSync(path.join(root, source)), `COPY ${source}: it exists`)
  }
  // Every folder of the repository that the service's modules reach (its imports, and the thread
  // modules it loads by URL) is copied: a folder added to the code but not to the image would
  // start nowhere but in a container.
  const copied = new Set(
    [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap(([, sources]) => (sources as string).split(' ')),
  )
  for (const folder of await reachedFolders(path.join(root, 'app/server.ts')))
    t.ok(copied.has(folder), `the image copies ${folder}/, which the service loads`)
  t.match(dockerfile, /^USER node$/m, 'the service runs as the unprivileged node user')
  const openapi = parse(await readFile(path.join(root, 'openapi.yaml'), 'utf8')) as { paths: Record<string, unknown> }
  const health = /^HEALTHCHECK[\s\S]*?fetch\('http:\/\/127\.0\.0\.1:(\d+)(\/\w+)'\)/m.exec(dockerfile)
  t.equal(health?.[2], '/live')
  t.ok(openapi.paths[health?.[2] ?? ''], 'the healthcheck path is one the service serves')
  t.match(dockerfile, new RegExp(`HTTP_PORT=${health?.[1]}`), 'on the port the image sets')
})
