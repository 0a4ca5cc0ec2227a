import type { Sql } from './connection.ts'

// What the job runner asks of both kinds of job (import_jobs, export_jobs) at once.

/** Whether a job of either kind could be claimed now: queued, or running under an expired lease. */
export async function hasClaimableJob(sql: Sql): Promise<boolean> {
  const [row] = await sql<{ found: boolean }[]>`
    select exists (
      select 1 from import_jobs where status = 'queued' or (status = 'running' and lease_expires_at < now())
    ) or exists (
      select 1 from export_jobs where status = 'queued' or (status = 'running' and lease_expires_at < now())
    ) as found`
  return row?.found ?? false
}
