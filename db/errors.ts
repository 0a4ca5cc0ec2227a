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

/** Deadlock or serialization failure: the transaction can simply be run again. */
export function isTransientConflict(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return code === '40001' || code === '40P01'
}

/**
 * A statement refused because of the data it was given (SQLSTATE class 22, data exception, or
 * 23, integrity constraint violation): some record of the batch is at fault, not the database.
 */
export function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^2[23][0-9A-Z]{3}$/.test(code)
}
