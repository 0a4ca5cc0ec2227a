// What the record splitter's property tests (record-splitter*.property.test.ts) share to write
// their sources and read them back.

/** The line of `source` that byte `offset` is on (1-based), counted byte by byte. */
export function linesBefore(source: Buffer, offset: number): number {
  let lines = 1
  for (let at = 0; at < offset; at++) if (source[at] === 0x0a) lines++
  return lines
}

/**
 * JSON text of `value` with whitespace (from `next`) between its tokens. The pieces of whitespace
 * should be short: the splitter's memory bound counts whitespace longer than the record limit
 * after an element as part of it.
 */
export function jsonText(value: unknown, next: () => string): string {
  if (Array.isArray(value)) {
    return `[${next()}${value.map((item) => jsonText(item, next)).join(`${next()},${next()}`)}${next()}]`
  }
  if (value !== null && typeof value === 'object') {
    const members = Object.entries(value).map(
      ([key, item]) => `${JSON.stringify(key)}${next()}:${next()}${jsonText(item, next)}`,
    )
    return `{${next()}${members.join(`${next()},${next()}`)}${next()}}`
  }
  return JSON.stringify(value)
}
