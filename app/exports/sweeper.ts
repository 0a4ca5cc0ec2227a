import type { FastifyBaseLogger } from 'fastify'
import type { Sql } from '../../db/connection.ts'
import { liveExportFiles, sweepExpiredExports } from '../../db/exports.ts'
import { referencedImportSources } from '../../db/imports.ts'
import type { ObjectStore } from '../storage/object-store.ts'

export interface ExportSweeperOptions {
  sql: Sql
  /** The exports' store. */
  store: ObjectStore
  /** The imports' store: what no import job refers to is swept from it too. */
  importStore: ObjectStore
  log: FastifyBaseLogger
  ttlSeconds: number
  /** Unfinished writes, and objects no job refers to, are removed this long after they were written. */
  orphanSeconds: number
  /** Called for each file deleted, with whether it was ever downloaded. */
  onExpired(resource: string, fetched: boolean): void
}

/** Keys looked up in the database at once. */
const PAGE = 500

/**
 * Deletes the files of expired exports: at once, then within a minute of each expiry (sooner with
 * a short EXPORT_TTL_SECONDS). Any process may sweep; each file is swept once. Every hour (and at
 * start), it also removes what nothing refers to any more, older than `orphanSeconds`: unfinished
 * writes (partial files, multipart uploads of a process that died) and objects of no job (an
 * expired file whose delete failed, an upload whose job was never created). Returns the stop
 * function.
 */
export function startExportSweeper(options: ExportSweeperOptions): () => void {
  const { log, store } = options
  const sweep = async () => {
    try {
      for (const { fileName, resource, fetched } of await sweepExpiredExports(options.sql)) {
        await store.delete(fileName)
        options.onExpired(resource, fetched)
        log.info({ file: fileName, fetched }, 'expired export file deleted')
      }
    } catch (error) {
      log.warn({ err: error }, 'sweeping expired exports failed; retrying later')
    }
  }
  const sweepOrphans = async () => {
    const before = new Date(Date.now() - options.orphanSeconds * 1000)
    // A key counts as live when either kind of job names it: the two directories may be one.
    const live = async (keys: string[]) => {
      const [exported, imported] = await Promise.all([
        liveExportFiles(options.sql, keys),
        referencedImportSources(options.sql, keys),
      ])
      return new Set([...exported, ...imported])
    }
    const areas = [
      { store, live },
      { store: options.importStore, live },
    ]
    for (const area of areas) {
      try {
        const unfinished = await area.store.sweepUnfinished(before)
        if (unfinished) log.info({ count: unfinished, store: area.store.locate('') }, 'unfinished writes removed')
        let page: string[] = []
        const flush = async () => {
          // Jobs of older versions stored a file's absolute path: either form counts.
          const located = page.map((key) => area.store.locate(key))
          const live = await area.live([...page, ...located])
          for (const [index, key] of page.entries()) {
            if (live.has(key) || live.has(located[index] as string)) continue
            await area.store.delete(key)
            log.info({ object: area.store.locate(key) }, 'object of no job removed')
          }
          page = []
        }
        for await (const object of area.store.list()) {
          if (object.modified >= before || object.key.startsWith('.probe-')) continue
          page.push(object.key)
          if (page.length >= PAGE) await flush()
        }
        if (page.length) await flush()
      } catch (error) {
        log.warn({ err: error }, 'sweeping unfinished writes and orphaned objects failed; retrying later')
      }
    }
  }
  const timer = setInterval(() => void sweep(), Math.min(60_000, options.ttlSeconds * 500))
  const orphanTimer = setInterval(() => void sweepOrphans(), Math.min(3_600_000, options.orphanSeconds * 500))
  void sweep()
  void sweepOrphans()
  return () => {
    clearInterval(timer)
    clearInterval(orphanTimer)
  }
}
