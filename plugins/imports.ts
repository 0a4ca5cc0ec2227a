import fp from 'fastify-plugin'
import { resourceNames } from '../resources/index.ts'
import { importFormats } from '../schemas/imports.ts'

export type ImportOutcome = 'inserted' | 'updated' | 'failed'

export interface ImportMetrics {
  /** Records of a batch, by outcome. */
  records(resource: string, format: string, outcome: ImportOutcome, count: number): void
  /** Bytes of a source read (as stored). */
  bytesRead(resource: string, format: string, bytes: number): void
  /** Time a batch spent in one stage: parse (and validate) or write. */
  stage(resource: string, stage: string, seconds: number): void
  /** A batch committed, by the statement that wrote it (insert_first or upsert). */
  batchWritten(resource: string, statement: string): void
  /** A run of a job begins in this process; the function returned says how it ended. */
  runStarted(resource: string): (outcome: string) => void
}

export interface Imports {
  metrics: ImportMetrics
}

declare module 'fastify' {
  interface FastifyInstance {
    imports: Imports
  }
}

/**
 * The import metrics (what plugins/exports.ts is to exports): records, bytes and batch stages as
 * the job thread reports them (plugins/jobs.ts passes its messages on), runs started, finished
 * and in progress, and their duration.
 */
export default fp(
  async (app) => {
    const client = app.metrics.client
    const recordsTotal = new client.Counter({
      name: 'bulkio_import_records_total',
      help: 'Import records processed, by resource, format and outcome (inserted, updated, failed).',
      labelNames: ['resource', 'format', 'outcome'],
    })
    const jobsStarted = new client.Counter({
      name: 'bulkio_import_jobs_started_total',
      help: 'Import job runs started (a resumed job counts again), by resource.',
      labelNames: ['resource'],
    })
    const jobsFinished = new client.Counter({
      name: 'bulkio_import_jobs_finished_total',
      help: 'Import jobs finished, by resource and final status (completed, failed, cancelled).',
      labelNames: ['resource', 'status'],
    })
    const jobsInProgress = new client.Gauge({
      name: 'bulkio_import_jobs_in_progress',
      help: 'Import jobs running in this process, by resource.',
      labelNames: ['resource'],
    })
    const jobDuration = new client.Histogram({
      name: 'bulkio_import_job_duration_seconds',
      help: 'Duration of import job runs in this process, by resource and outcome.',
      labelNames: ['resource', 'status'],
      buckets: [0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
    })
    const batchSeconds = new client.Histogram({
      name: 'bulkio_import_batch_seconds',
      help: 'Time per import batch by stage: parse and validate (worker threads), write (database).',
      labelNames: ['resource', 'stage'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    })
    const batchesTotal = new client.Counter({
      name: 'bulkio_import_batches_total',
      help: 'Import batches committed, by resource and the statement that wrote them: insert_first (every record new, a plain insert) or upsert.',
      labelNames: ['resource', 'statement'],
    })
    const bytesRead = new client.Counter({
      name: 'bulkio_import_bytes_read_total',
      help: 'Bytes of import sources read (as stored: compressed when gzip), by resource and format.',
      labelNames: ['resource', 'format'],
    })
    // Every known series from the start, at zero: a rate or an alert over them has data before
    // the first import.
    for (const resource of resourceNames(app.resources)) {
      for (const format of importFormats) {
        for (const outcome of ['inserted', 'updated', 'failed']) recordsTotal.inc({ resource, format, outcome }, 0)
        bytesRead.inc({ resource, format }, 0)
      }
      for (const status of ['completed', 'failed', 'cancelled']) jobsFinished.inc({ resource, status }, 0)
      for (const statement of ['insert_first', 'upsert']) batchesTotal.inc({ resource, statement }, 0)
    }

    app.decorate('imports', {
      metrics: {
        records(resource, format, outcome, count) {
          recordsTotal.inc({ resource, format, outcome }, count)
        },
        bytesRead(resource, format, bytes) {
          bytesRead.inc({ resource, format }, bytes)
        },
        stage(resource, stage, seconds) {
          batchSeconds.observe({ resource, stage }, seconds)
        },
        batchWritten(resource, statement) {
          batchesTotal.inc({ resource, statement })
        },
        runStarted(resource) {
          const begun = performance.now()
          jobsStarted.inc({ resource })
          jobsInProgress.inc({ resource })
          return (outcome) => {
            jobsInProgress.dec({ resource })
            jobDuration.observe({ resource, status: outcome }, (performance.now() - begun) / 1000)
            if (outcome === 'completed' || outcome === 'failed' || outcome === 'cancelled') {
              jobsFinished.inc({ resource, status: outcome })
            }
          }
        },
      },
    })
  },
  { name: 'imports', dependencies: ['metrics', 'resources'] },
)
