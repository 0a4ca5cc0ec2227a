import type { Sql } from '../../db/connection.ts'
import { failedRecordRanges, type ImportJobRow } from '../../db/imports.ts'
import type { ImportFormat } from './record-splitter.ts'
import { openSource, readCsvHeader, type SourceLocation } from './source.ts'

// The records an import rejected, byte for byte as uploaded and in the same format (CSV with its
// header), ready to be fixed and imported again. Errors store where each record lies in the
// (decompressed) source; this copies those ranges in one pass over the source.

/** The failed records as a byte stream (`path`: the job's source, which must still be in its store). */
export async function* failedRecords(sql: Sql, job: ImportJobRow, path: SourceLocation): AsyncGenerator<Buffer> {
  const format = job.format as ImportFormat
  let separator = Buffer.from('\n')
  let first = true
  if (format === 'csv') {
    const header = await readCsvHeader(path)
    if (!header) return
    separator = Buffer.from(header.lineEnding)
    yield Buffer.concat([header.bytes, separator])
  } else if (format === 'json') {
    yield Buffer.from('[\n')
    separator = Buffer.from(',\n')
  }

  const source = await openSource(path)
  const iterator = source.bytes[Symbol.asyncIterator]()
  let chunk: Buffer = Buffer.alloc(0)
  let chunkStart = 0 // absolute offset of chunk[0]
  try {
    for await (const page of failedRecordRanges(sql, job.id)) {
      for (const range of page) {
        let offset = Number(range.byte_offset)
        const end = offset + Number(range.byte_length)
        if (format === 'json' && !first) yield separator
        first = false
        while (offset < end) {
          if (offset >= chunkStart + chunk.length) {
            const next = await iterator.next()
            if (next.done) return
            chunkStart += chunk.length
            chunk = next.value
            continue
          }
          const from = offset - chunkStart
          const to = Math.min(chunk.length, end - chunkStart)
          yield chunk.subarray(from, to)
          offset += to - from
        }
        if (format !== 'json') yield separator
      }
    }
    if (format === 'json') yield Buffer.from(first ? ']\n' : '\n]\n')
  } finally {
    source.close()
  }
}
