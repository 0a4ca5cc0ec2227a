import { execFile, spawnSync } from 'node:child_process'
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { isDeepStrictEqual, promisify } from 'node:util'
import t, { type Test } from 'tap'
import { parse, parseAllDocuments } from 'yaml'
import { loadConfig } from '../../plugins/config.ts'
import { ConfigSchema } from '../../schemas/config.ts'
import { root } from '../helper.ts'

// deploy/kubernetes checked without a cluster: the right kinds, probes on paths the service
// serves and the port it listens on, only configuration keys it knows, grace periods that cover
// its shutdown, and the two roles of the one image. The overlay deploy/kubernetes-s3 (STORAGE=s3)
// is rendered here by applying its patches to the base (and by `kubectl kustomize` too where
// kubectl is installed): the same resources but the files volume, and the bucket's settings.

const folder = path.join(root, 'deploy', 'kubernetes')
const s3Folder = path.join(root, 'deploy', 'kubernetes-s3')

interface Container {
  ports: { name: string; containerPort: number }[]
  env?: { name: string; value: string }[]
  envFrom: ({ configMapRef: { name: string } } | { secretRef: { name: string } })[]
  startupProbe: { httpGet: { path: string; port: string } }
  readinessProbe: { httpGet: { path: string; port: string } }
  livenessProbe: { httpGet: { path: string; port: string } }
  lifecycle: { preStop: { sleep: { seconds: number } } }
  resources: { requests: { memory: string; cpu: string }; limits: { memory: string } }
  volumeMounts: { name: string; mountPath: string }[]
}
interface Manifest {
  kind: string
  metadata: { name: string; labels?: Record<string, string> }
  spec?: Record<string, unknown>
  data?: Record<string, string>
  stringData?: Record<string, string>
}

async function manifests(): Promise<{ kustomization: Record<string, unknown>; resources: Manifest[] }> {
  const kustomization = parse(await readFile(path.join(folder, 'kustomization.yaml'), 'utf8'))
  const resources: Manifest[] = []
  for (const file of kustomization.resources as string[]) {
    for (const document of parseAllDocuments(await readFile(path.join(folder, file), 'utf8'))) {
      t.same(document.errors, [], `${file} is valid YAML`)
      resources.push(document.toJS() as Manifest)
    }
  }
  return { kustomization, resources }
}

const mebibytes = (quantity: string) => {
  const match = /^(\d+)(Mi|Gi)$/.exec(quantity)
  if (!match) throw new Error(`unexpected quantity ${quantity}`)
  return Number(match[1]) * (match[2] === 'Gi' ? 1024 : 1)
}

t.test('the kustomization lists every manifest, of the kinds a deployment needs', async (t) => {
  const { kustomization, resources } = await manifests()
  const files = (await readdir(folder)).filter((file) => file !== 'kustomization.yaml' && file.endsWith('.yaml'))
  t.same([...(kustomization.resources as string[])].sort(), files.sort(), 'every file is a resource')
  t.same(resources.map((resource) => `${resource.kind}/${resource.metadata.name}`).sort(), [
    'ConfigMap/bulk-io',
    'Deployment/bulk-io-api',
    'Deployment/bulk-io-jobs',
    'PersistentVolumeClaim/bulk-io-files',
    'PodDisruptionBudget/bulk-io-api',
    'Secret/bulk-io',
    'Service/bulk-io',
    'Service/bulk-io-jobs',
    'ServiceMonitor/bulk-io',
  ])
})

