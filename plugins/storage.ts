import { constants } from 'node:fs'
import { access, mkdir } from 'node:fs/promises'
import path from 'node:path'
import fp from 'fastify-plugin'
import { storeMetrics } from '../app/storage/metrics.ts'
import { StoreError, type StoreObserver } from '../app/storage/object-store.ts'
import { openStores, type Stores, storeSettings } from '../app/storage/stores.ts'

export interface Storage extends Stores {
  /** Absolute IMPORT_DIR: uploaded files (fs), temporary files. */
  importDir: string
  /** Absolute EXPORT_DIR: finished export files (fs). */
  exportDir: string
  /**
   * Whether the store answers: a write, read and delete of a probe object, at most every
   * STORE_CHECK_INTERVAL_MS (the result in between is the last one). /ready uses it.
   */
  health(): Promise<{ ok: true } | { ok: false; reason: string }>
  /** Feeds the store metrics (the job thread's stores report through it). */
  observe: StoreObserver
}

declare module 'fastify' {
  interface FastifyInstance {
    storage: Storage
  }
}

/** How long a store check's answer stands. */
const STORE_CHECK_INTERVAL_MS = 5_000

async function writableDirectory(key: string, directory: string): Promise<string> {
  const absolute = path.resolve(directory)
  try {
    await mkdir(absolute, { recursive: true })
    await access(absolute, constants.W_OK)
  } catch (error) {
    throw new Error(`${key}=${directory} is not a writable directory: ${(error as Error).message}`)
  }
  return absolute
}

/**
 * The stores (app/storage/): the file directories, created at start-up, and with STORAGE=s3 the
 * bucket, which must take a write, a read and a delete before the service starts. A wrong path or
 * bucket fails the start with what failed, not the first job.
 */
export default fp(
  async (app) => {
    const { config } = app
    const importDir = await writableDirectory('IMPORT_DIR', config.IMPORT_DIR)
    const exportDir = await writableDirectory('EXPORT_DIR', config.EXPORT_DIR)
    const observe = storeMetrics(app.metrics.client, config.STORAGE)
    const stores = openStores(storeSettings(config, importDir, exportDir), observe)
    if (config.STORAGE === 's3') {
      try {
        await stores.imports.check()
      } catch (error) {
        stores.close()
        const where = `s3://${config.S3_BUCKET}/${config.S3_PREFIX}`
        const endpoint = config.S3_ENDPOINT || `AWS S3 in ${config.S3_REGION}`
        throw new Error(
          `STORAGE=s3: the service cannot write, read and delete objects under ${where} at ${endpoint}: ${storeProblem(error)}`,
          { cause: error },
        )
      }
    }
    let last: { at: number; result: Promise<{ ok: true } | { ok: false; reason: string }> } | undefined
    const health = () => {
      if (last && Date.now() - last.at < STORE_CHECK_INTERVAL_MS) return last.result
      const timeout = AbortSignal.timeout(config.HEALTH_TIMEOUT_MS)
      const checked = Promise.race([
        stores.imports.check(),
        new Promise<never>((_, reject) =>
          timeout.addEventListener('abort', () => reject(new Error('no answer within HEALTH_TIMEOUT_MS'))),
        ),
      ]).then(
        () => ({ ok: true }) as const,
        (error: unknown) => ({ ok: false, reason: storeProblem(error) }) as const,
      )
      last = { at: Date.now(), result: checked }
      return checked
    }
    app.decorate('storage', { ...stores, importDir, exportDir, health, observe })
    app.addHook('onClose', async () => stores.close())
  },
  { name: 'storage', dependencies: ['config', 'metrics'] },
)

/** What a failed store check says, in a line. */
export function storeProblem(error: unknown): string {
  if (!(error instanceof StoreError)) return (error as Error)?.message ?? String(error)
  const advice: Record<StoreError['kind'], string> = {
    no_bucket: 'the bucket does not exist (create it, or fix S3_BUCKET)',
    denied: 'access denied (check the credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile or a role)',
    not_found: 'an object just written cannot be found',
    unavailable: 'the store does not answer (check S3_ENDPOINT and the network)',
    failed: 'the store refused the request',
  }
  return `${advice[error.kind]}: ${error.message}`
}
