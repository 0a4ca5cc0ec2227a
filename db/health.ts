import type { Sql } from './connection.ts'

/** Round trip of a trivial query; `serverVersion` as PostgreSQL reports it. */
export async function pingDatabase(sql: Sql, timeoutMs: number): Promise<{ latencyMs: number; serverVersion: string }> {
  const started = performance.now()
  const query = sql<{ version: string }[]>`select current_setting('server_version') as version`
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    // No query.cancel() here: postgres.js (3.4.x) never releases a connection whose first query
    // was cancelled while the connection was still opening, which wedged the probe's one-connection
    // pool for good after a database outage. A late answer is simply ignored.
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)
  })
  try {
    const [row] = await Promise.race([query, timeout])
    return { latencyMs: Math.round((performance.now() - started) * 100) / 100, serverVersion: row?.version ?? '' }
  } finally {
    clearTimeout(timer)
  }
}
