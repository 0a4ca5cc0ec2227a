import type { Config } from '../../schemas/config.ts'
import { FileStore } from './file-store.ts'
import { type ObjectStore, StoreError, type StoreObserver } from './object-store.ts'
import { type S3Settings, S3Store, s3Client } from './s3-store.ts'

/** Plain data (it crosses to the job thread): how to open the stores. */
export interface StoreSettings {
  kind: 'fs' | 's3'
  /** Absolute IMPORT_DIR and EXPORT_DIR (fs; IMPORT_DIR also holds temporary files with s3). */
  importDir: string
  exportDir: string
  /** The service's bucket; its prefix is S3_PREFIX, under which the imports' and exports' stores keep theirs. */
  s3: S3Settings
  /** S3_IMPORT_BUCKETS. */
  importBuckets: string[]
}

/** The stores of a process: the imports' (uploads, downloaded sources), the exports', and buckets imports may name. */
export interface Stores {
  readonly settings: StoreSettings
  readonly imports: ObjectStore
  readonly exports: ObjectStore
  /** The store of a `s3://bucket/key` source (the bucket must be in S3_IMPORT_BUCKETS). */
  bucket(name: string): S3Store
  /** Closes the S3 client's connections. */
  close(): void
}

export function storeSettings(config: Config, importDir: string, exportDir: string): StoreSettings {
  return {
    kind: config.STORAGE,
    importDir,
    exportDir,
    s3: {
      endpoint: config.S3_ENDPOINT,
      region: config.S3_REGION,
      bucket: config.S3_BUCKET,
      prefix: config.S3_PREFIX,
      forcePathStyle: config.S3_FORCE_PATH_STYLE,
      checksums: config.S3_CHECKSUMS,
      partBytes: config.S3_PART_BYTES,
      maxAttempts: config.S3_MAX_ATTEMPTS,
    },
    importBuckets: config.S3_IMPORT_BUCKETS ? config.S3_IMPORT_BUCKETS.split(',') : [],
  }
}

/** Opens the stores the settings name (no request is sent yet). */
export function openStores(settings: StoreSettings, observe?: StoreObserver): Stores {
  // One client for every bucket: the same credentials and endpoint (S3_IMPORT_BUCKETS too).
  let client: ReturnType<typeof s3Client> | undefined
  const s3 = (prefix: string, bucket = settings.s3.bucket) => {
    client ??= s3Client(settings.s3)
    return new S3Store(client, { ...settings.s3, bucket, prefix }, observe)
  }
  const buckets = new Map<string, S3Store>()
  if (settings.kind === 'fs') {
    return {
      settings,
      imports: new FileStore(settings.importDir),
      exports: new FileStore(settings.exportDir),
      bucket: (name) => bucketStore(name),
      close: () => client?.destroy(),
    }
  }
  if (!settings.s3.bucket) throw new StoreError('no_bucket', 'STORAGE=s3 needs S3_BUCKET: the bucket to keep files in')
  return {
    settings,
    imports: s3(`${settings.s3.prefix}imports/`),
    exports: s3(`${settings.s3.prefix}exports/`),
    bucket: (name) => bucketStore(name),
    close: () => client?.destroy(),
  }

  function bucketStore(name: string): S3Store {
    if (!settings.importBuckets.includes(name)) {
      throw new StoreError('denied', `the bucket ${name} is not one of S3_IMPORT_BUCKETS`)
    }
    let store = buckets.get(name)
    if (!store) {
      store = s3('', name)
      buckets.set(name, store)
    }
    return store
  }
}

/** A `s3://bucket/key` URL's parts, or undefined for another URL. */
export function parseS3Url(text: string): { bucket: string; key: string } | undefined {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(text)
  if (!match) return undefined
  return { bucket: match[1] as string, key: match[2] as string }
}
