import { createHash } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { Sql } from '../../db/connection.ts'
import { type ExportJobRow, findExportJob, insertExportJob } from '../../db/exports.ts'
import { ProblemError } from '../../plugins/problem-details.ts'
import type { Config } from '../../schemas/config.ts'
import type { ExportRequest } from '../../schemas/exports.ts'
import { idempotent } from '../jobs/idempotency.ts'

export interface ExportCreation {
  sql: Sql
  config: Config
  log: FastifyBaseLogger
}

/**
 * Queues an async export job (docs/contract.md §8). With an Idempotency-Key, the same body gives
 * the job created before; the fingerprint is that of the normalised body (filters in name order).
 */
export async function createExport(
  creation: ExportCreation,
  body: ExportRequest,
  idempotencyKey: string | undefined,
): Promise<{ job: ExportJobRow; replayed: boolean }> {
  const job = {
    resource: body.resource,
    format: body.format,
    fields: body.fields ? [...body.fields] : null,
    filters: Object.fromEntries(
      Object.entries(body.filters ?? {})
        .filter((entry): entry is [string, string | boolean] => entry[1] !== undefined)
        .sort(([a], [b]) => a.localeCompare(b)),
    ),
    compression: body.compression ?? 'none',
  }
  const keyOptions = {
    scope: 'exports',
    key: idempotencyKey,
    mismatch: 'This Idempotency-Key was used for another export request; use a new key.',
    config: creation.config,
  }
  return idempotent(creation.sql, keyOptions, async (key) => {
    const replay = await key.settle(createHash('sha256').update(JSON.stringify(job)).digest('hex'))
    if (replay) {
      const found = await findExportJob(creation.sql, replay)
      if (!found) throw new ProblemError('not_found', `There is no export job ${replay}.`)
      return { job: found, replayed: true }
    }
    const created = await insertExportJob(
      creation.sql,
      { ...job, idempotency_key: idempotencyKey ?? null },
      key.completion(),
    )
    creation.log.info({ job_id: created.id, resource: created.resource }, 'export job created')
    return { job: created, replayed: false }
  })
}
