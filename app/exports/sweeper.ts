import { rm } from 'node:fs/promises'
import path from 'node:path'
import type { FastifyBaseLogger } from 'fastify'
import type { Sql } from '../../db/connection.ts'
import { sweepExpiredExports } from '../../db/exports.ts'

export interface ExportSweeperOptions {
  sql: Sql
  exportDir: string
  log: FastifyBaseLogger
  ttlSeconds: number
  /** Called for each file deleted, with whether it was ever downloaded. */
  onExpired(resource: string, fetched: boolean): void
}

/**
 * Deletes the files of expired exports: at once, then within a minute of each expiry (sooner with
 * a short EXPORT_TTL_SECONDS). Any process may sweep; each file is swept once. Returns the stop
 * function.
 */
export function startExportSweeper(options: ExportSweeperOptions): () => void {
  const sweep = async () => {
    try {
      for (const { fileName, resource, fetched } of await sweepExpiredExports(options.sql)) {
        await rm(path.join(options.exportDir, fileName), { force: true })
        options.onExpired(resource, fetched)
        options.log.info({ file: fileName, fetched }, 'expired export file deleted')
      }
    } catch (error) {
      options.log.warn({ err: error }, 'sweeping expired exports failed; retrying later')
    }
  }
  const timer = setInterval(() => void sweep(), Math.min(60_000, options.ttlSeconds * 500))
  void sweep()
  return () => clearInterval(timer)
}
