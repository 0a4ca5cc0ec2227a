import type { FastifyInstance } from 'fastify'
import type { StoreErrorKind, StoreObserver, StoreOperation } from './object-store.ts'

const operations: StoreOperation[] = ['write', 'read', 'stat', 'delete', 'list', 'presign', 'multipart']

/**
 * The store's metrics (app/storage/): requests by operation and outcome (`ok` or the StoreError
 * kind), their latency, and bytes written and read. Every `ok` and `unavailable` series starts at
 * zero so that an alert on errors has data before the first one.
 */
export function storeMetrics(client: FastifyInstance['metrics']['client'], store: 'fs' | 's3'): StoreObserver {
  const requests = new client.Counter({
    name: 'bulkio_store_operations_total',
    help: 'Store operations (S3 requests, file operations) by store, operation and outcome: ok, or the error kind (not_found, no_bucket, denied, unavailable, failed).',
    labelNames: ['store', 'operation', 'outcome'],
  })
  const latency = new client.Histogram({
    name: 'bulkio_store_operation_seconds',
    help: 'Duration of store operations (a whole write: the upload of every part), by store and operation.',
    labelNames: ['store', 'operation'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120],
  })
  const bytes = new client.Counter({
    name: 'bulkio_store_bytes_total',
    help: 'Bytes written to and read from the store, by store and operation (write, read).',
    labelNames: ['store', 'operation'],
  })
  for (const operation of operations) {
    for (const outcome of ['ok', 'unavailable'] satisfies ('ok' | StoreErrorKind)[]) {
      requests.inc({ store, operation, outcome }, 0)
    }
  }
  for (const operation of ['write', 'read']) bytes.inc({ store, operation }, 0)
  return (operation, seconds, outcome, count) => {
    // A read's bytes arrive as its body streams: counted without a request.
    if (count !== undefined && (operation === 'read' || operation === 'write')) bytes.inc({ store, operation }, count)
    if (operation === 'read' && seconds === 0 && count !== undefined) return
    requests.inc({ store, operation, outcome })
    latency.observe({ store, operation }, seconds)
  }
}
