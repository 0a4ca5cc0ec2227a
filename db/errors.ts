// The one place that knows how PostgreSQL and postgres.js report trouble. Callers ask what an
// error means (is the database unreachable?) instead of matching codes themselves.

/** postgres.js codes for a connection it could not open or lost, and Node's socket errors. */
const connectionErrorCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'CONNECT_TIMEOUT',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
])

/**
 * SQLSTATEs meaning "the server cannot serve you now": class 08 (connection exception),
 * 57P01-57P03 (admin shutdown, crash shutdown, cannot connect now), 53300 (too many
 * connections) and 3D000 (the database does not exist, e.g. dropped or not yet created).
 */
function isUnavailableSqlState(code: string): boolean {
  return code.startsWith('08') || ['57P01', '57P02', '57P03', '53300', '3D000'].includes(code)
}

/** True when `error` says the database is unreachable or refusing connections (retry later). */
export function isDatabaseUnavailable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code !== 'string') return false
  return connectionErrorCodes.has(code) || isUnavailableSqlState(code)
}
