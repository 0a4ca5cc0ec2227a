import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { S3Client } from '@aws-sdk/client-s3'

// A real S3-compatible server for the tests of object storage: OpenStack Swift with its s3api
// middleware (Debian packages swift-proxy, swift-object, swift-container, swift-account,
// memcached; .ci/run installs them). It checks SigV4 signatures, presigned URLs, multipart
// uploads and ranged reads as S3 does, which no server on npm does. Each call starts its own: a
// scratch directory, free ports, one device and one replica, and stops it all afterwards.

const run = promisify(execFile)

/** A client of the server with its test account: path-style, and no checksum Swift refuses. */
export function s3ClientOf(server: S3Server, options: { maxAttempts?: number } = {}): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    // Swift refuses the SDK's default aws-chunked bodies with trailing checksums.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...options,
  })
}

export interface S3Server {
  /** The S3 endpoint (path-style addressing). */
  endpoint: string
  region: string
  accessKeyId: string
  secretAccessKey: string
  /** Kills the S3 endpoint (the proxy) at once: the store goes away, its data stays. */
  halt(): Promise<void>
  /** Starts the endpoint again on the same port, and waits until it answers. */
  resume(): Promise<void>
  stop(): Promise<void>
}

/** Swift's packages, as `apt-get install` names them. */
export const SWIFT_PACKAGES = 'swift-proxy swift-object swift-container swift-account memcached python3-swift'

/** The S3 credentials of the tempauth user the server is given (Swift account `test`, user `tester`). */
const ACCESS_KEY_ID = 'test:tester'
const SECRET_ACCESS_KEY = 'testing'
const REGION = 'us-east-1'

const RINGS = ['account', 'container', 'object'] as const

// The proxy's middleware, in Swift's documented order; s3api before tempauth, which checks the keys.
const PROXY_PIPELINE = [
  'catch_errors',
  'gatekeeper',
  'healthcheck',
  'proxy-logging',
  'cache',
  'listing_formats',
  'bulk',
  'tempurl',
  's3api',
  'tempauth',
  'copy',
  'slo',
  'dlo',
  'versioned_writes',
  'symlink',
  'proxy-logging',
  'proxy-server',
]

// Each ring: 2^6 partitions, one replica, one device (d1 on the ring's port), written where named.
const BUILD_RINGS = `
import sys
from swift.common.ring import RingBuilder
arguments = sys.argv[1:]
for target, port in zip(arguments[::2], arguments[1::2]):
    builder = RingBuilder(6, 1, 1)
    builder.add_dev({'region': 1, 'zone': 1, 'ip': '127.0.0.1', 'port': int(port), 'device': 'd1', 'weight': 100})
    builder.rebalance()
    builder.get_ring().save(target)
`

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise((resolve) => server.close(resolve))
  if (address === null || typeof address === 'string') throw new Error('no free port')
  return address.port
}

function ini(sections: Record<string, Record<string, string | number>>): string {
  return Object.entries(sections)
    .map(
      ([name, values]) =>
        `[${name}]\n${Object.entries(values)
          .map(([key, value]) => `${key} = ${value}`)
          .join('\n')}\n`,
    )
    .join('\n')
}

/**
 * Whether Swift serves: its proxy answers, and behind it the account and container servers (the
 * proxy's health check answers before they listen; a request then gets a 503). A container of
 * the test account is created and deleted through Swift's own API, with tempauth's token.
 * @returns true, or what the probe met instead (for the message when Swift never serves).
 */
async function serving(endpoint: string): Promise<true | string> {
  try {
    const auth = await fetch(`${endpoint}/auth/v1.0`, {
      headers: { 'x-auth-user': ACCESS_KEY_ID, 'x-auth-key': SECRET_ACCESS_KEY },
    })
    const storage = auth.headers.get('x-storage-url')
    const token = auth.headers.get('x-auth-token')
    if (!auth.ok || !storage || !token) return `the token request answered ${auth.status}`
    const probe = `${storage}/readiness-probe`
    const created = await fetch(probe, { method: 'PUT', headers: { 'x-auth-token': token } })
    if (created.status !== 201 && created.status !== 202) return `a container's creation answered ${created.status}`
    await fetch(probe, { method: 'DELETE', headers: { 'x-auth-token': token } })
    return true
  } catch (error) {
    return `${error}${error instanceof Error && error.cause ? ` (${error.cause})` : ''}`
  }
}

/** How long Swift may take to serve: seconds when idle, much longer when every core is taken (within tap's 180 s per file). */
const START_TIMEOUT_MS = 120_000

/**
 * Starts Swift (three storage servers, the proxy with s3api, memcached for its tokens) and waits
 * until it serves (a few seconds).
 * @throws when Swift is not installed, or does not serve within START_TIMEOUT_MS (its logs in the message).
 */
