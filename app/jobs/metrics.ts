import type { FastifyInstance } from 'fastify'
import type { JobKind } from './runner.ts'

/**
 * The metrics of the job runner itself, for both kinds: runs claimed (first runs, and again: a
 * takeover of a dead owner's job or a retry after a crash) and jobs failed after JOB_MAX_ATTEMPTS.
 * Every series starts at zero, so that an alert on them has data before the first event.
 */
export function jobMetrics(client: FastifyInstance['metrics']['client']) {
  const claims = new client.Counter({
    name: 'bulkio_job_claims_total',
    help: "Job runs claimed by this process, by kind and attempt: first, or again (a takeover of a dead owner's job, or a retry after a crash).",
    labelNames: ['kind', 'attempt'],
  })
  const exhausted = new client.Counter({
    name: 'bulkio_jobs_exhausted_total',
    help: 'Jobs failed with attempts_exhausted (JOB_MAX_ATTEMPTS runs that each ended abnormally), by kind.',
    labelNames: ['kind'],
  })
  for (const kind of ['import', 'export']) {
    for (const attempt of ['first', 'again']) claims.inc({ kind, attempt }, 0)
    exhausted.inc({ kind }, 0)
  }
  return {
    claimed(kind: JobKind, again: boolean) {
      claims.inc({ kind, attempt: again ? 'again' : 'first' })
    },
    exhausted(kind: JobKind, count: number) {
      exhausted.inc({ kind }, count)
    },
  }
}