t.test('both Deployments: probes, port, configuration keys, shutdown, files, roles', async (t) => {
  const { resources } = await manifests()
  const openapi = parse(await readFile(path.join(root, 'openapi.yaml'), 'utf8')) as { paths: Record<string, unknown> }
  const known = new Set(Object.keys(ConfigSchema.properties))
  const configMap = resources.find((resource) => resource.kind === 'ConfigMap') as Manifest
  const secret = resources.find((resource) => resource.kind === 'Secret') as Manifest
  const settings = { ...configMap.data, ...secret.stringData }
  for (const key of Object.keys(settings)) t.ok(known.has(key), `${key} is a configuration key`)
  const pvc = resources.find((resource) => resource.kind === 'PersistentVolumeClaim') as Manifest
  t.same((pvc.spec as { accessModes: string[] }).accessModes, ['ReadWriteMany'], 'the files volume is shared')

  const roles: Record<string, string> = { 'bulk-io-api': 'false', 'bulk-io-jobs': 'true' }
  for (const deployment of resources.filter((resource) => resource.kind === 'Deployment')) {
    const name = deployment.metadata.name
    const pod = (deployment.spec as { template: { spec: Record<string, unknown> } }).template.spec as {
      terminationGracePeriodSeconds: number
      containers: Container[]
      volumes: { name: string; persistentVolumeClaim: { claimName: string } }[]
      securityContext: { runAsNonRoot: boolean }
    }
    const [container] = pod.containers
    if (!container) throw new Error(`${name} has no container`)
    t.equal(container.env?.find((variable) => variable.name === 'RUN_JOBS')?.value, roles[name], `${name}: RUN_JOBS`)
    for (const variable of container.env ?? []) t.ok(known.has(variable.name), `${name}: ${variable.name} is known`)
    t.same(
      container.envFrom.map((source) => ('configMapRef' in source ? source.configMapRef.name : source.secretRef.name)),
      ['bulk-io', 'bulk-io'],
    )

    const http = container.ports.find((port) => port.name === 'http')
    t.equal(http?.containerPort, Number(settings.HTTP_PORT), `${name}: the container port is HTTP_PORT`)
    for (const [probe, expected] of [
      ['startupProbe', '/ready'],
      ['readinessProbe', '/ready'],
      ['livenessProbe', '/live'],
    ] as const) {
      const { path: probePath, port } = container[probe].httpGet
      t.equal(probePath, expected, `${name}: ${probe} on ${expected}`)
      t.ok(openapi.paths[probePath], `${name}: ${probePath} is a path of openapi.yaml`)
      t.equal(port, 'http')
    }

    const preStop = container.lifecycle.preStop.sleep.seconds
    const shutdown = (Number(settings.SHUTDOWN_DRAIN_DELAY_MS) + Number(settings.SHUTDOWN_TIMEOUT_MS)) / 1000
    t.ok(
      pod.terminationGracePeriodSeconds > preStop + shutdown,
      `${name}: the grace period (${pod.terminationGracePeriodSeconds} s) covers preStop (${preStop} s), the drain and the shutdown timeout (${shutdown} s)`,
    )
    t.ok(pod.securityContext.runAsNonRoot, `${name}: not root`)

    const mount = container.volumeMounts.find((volume) => volume.name === 'files')
    const volume = pod.volumes.find((candidate) => candidate.name === 'files')
    t.equal(volume?.persistentVolumeClaim.claimName, pvc.metadata.name)
    for (const key of ['IMPORT_DIR', 'EXPORT_DIR'] as const) {
      t.ok(settings[key]?.startsWith(`${mount?.mountPath}/`), `${name}: ${key} is on the shared volume`)
    }
    t.ok(
      mebibytes(container.resources.limits.memory) >= mebibytes(container.resources.requests.memory),
      `${name}: the memory limit is at least the request`,
    )
  }
  const jobs = resources.find((resource) => resource.metadata.name === 'bulk-io-jobs' && resource.kind === 'Deployment')
  const jobsSpec = jobs?.spec as { template: { spec: { containers: Container[] } } } | undefined
  const jobsLimit = jobsSpec?.template.spec.containers[0]?.resources.limits.memory
  t.ok(mebibytes(jobsLimit ?? '0Mi') >= 300, 'the job runners may use more than the 275 MB measured during a 1M import')
})