export async function startS3Server(): Promise<S3Server> {
  const directory = await mkdtemp(path.join(tmpdir(), 'bulk-io-swift-'))
  const processes: ChildProcess[] = []
  const stop = async () => {
    for (const child of processes) if (child.exitCode === null) child.kill('SIGTERM')
    await Promise.all(
      processes.map((child) =>
        child.exitCode !== null || child.signalCode !== null
          ? undefined
          : new Promise((resolve) => child.once('exit', resolve)),
      ),
    )
    await rm(directory, { recursive: true, force: true })
  }
  try {
    // The servers run as this user (they drop privileges to `user`): no chown of the device.
    const user = userInfo().username
    await mkdir(path.join(directory, 'node', 'd1'), { recursive: true })
    const ports = { memcached: await freePort(), proxy: await freePort() } as Record<string, number>
    for (const ring of RINGS) ports[ring] = await freePort()
    // One Python process writes the three rings (swift-ring-builder's nine runs took ~4 s of CPU,
    // which a busy test machine stretched much further). Debian's Swift is /usr/bin/python3's.
    await run('/usr/bin/python3', [
      '-c',
      BUILD_RINGS,
      ...RINGS.flatMap((ring) => [path.join(directory, `${ring}.ring.gz`), String(ports[ring])]),
    ]).catch((error) => {
      throw new Error(`Swift's rings could not be built (apt-get install ${SWIFT_PACKAGES}): ${error.message}`)
    })
    for (const ring of RINGS) {
      const port = ports[ring] as number
      const defaults = {
        devices: path.join(directory, 'node'),
        mount_check: 'false',
        bind_ip: '127.0.0.1',
        bind_port: port,
        workers: 1,
        swift_dir: directory,
        user,
        log_level: 'WARNING',
      }
      await writeFile(
        path.join(directory, `${ring}-server.conf`),
        ini({
          DEFAULT: defaults,
          'pipeline:main': { pipeline: `${ring}-server` },
          [`app:${ring}-server`]: { use: `egg:swift#${ring}` },
        }),
      )
    }
    const filters: Record<string, Record<string, string | number>> = {}
    for (const name of new Set(PROXY_PIPELINE.slice(0, -1))) {
      filters[`filter:${name}`] = { use: `egg:swift#${name.replace('-', '_')}` }
    }
    filters['filter:tempauth'] = { use: 'egg:swift#tempauth', user_test_tester: 'testing .admin' }
    filters['filter:cache'] = { use: 'egg:swift#memcache', memcache_servers: `127.0.0.1:${ports.memcached}` }
    filters['filter:s3api'] = { use: 'egg:swift#s3api', location: REGION }
    await writeFile(
      path.join(directory, 'proxy-server.conf'),
      ini({
        DEFAULT: {
          bind_ip: '127.0.0.1',
          bind_port: ports.proxy as number,
          // One process, no forked worker: halt() kills the very process that holds the port.
          workers: 0,
          swift_dir: directory,
          user,
          log_level: 'WARNING',
        },
        'pipeline:main': { pipeline: PROXY_PIPELINE.join(' ') },
        // A busy test machine (every core taken) must not turn slow answers into 503s.
        'app:proxy-server': {
          use: 'egg:swift#proxy',
          account_autocreate: 'true',
          conn_timeout: 5,
          node_timeout: 60,
          recoverable_node_timeout: 60,
        },
        ...filters,
      }),
    )

    const output = new Map<string, Buffer[]>()
    const start = (name: string, command: string, args: string[]) => {
      const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
      const chunks: Buffer[] = []
      output.set(name, chunks)
      const keep = (chunk: Buffer) => {
        chunks.push(chunk)
        if (chunks.length > 100) chunks.shift() // the latest lines are the ones that tell
      }
      child.stdout?.on('data', keep)
      child.stderr?.on('data', keep)
      child.on('error', (error) => chunks.push(Buffer.from(String(error)))) // not installed
      processes.push(child)
      return child
    }
    const memcachedArgs = ['-l', '127.0.0.1', '-p', String(ports.memcached), '-U', '0', '-m', '64']
    start('memcached', 'memcached', user === 'root' ? [...memcachedArgs, '-u', 'nobody'] : memcachedArgs)
    for (const ring of RINGS) {
      // --verbose: warnings and errors on the console, for the message when Swift does not serve.
      start(ring, `swift-${ring}-server`, [path.join(directory, `${ring}-server.conf`), '--verbose'])
    }
    const startProxy = () =>
      start('proxy', 'swift-proxy-server', [path.join(directory, 'proxy-server.conf'), '--verbose'])
    let proxy = startProxy()

    const endpoint = `http://127.0.0.1:${ports.proxy}`
    const healthy = async () => {
      const began = Date.now()
      for (;;) {
        const answer = await serving(endpoint)
        if (answer === true) break
        const ended = processes.find((child) => child.exitCode !== null || child.signalCode !== null)
        if (ended || Date.now() - began > START_TIMEOUT_MS) {
          const logs = [...output].map(([name, chunks]) => `${name}: ${Buffer.concat(chunks).toString().slice(-2000)}`)
          const why = ended ? `${ended.spawnfile} exited` : `it did not serve within ${START_TIMEOUT_MS / 1000} s`
          throw new Error(
            `Swift did not start (apt-get install ${SWIFT_PACKAGES}): ${why}; last probe: ${answer}\n${logs.join('\n')}`,
          )
        }
        await sleep(200)
      }
    }
    await healthy()
    const halt = async () => {
      if (proxy.exitCode !== null || proxy.signalCode !== null) return
      const exited = new Promise((resolve) => proxy.once('exit', resolve))
      proxy.kill('SIGKILL')
      await exited
      processes.splice(processes.indexOf(proxy), 1)
    }
    const resume = async () => {
      proxy = startProxy()
      await healthy()
    }
    return {
      endpoint,
      region: REGION,
      accessKeyId: ACCESS_KEY_ID,
      secretAccessKey: SECRET_ACCESS_KEY,
      halt,
      resume,
      stop,
    }
  } catch (error) {
    await stop()
    throw error
  }
}
