import type { Sql } from './connection.ts'

/** Round trip of a trivial query; `serverVersion` as PostgreSQL reports it. */
export async function pingDatabase(sql: Sql, timeoutMs: number): Promise<{ latencyMs: number; serverVersion: string }> {
  const started = performance.now()
  const query = sql<{ version: string }[]>`select current_setting('server_version') as version`
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      query.cancel()
      reject(new Error(`no answer within ${timeoutMs} ms`))
    }, timeoutMs)
  })
  try {
    const [row] = await Promise.race([query, timeout])
    return { latencyMs: Math.round((performance.now() - started) * 100) / 100, serverVersion: row?.version ?? '' }
  } finally {
    clearTimeout(timer)
  }
}
