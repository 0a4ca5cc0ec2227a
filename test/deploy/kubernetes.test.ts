import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import { parse, parseAllDocuments } from 'yaml'
import { ConfigSchema } from '../../schemas/config.ts'
import { root } from '../helper.ts'

// deploy/kubernetes checked without a cluster: the right kinds, probes on paths the service
// serves and the port it listens on, only configuration keys it knows, grace periods that cover
// its shutdown, and the two roles of the one image.

const folder = path.join(root, 'deploy', 'kubernetes')

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