t.test('the Services select the pods, and the ServiceMonitor scrapes /metrics on their port', async (t) => {
  const { resources, kustomization } = await manifests()
  const commonLabels = (kustomization.labels as { pairs: Record<string, string> }[])[0]?.pairs ?? {}
  const podLabels = resources
    .filter((resource) => resource.kind === 'Deployment')
    .map(
      (deployment) =>
        (deployment.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels,
    )
  for (const service of resources.filter((resource) => resource.kind === 'Service')) {
    const selector = (service.spec as { selector: Record<string, string> }).selector
    t.ok(
      podLabels.some((labels) => Object.entries(selector).every(([key, value]) => labels[key] === value)),
      `Service ${service.metadata.name} selects pods`,
    )
    const ports = (service.spec as { ports: { name: string; targetPort: string }[] }).ports
    t.same(
      ports.map((port) => [port.name, port.targetPort]),
      [['http', 'http']],
    )
  }
  const monitor = resources.find((resource) => resource.kind === 'ServiceMonitor') as Manifest
  const spec = monitor.spec as {
    selector: { matchLabels: Record<string, string> }
    endpoints: { port: string; path: string }[]
  }
  t.same(spec.selector.matchLabels, commonLabels, 'it selects the Services by the labels kustomize gives them all')
  t.same(
    spec.endpoints.map((endpoint) => [endpoint.port, endpoint.path]),
    [['http', '/metrics']],
  )
  const pdb = resources.find((resource) => resource.kind === 'PodDisruptionBudget') as Manifest
  t.equal((pdb.spec as { minAvailable: number }).minAvailable, 1)
})

// The overlay deploy/kubernetes-s3, rendered without kustomize: its patches are of two kinds only,
// strategic merges of maps (a ConfigMap's data, `$patch: delete` of a resource) and JSON patches
// (RFC 6902) of the Deployments; anything else throws rather than be applied differently.

interface Kustomization {
  resources: string[]
  patches: { path: string; target?: { kind: string; name?: string } }[]
}
type JsonPatch = { op: 'test' | 'remove' | 'add' | 'replace'; path: string; value?: unknown }[]
type Json = Record<string, unknown>

function applyJsonPatch(document: Json, operations: JsonPatch): void {
  for (const { op, path: pointer, value } of operations) {
    const keys = pointer
      .split('/')
      .slice(1)
      .map((key) => key.replaceAll('~1', '/').replaceAll('~0', '~'))
    const last = keys.pop() as string
    let parent: unknown = document
    for (const key of keys) parent = (parent as Json)[key]
    if (typeof parent !== 'object' || parent === null) throw new Error(`${op} ${pointer}: no such parent`)
    const container = parent as Json
    if (op === 'test') {
      if (!isDeepStrictEqual(container[last], value)) throw new Error(`test ${pointer} failed`)
    } else if (op === 'remove' || op === 'replace') {
      if (!(last in container)) throw new Error(`${op} ${pointer}: nothing there`)
      if (op === 'replace') container[last] = value
      else if (Array.isArray(container)) container.splice(Number(last), 1)
      else delete container[last]
    } else if (op === 'add') {
      if (Array.isArray(container)) container.splice(last === '-' ? container.length : Number(last), 0, value)
      else container[last] = value
    } else throw new Error(`unsupported JSON patch operation ${op}`)
  }
}

function mergeMaps(target: Json, patch: Json, at: string): void {
  for (const [key, value] of Object.entries(patch)) {
    if (Array.isArray(value)) throw new Error(`${at}.${key}: lists merge by key in kustomize, not here`)
    if (typeof value === 'object' && value !== null) {
      target[key] ??= {}
      mergeMaps(target[key] as Json, value as Json, `${at}.${key}`)
    } else target[key] = value
  }
}

async function renderS3Overlay(): Promise<{ kustomization: Kustomization; resources: Manifest[] }> {
  const kustomization = parse(await readFile(path.join(s3Folder, 'kustomization.yaml'), 'utf8')) as Kustomization
  if (kustomization.resources.length !== 1 || path.resolve(s3Folder, kustomization.resources[0] ?? '') !== folder)
    throw new Error('the overlay is expected to have the base as its one resource')
  let resources = structuredClone((await manifests()).resources)
  for (const { path: file, target } of kustomization.patches) {
    const patch = parse(await readFile(path.join(s3Folder, file), 'utf8'))
    if (Array.isArray(patch)) {
      if (!target || Object.keys(target).some((key) => key !== 'kind' && key !== 'name'))
        throw new Error(`${file}: a JSON patch needs a target of kind (and name)`)
      const targets = resources.filter(
        (resource) =>
          resource.kind === target.kind &&
          (!target.name || new RegExp(`^${target.name}$`).test(resource.metadata.name)),
      )
      if (targets.length === 0) throw new Error(`${file}: its target matches nothing`)
      for (const resource of targets) applyJsonPatch(resource as unknown as Json, patch as JsonPatch)
      continue
    }
    if (target) throw new Error(`${file}: a strategic merge patch with a target is not rendered here`)
    const { $patch: directive, ...fields } = patch as Manifest & { $patch?: string }
    const index = resources.findIndex(
      (resource) => resource.kind === fields.kind && resource.metadata.name === fields.metadata.name,
    )
    if (index < 0) throw new Error(`${file}: no ${fields.kind}/${fields.metadata.name} in the base`)
    if (directive === 'delete') resources = resources.filter((_, i) => i !== index)
    else if (directive === undefined) mergeMaps(resources[index] as unknown as Json, fields as unknown as Json, file)
    else throw new Error(`${file}: unsupported $patch: ${directive}`)
  }
  return { kustomization, resources }
}

/** The overlay's resources: the base's but the files claim, no volume, and STORAGE=s3. */
async function checkS3Overlay(t: Test, resources: Manifest[]): Promise<void> {
  const base = (await manifests()).resources
  t.same(
    resources.map((resource) => `${resource.kind}/${resource.metadata.name}`).sort(),
    base
      .filter((resource) => resource.kind !== 'PersistentVolumeClaim')
      .map((resource) => `${resource.kind}/${resource.metadata.name}`)
      .sort(),
    "the base's resources but its PersistentVolumeClaim",
  )
  const known = new Set(Object.keys(ConfigSchema.properties))
  const configMap = resources.find((resource) => resource.kind === 'ConfigMap') as Manifest
  const secret = resources.find((resource) => resource.kind === 'Secret') as Manifest
  for (const key of Object.keys(configMap.data ?? {})) t.ok(known.has(key), `${key} is a configuration key`)
  const config = loadConfig({ ...configMap.data, ...secret.stringData })
  t.equal(config.STORAGE, 's3', 'STORAGE=s3')
  t.ok(config.S3_BUCKET, 'a bucket')
  // Without a volume, IMPORT_DIR (temporary files) and EXPORT_DIR are folders the image makes for
  // its user (the service only creates them if missing: it could not under /).
  const dockerfile = await readFile(path.join(root, 'Dockerfile'), 'utf8')
  const made = /^RUN mkdir -p ([^&]+)&& chown -R node:node/m.exec(dockerfile)?.[1]?.trim().split(' ') ?? []
  for (const key of ['IMPORT_DIR', 'EXPORT_DIR'] as const) t.ok(made.includes(config[key]), `${key}: the image has it`)

  const roles: Record<string, string> = { 'bulk-io-api': 'false', 'bulk-io-jobs': 'true' }
  const deployments = resources.filter((resource) => resource.kind === 'Deployment')
  t.same(deployments.map((deployment) => deployment.metadata.name).sort(), Object.keys(roles))
  for (const deployment of deployments) {
    const name = deployment.metadata.name
    const pod = (deployment.spec as { template: { spec: Record<string, unknown> } }).template.spec as {
      containers: Container[]
      volumes?: { name: string; persistentVolumeClaim?: { claimName: string } }[]
    }
    t.notOk(
      pod.volumes?.some((volume) => volume.persistentVolumeClaim),
      `${name}: no volume refers to a claim`,
    )
    for (const container of pod.containers) {
      for (const mount of container.volumeMounts ?? [])
        t.ok(
          pod.volumes?.some((volume) => volume.name === mount.name),
          `${name}: ${mount.name} is a volume of the pod`,
        )
      t.equal(container.env?.find((variable) => variable.name === 'RUN_JOBS')?.value, roles[name], `${name}: RUN_JOBS`)
      t.same(
        container.envFrom.map((source) =>
          'configMapRef' in source ? source.configMapRef.name : source.secretRef.name,
        ),
        [configMap.metadata.name, secret.metadata.name],
        `${name}: reads the ConfigMap and the Secret`,
      )
    }
  }
}

t.test('the S3 overlay: every file a patch; the base without the files volume, and STORAGE=s3', async (t) => {
  const { kustomization, resources } = await renderS3Overlay()
  const files = (await readdir(s3Folder)).filter((file) => file !== 'kustomization.yaml')
  t.same(kustomization.patches.map((patch) => patch.path).sort(), files.sort(), 'every file is a patch')
  await checkS3Overlay(t, resources)
})

const kubectl = spawnSync('kubectl', ['version', '--client']).error === undefined
t.test('the S3 overlay as kustomize renders it', { skip: kubectl ? false : 'kubectl is not installed' }, async (t) => {
  const output = (await promisify(execFile)('kubectl', ['kustomize', s3Folder], { maxBuffer: 1 << 24 })).stdout
  const resources = parseAllDocuments(output).map((document) => document.toJS() as Manifest)
  await checkS3Overlay(t, resources)
  // kustomize's render and this file's agree on what the overlay changes.
  const { resources: rendered } = await renderS3Overlay()
  const configMaps = [resources, rendered].map((all) => all.find((resource) => resource.kind === 'ConfigMap')?.data)
  t.same(configMaps[0], configMaps[1], 'the same ConfigMap data')
  const pods = [resources, rendered].map((all) =>
    all
      .filter((resource) => resource.kind === 'Deployment')
      .map((deployment) => {
        const { containers, volumes } = (deployment.spec as { template: { spec: Record<string, unknown> } }).template
          .spec as { containers: Container[]; volumes?: unknown[] }
        return [deployment.metadata.name, volumes, containers.map((container) => container.volumeMounts)]
      }),
  )
  t.same(pods[0], pods[1], 'the same volumes and mounts')
})
