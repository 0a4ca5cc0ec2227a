/**
 * The object store of the import benchmark's STORAGE=s3 runs: OpenStack Swift with its S3 API
 * (test/setup/s3-server.ts, the server the tests use), started once for the whole benchmark, a
 * bucket created in it, and stopped at the end. Each s3 run's service gets the S3_* settings and
 * credentials of it, and a key prefix of its own that is emptied after the run (as the fs runs
 * remove their import directory). Swift runs on the same machine as the service, PostgreSQL and
 * the benchmark: its CPU time (every process of it) is read from /proc around each phase, so that
 * a slower s3 import says where the time went.
 */
import { readdir, readFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { CreateBucketCommand, DeleteObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3'
import { type S3Server, s3ClientOf, startS3Server } from '../test/setup/s3-server.ts'
import { fail, onCleanup, processCpuSeconds } from './harness.ts'

export type Storage = 'fs' | 's3'
export const storages: readonly Storage[] = ['fs', 's3']

const BUCKET = 'bulk-io-bench'

export class BenchObjectStore {
  private readonly server: S3Server
  private readonly client: S3Client
  /** Swift's processes, found once it answered (they do not change while it runs). */
  private readonly pids: number[]
  private runs = 0

  private constructor(server: S3Server, client: S3Client, pids: number[]) {
    this.server = server
    this.client = client
    this.pids = pids
  }

  /** Starts Swift (a few seconds), creates the bucket; stopped by the benchmark's clean-up. */
  static async start(): Promise<BenchObjectStore> {
    let server: S3Server
    try {
      server = await startS3Server()
    } catch (error) {
      fail(`STORAGE=s3 needs OpenStack Swift: ${(error as Error).message}`)
    }
    const client = s3ClientOf(server)
    onCleanup(async () => {
      client.destroy()
      await server.stop()
    })
    // A Swift just started on a busy machine may answer 503 (`Please reduce your request rate`)
    // while its account and container servers catch up: the bucket is tried again for 30 s.
    for (let attempt = 1; ; attempt++) {
      try {
        await client.send(new CreateBucketCommand({ Bucket: BUCKET }))
        break
      } catch (error) {
        if (attempt >= 15) fail(`Swift does not create the bucket ${BUCKET}: ${(error as Error).message}`)
        await sleep(2_000)
      }
    }
    const pids = await swiftProcesses()
    if (pids.length === 0) fail('Swift answers, but none of its processes is a child of the benchmark')
    return new BenchObjectStore(server, client, pids)
  }

  get endpoint(): string {
    return this.server.endpoint
  }

  /** The environment of a service run on the bucket: a key prefix of its own (`run-N/`). */
  serviceEnvironment(): { env: Record<string, string>; prefix: string } {
    const prefix = `run-${++this.runs}/`
    return {
      prefix,
      env: {
        STORAGE: 's3',
        S3_ENDPOINT: this.server.endpoint,
        S3_REGION: this.server.region,
        S3_BUCKET: BUCKET,
        S3_PREFIX: prefix,
        S3_FORCE_PATH_STYLE: 'true',
        AWS_ACCESS_KEY_ID: this.server.accessKeyId,
        AWS_SECRET_ACCESS_KEY: this.server.secretAccessKey,
      },
    }
  }

  /** Removes every object under a prefix (a run's uploads, kept by the service for failed records). */
  async empty(prefix: string): Promise<void> {
    let token: string | undefined
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix, ContinuationToken: token }),
      )
      // One DELETE per object: Swift wants a Content-MD5 on a multi-object delete, which the client
      // (checksums when required) does not send. A run leaves two objects.
      for (const object of page.Contents ?? []) {
        if (object.Key) await this.client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: object.Key }))
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (token)
  }

  /** CPU seconds (user + system) of Swift so far: its proxy, storage servers and memcached. */
  async cpuSeconds(): Promise<number> {
    let total = 0
    for (const pid of this.pids) total += (await processCpuSeconds(pid)) ?? 0
    return total
  }
}

/**
 * The processes of Swift this benchmark started: descendants of this process whose command line
 * is a Swift server or memcached (the storage servers fork their workers).
 */
async function swiftProcesses(): Promise<number[]> {
  const parents = new Map<number, number>()
  const commands = new Map<number, string>()
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => undefined)
    if (stat === undefined) continue
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    parents.set(Number(name), Number(fields[1]))
    commands.set(Number(name), await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => ''))
  }
  const descends = (pid: number): boolean => {
    for (let at = parents.get(pid); at !== undefined && at > 1; at = parents.get(at)) {
      if (at === process.pid) return true
    }
    return false
  }
  return [...commands]
    .filter(([pid, command]) => /swift-[a-z]+-server|memcached/.test(command) && descends(pid))
    .map(([pid]) => pid)
}
