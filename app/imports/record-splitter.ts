// Splits an import source into records without parsing them: the main thread only finds where
// each record starts and ends (and on which physical line), and hands whole records, as raw
// bytes, to the worker threads that parse and validate them. Scanning is a few native indexOf
// calls per record; no record is ever decoded here.
//
// Where a record ends follows the same rule as the parser that later reads it (docs/api.md,
// "Records and errors"; parseCsvRecord in app/workers/import-batch.ts for CSV): a malformed
// record is that record's parse_error, never a reason to move the boundaries of the others.
//
// Longer than most files on purpose: one scanner per format (CSV, NDJSON, JSON array) over one
// buffer discipline (chunks, carry-over, byte offsets and lines); they change together.

export type ImportFormat = 'csv' | 'ndjson' | 'json'

/** Where one record is in the (decompressed) source. */
export interface RecordSpan {
  /** 1-based record number; the CSV header is not a record. */
  record: number
  /** 1-based physical line on which the record starts. */
  line: number
  /** Byte offset of the record's first byte in the source. */
  offset: number
  /** Byte length, without the line terminator. */
  length: number
  /**
   * A defect found while splitting: `too_large` (longer than maxRecordBytes; its bytes are not
   * in the batch) or `unterminated` (the source ended inside a quoted field, string or value).
   */
  problem?: 'too_large' | 'unterminated'
}

/** How a span's problem travels to a worker thread (BatchTask.problems). */
export const splitterProblemCodes = { too_large: 1, unterminated: 2 } as const

/** A run of consecutive records, ready for a worker. */
export interface RecordBatch {
  spans: RecordSpan[]
  /** The records' bytes (those without a `too_large` problem), each followed by "\n". */
  chunk: Buffer
  /** For each span, where its bytes start in `chunk` (-1 when not included). */
  starts: Int32Array
  /** Source offset just after the batch's last record (at its line terminator, if any). */
  endOffset: number
  /** The line on which the batch's last record ends. */
  endLine: number
  /**
   * Where a new splitter (SplitterOptions.resumeFrom) fed the source from `offset` on goes on
   * exactly as this one does after the batch: the same later batches and warnings. Not always
   * endOffset (a JSON element's comma, a closing `]` come after it). `null` when there is no
   * such point (then a resumed job reads the source from its start with skipRecords): every
   * format has one after each record today, but a caller must not count on it.
   */
  resume: ResumePoint | null
}

/** A place in the source where splitting can start over (RecordBatch.resume). */
export interface ResumePoint {
  /** Absolute byte offset. */
  offset: number
  /** The physical line at that offset. */
  line: number
}

/** The source is not of its format at all (e.g. a JSON import that is not an array). */
export class SourceFormatError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'SourceFormatError'
  }
}

export interface SplitterOptions {
  format: ImportFormat
  /** Records per batch. */
  batchRecords: number
  /** Longest record kept; longer ones become `too_large` spans. */
  maxRecordBytes: number
  /** Records to pass over without emitting them (a resumed job's committed records). */
  skipRecords?: number
  /**
   * A batch also ends once its bytes reach this (default 8 MiB), so that large records cannot
   * make a batch huge. Like the record count, it depends on the source alone: a resumed job
   * cuts the same batches.
   */
  maxBatchBytes?: number
  /**
   * Start mid-source, at a batch's `resume` point: the bytes pushed are the source's from
   * `offset` on. `records` is the last record number of that batch (numbering goes on from it;
   * skipRecords still counts from the start of the source). `header` is the original splitter's
   * `header`, required for CSV (the first record read is not the header then). `lineEnding` is
   * the original's; without it, it is taken from the first line end read (the batch's own).
   */
  resumeFrom?: ResumePoint & {
    records: number
    header?: { span: RecordSpan; bytes: Buffer }
    lineEnding?: '\n' | '\r\n'
  }
}

const NEWLINE = 0x0a
const CARRIAGE_RETURN = 0x0d
const QUOTE = 0x22
const COMMA = 0x2c
const BACKSLASH = 0x5c
const OPEN_BRACKET = 0x5b
const CLOSE_BRACKET = 0x5d
const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d
const BOM = Buffer.from([0xef, 0xbb, 0xbf])

// Where the CSV scan is (RFC 4180's grammar, with quotes inside unquoted fields ordinary):
// at the start of a field, inside an unquoted field, inside a quoted field, or just after a
// quote inside a quoted field (the first half of `""`, or the closing quote: the next byte tells).
const FIELD_START = 0
const UNQUOTED = 1
const QUOTED = 2
const QUOTE_IN_QUOTED = 3
type CsvState = typeof FIELD_START | typeof UNQUOTED | typeof QUOTED | typeof QUOTE_IN_QUOTED

function isWhitespace(byte: number): boolean {
  return byte === 0x20 || byte === NEWLINE || byte === CARRIAGE_RETURN || byte === 0x09
}

function countNewlines(buffer: Buffer, from: number, to: number): number {
  let count = 0
  let at = buffer.indexOf(NEWLINE, from)
  while (at !== -1 && at < to) {
    count++
    at = buffer.indexOf(NEWLINE, at + 1)
  }
  return count
}

/**
 * Push-based splitter: `push(bytes)` and `end()` return the batches completed so far. Offsets
 * and lines are absolute in the source (a UTF-8 BOM counts as bytes, not as content). The pieces
 * pushed may have any sizes: the records are the same whatever they are.
 */
export class RecordSplitter {
  readonly format: ImportFormat
  /** The CSV header record, once seen. */
  header: { span: RecordSpan; bytes: Buffer } | undefined
  /** "\r\n" when the first line ends so, else "\n": failed-records reproduces it. */
  lineEnding: '\n' | '\r\n' = '\n'
  /** Anything odd but harmless found in the source (e.g. data after a JSON array). */
  readonly warnings: string[] = []

  private readonly options: Required<Omit<SplitterOptions, 'resumeFrom'>>
  /** Absolute offset of the next byte to be scanned. */
  private position = 0
  /** The first bytes, held back while they may still be the start of a BOM. */
  private head: Buffer | undefined = Buffer.alloc(0)
  /** The last byte scanned (a CR before a LF at the start of a piece belongs to the line end). */
  private lastByte = -1
  /** Current physical line (1-based) at the scan position. */
  private line = 1
  private recordCount = 0
  private lineEndingKnown = false
  // Where a new splitter would go on from after the last record finished (finishRecord).
  private resumeOffset = 0
  private resumeLine = 0

  // The record being read: where it started, and its bytes so far (slices of pushed buffers).
  private recordStart = -1
  private recordLine = 0
  private pieces: Buffer[] = []
  private pieceBytes = 0
  private tooLarge = false
  /** NDJSON: the line has a byte other than whitespace (a blank line is no record). */
  private hasContent = false

  private csvState: CsvState = FIELD_START
  // JSON: where in the top-level array we are, nesting depth and string state of the element.
  // 'closing' follows a `]` at depth 0: it ends the array unless a `,` comes next (then it was a
  // stray token), so the element before it is held until the next non-blank byte decides.
  private jsonState: 'start' | 'before' | 'element' | 'closing' | 'end' | 'ignored' = 'start'
  private depth = 0
  private inString = false
  private escaped = false
  private elementEnd = -1
  private closeOffset = -1
  private closeLine = 0
  private closesElement = false

  // The batch being filled.
  private spans: RecordSpan[] = []
  private batchPieces: Buffer[] = []
  private batchStarts: number[] = []
  private batchBytes = 0
  private ready: RecordBatch[] = []

  constructor(options: SplitterOptions) {
    const { resumeFrom, ...rest } = options
    this.options = { skipRecords: 0, maxBatchBytes: 8 * 1024 * 1024, ...rest }
    this.format = options.format
    if (resumeFrom) {
      if (this.format === 'csv' && !resumeFrom.header) throw new Error('resuming a CSV source needs its header')
      // Mid-source: no BOM to look for, and a JSON array already open, between two elements.
      this.head = undefined
      this.position = resumeFrom.offset
      this.line = resumeFrom.line
      this.recordCount = resumeFrom.records
      this.header = resumeFrom.header
      if (resumeFrom.lineEnding) {
        this.lineEnding = resumeFrom.lineEnding
        this.lineEndingKnown = true
      }
      if (this.format === 'json') this.jsonState = 'before'
    }
  }

  /** Records emitted or passed over so far. */
  get records(): number {
    return this.recordCount
  }

  push(buffer: Buffer): RecordBatch[] {
    if (this.head) {
      // A UTF-8 BOM is tolerated and not part of the first record, even when it arrives split.
      const head = this.head.length ? Buffer.concat([this.head, buffer]) : buffer
      if (head.length < BOM.length && BOM.subarray(0, head.length).equals(head)) {
        this.head = head
        return []
      }
      this.head = undefined
      this.scan(head, head.subarray(0, BOM.length).equals(BOM) ? BOM.length : 0)
    } else {
      this.scan(buffer, 0)
    }
    return this.takeReady()
  }

  end(): RecordBatch[] {
    if (this.head?.length) this.scan(this.head, 0) // the start of a BOM, and nothing else: content
    this.head = undefined
    const endOffset = this.position
    if (this.format === 'json') {
      if (this.jsonState === 'element') {
        const unterminated = this.inString || this.depth > 0
        // Resumed at the end of the source between two elements, a splitter warns the same.
        this.finishRecord(this.elementEnd + 1, unterminated, this.position, this.line)
        this.warnings.push('the JSON array is not closed with "]"')
      } else if (this.jsonState === 'closing') {
        this.closeArray()
      } else if (this.jsonState === 'start') {
        throw new SourceFormatError('a json import must be a top-level JSON array of records; the source is empty')
      } else if (this.jsonState === 'before') {
        this.warnings.push('the JSON array is not closed with "]"')
      }
    } else if (this.recordStart >= 0 && (this.format === 'csv' || this.hasContent)) {
      this.finishRecord(endOffset, this.csvState === QUOTED, endOffset, this.line)
    }
    this.flushBatch()
    return this.takeReady()
  }

  private scan(buffer: Buffer, from: number): void {
    if (this.format === 'csv') this.scanCsv(buffer, from)
    else if (this.format === 'ndjson') this.scanNdjson(buffer, from)
    else this.scanJson(buffer, from)
    this.position += buffer.length
    if (buffer.length) this.lastByte = buffer[buffer.length - 1] as number
  }

  private takeReady(): RecordBatch[] {
    const ready = this.ready
    this.ready = []
    return ready
  }

  // --- CSV: records end at a LF outside quoted fields ----------------------------------------

  private scanCsv(buffer: Buffer, from: number): void {
    const length = buffer.length
    let at = from
    // Always the first quote at or after `at` (-1: none left in this buffer): searched once per
    // quote rather than once per record, since most records have none.
    let nextQuote = buffer.indexOf(QUOTE, from)
    while (at < length) {
      if (this.recordStart < 0) this.beginRecord(this.position + at)
      const state = this.csvState
      if (state === QUOTED) {
        const quote = nextQuote
        const stop = quote === -1 ? length : quote + 1
        this.line += countNewlines(buffer, at, stop)
        this.collect(buffer, at, stop)
        if (quote === -1) return
        this.csvState = QUOTE_IN_QUOTED
        nextQuote = buffer.indexOf(QUOTE, stop)
        at = stop
        continue
      }
      if (state === QUOTE_IN_QUOTED) {
        if (buffer[at] === QUOTE) {
          // `""`: an escaped quote; the field goes on.
          this.collect(buffer, at, at + 1)
          this.csvState = QUOTED
          nextQuote = buffer.indexOf(QUOTE, at + 1)
          at++
          continue
        }
        // The field was closed. A comma or a line end should follow; other text makes the record
        // a parse_error (the parser's business), and is read as an unquoted field: no quote in it
        // can open anything, so the record ends at the next LF all the same.
        this.csvState = UNQUOTED
        continue
      }
      // At a field start or in an unquoted field: the record ends at the next LF, unless a quote
      // at the start of a field (after a comma, or where the field starts) comes first. A quote
      // anywhere else is an ordinary character. Between `at` and the LF there is no state but
      // these two, so the byte before a quote says whether it starts a field.
      const newline = buffer.indexOf(NEWLINE, at)
      const stretchEnd = newline === -1 ? length : newline
      let opening = -1
      while (nextQuote !== -1 && nextQuote < stretchEnd) {
        if (nextQuote === at ? state === FIELD_START : buffer[nextQuote - 1] === COMMA) {
          opening = nextQuote
          break
        }
        nextQuote = buffer.indexOf(QUOTE, nextQuote + 1)
      }
      if (opening !== -1) {
        this.collect(buffer, at, opening + 1)
        this.csvState = QUOTED
        nextQuote = buffer.indexOf(QUOTE, opening + 1)
        at = opening + 1
        continue
      }
      if (newline === -1) {
        this.collect(buffer, at, length)
        this.csvState = buffer[length - 1] === COMMA ? FIELD_START : UNQUOTED
        return
      }
      this.collect(buffer, at, newline)
      this.endLine(buffer, newline)
      this.csvState = FIELD_START
      at = newline + 1
    }
  }

  // --- NDJSON: one record per line --------------------------------------------------------------

  private scanNdjson(buffer: Buffer, from: number): void {
    let at = from
    while (at < buffer.length) {
      if (this.recordStart < 0) this.beginRecord(this.position + at)
      const newline = buffer.indexOf(NEWLINE, at)
      if (newline === -1) {
        this.collect(buffer, at, buffer.length)
        return
      }
      this.collect(buffer, at, newline)
      this.endLine(buffer, newline)
      at = newline + 1
    }
  }

  /** The LF at buffer[newline] ends the current line (a CR just before it is part of the line end). */
  private endLine(buffer: Buffer, newline: number): void {
    const end = this.position + newline
    const crlf = (newline > 0 ? buffer[newline - 1] : this.lastByte) === CARRIAGE_RETURN && end > this.recordStart
    if (!this.lineEndingKnown) {
      this.lineEnding = crlf ? '\r\n' : '\n'
      this.lineEndingKnown = true
    }
    this.finishLine(crlf ? end - 1 : end)
    this.line++
  }

  /** A line ended: a record, unless it is blank (skipped: blank lines are not records). */
  private finishLine(end: number): void {
    const length = end - this.recordStart
    if (this.format === 'csv' ? length === 0 : !this.hasContent) {
      this.resetRecord()
      return
    }
    // The line end, scanned again from its first byte by a new splitter, is a blank line.
    this.finishRecord(end, false, end, this.line)
  }

  // --- JSON: elements of one top-level array -------------------------------------------------

  private scanJson(buffer: Buffer, from: number): void {
    let at = from
    while (at < buffer.length) {
      const state = this.jsonState
      if (state === 'element') {
        at = this.scanElement(buffer, at)
        continue
      }
      if (state === 'ignored') return
      const byte = buffer[at] as number
      if (isWhitespace(byte)) {
        if (byte === NEWLINE) this.line++
        at++
        continue
      }
      switch (state) {
        case 'start':
          if (byte !== OPEN_BRACKET) {
            throw new SourceFormatError(
              byte === OPEN_BRACE
                ? 'a json import must be a top-level JSON array of records, not a single object (use ndjson for one object per line)'
                : 'a json import must be a top-level JSON array of records',
            )
          }
          this.jsonState = 'before'
          at++
          continue
        case 'before':
          if (byte === CLOSE_BRACKET) {
            // The end of the array (also after a trailing comma), unless a comma follows.
            this.closing(this.position + at, false)
            at++
            continue
          }
          // An element starts, whatever its first byte: a stray `,` or `}` starts one too, which
          // then fails to parse (a record of its own, reported with its line).
          this.beginRecord(this.position + at)
          this.lineEndingKnown = true
          this.depth = 0
          this.inString = false
          this.escaped = false
          this.elementEnd = this.recordStart - 1
          this.jsonState = 'element'
          continue
        case 'closing':
          if (byte === COMMA) {
            this.strayClose(this.position + at + 1)
            this.jsonState = 'before'
            at++
            continue
          }
          this.closeArray()
          this.ignoreRest()
          return
        case 'end':
          this.ignoreRest()
          return
      }
    }
  }

  /**
   * Scans inside an element from `from`; returns where scanning stopped: the end of the buffer,
   * or just after the `,` or `]` at depth 0 that ends the element.
   */
  private scanElement(buffer: Buffer, from: number): number {
    let at = from
    while (at < buffer.length) {
      const byte = buffer[at] as number
      if (this.inString) {
        if (this.escaped) this.escaped = false
        else if (byte === BACKSLASH) this.escaped = true
        else if (byte === QUOTE) this.inString = false
        else if (byte === NEWLINE) this.line++
        this.elementEnd = this.position + at
        at++
        continue
      }
      if (this.depth === 0 && (byte === COMMA || byte === CLOSE_BRACKET)) {
        this.collect(buffer, from, at)
        if (byte === COMMA) {
          this.finishRecord(this.elementEnd + 1, false, this.position + at + 1, this.line)
          this.jsonState = 'before'
        } else {
          this.closing(this.position + at, true)
        }
        return at + 1
      }
      if (byte === QUOTE) this.inString = true
      else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) this.depth++
      // Never below zero: a stray closing bracket stays in the element's text, which then cannot
      // parse, and the next comma at depth 0 still ends the element.
      else if ((byte === CLOSE_BRACE || byte === CLOSE_BRACKET) && this.depth > 0) this.depth--
      else if (byte === NEWLINE) this.line++
      if (!isWhitespace(byte)) this.elementEnd = this.position + at
      at++
    }
    this.collect(buffer, from, buffer.length)
    return at
  }

  /** A `]` at depth 0 (at `offset`), after an element still held or after `[` or `,`. */
  private closing(offset: number, closesElement: boolean): void {
    this.closeOffset = offset
    this.closeLine = this.line
    this.closesElement = closesElement
    this.jsonState = 'closing'
  }

  /** The `]` ended the array: the element it closed is complete. */
  private closeArray(): void {
    // A new splitter started at the `]` between elements makes the same decision on it.
    if (this.closesElement) this.finishRecord(this.elementEnd + 1, false, this.closeOffset, this.closeLine)
    this.jsonState = 'end'
  }

  /**
   * The `]` was followed by a comma (just before `afterComma`): a stray token, kept in the
   * element it closed or one of its own.
   */
  private strayClose(afterComma: number): void {
    if (!this.closesElement) {
      this.beginRecord(this.closeOffset)
      this.recordLine = this.closeLine
    }
    this.collect(CLOSE_BRACKET_BUFFER, 0, 1)
    this.finishRecord(this.closeOffset + 1, false, afterComma, this.line)
  }

  private ignoreRest(): void {
    this.warnings.push('data after the end of the JSON array was ignored')
    this.jsonState = 'ignored'
  }

  // --- Records and batches -------------------------------------------------------------------

  private beginRecord(offset: number): void {
    this.recordStart = offset
    this.recordLine = this.line
    this.pieces = []
    this.pieceBytes = 0
    this.tooLarge = false
    this.hasContent = false
  }

  private resetRecord(): void {
    this.recordStart = -1
    this.pieces = []
    this.pieceBytes = 0
    this.tooLarge = false
    this.hasContent = false
  }

  /** Keeps buffer[from, to) as part of the current record, unless it has grown too large. */
  private collect(buffer: Buffer, from: number, to: number): void {
    if (to <= from) return
    if (!this.hasContent && this.format === 'ndjson') {
      for (let at = from; at < to; at++) {
        if (!isWhitespace(buffer[at] as number)) {
          this.hasContent = true
          break
        }
      }
    }
    if (this.tooLarge) return
    this.pieceBytes += to - from
    if (
      this.pieceBytes > this.options.maxRecordBytes &&
      this.lengthSoFar(buffer[to - 1] as number) > this.options.maxRecordBytes
    ) {
      this.tooLarge = true
      this.pieces = []
      return
    }
    this.pieces.push(buffer.subarray(from, to))
  }

  /**
   * The least length the record can end with, given what has been collected: the bytes collected
   * may run past its end by a CR (the first half of a CRLF) or, in JSON, by the whitespace after
   * an element's last token. So that the limit is the same whatever follows, those do not count;
   * whitespace longer than the limit itself does, to bound the memory held.
   */
  private lengthSoFar(lastByte: number): number {
    if (this.format === 'json') {
      if (this.pieceBytes > 2 * this.options.maxRecordBytes) return this.pieceBytes
      return this.elementEnd + 1 - this.recordStart
    }
    return lastByte === CARRIAGE_RETURN ? this.pieceBytes - 1 : this.pieceBytes
  }

  /**
   * The current record ends at `end`. A new splitter started at `resumeOffset` on `resumeLine`
   * (resumeFrom) is where this one is once the record is done.
   */
  private finishRecord(end: number, unterminated: boolean, resumeOffset: number, resumeLine: number): void {
    const length = Math.max(0, end - this.recordStart)
    if (length > this.options.maxRecordBytes && !this.tooLarge) {
      this.tooLarge = true
      this.pieces = []
    }
    if (!this.header && this.format === 'csv') {
      const bytes = Buffer.concat(this.pieces).subarray(0, length)
      this.header = { span: { record: 0, line: this.recordLine, offset: this.recordStart, length }, bytes }
      this.resetRecord()
      return
    }
    this.recordCount++
    this.resumeOffset = resumeOffset
    this.resumeLine = resumeLine
    if (this.recordCount > this.options.skipRecords) {
      const span: RecordSpan = { record: this.recordCount, line: this.recordLine, offset: this.recordStart, length }
      if (this.tooLarge) span.problem = 'too_large'
      else if (unterminated) span.problem = 'unterminated'
      this.spans.push(span)
      if (this.tooLarge) {
        this.batchStarts.push(-1)
      } else {
        this.batchStarts.push(this.batchBytes)
        // The pieces may run past the record's end (a trailing "\r", JSON whitespace): cut them.
        let remaining = length
        for (const piece of this.pieces) {
          if (remaining <= 0) break
          const part = piece.length > remaining ? piece.subarray(0, remaining) : piece
          this.batchPieces.push(part)
          this.batchBytes += part.length
          remaining -= part.length
        }
        this.batchPieces.push(NEWLINE_BUFFER)
        this.batchBytes += 1
      }
    }
    this.resetRecord()
    if (this.spans.length >= this.options.batchRecords || this.batchBytes >= this.options.maxBatchBytes)
      this.flushBatch()
  }

  private flushBatch(): void {
    if (this.spans.length === 0) return
    const last = this.spans[this.spans.length - 1] as RecordSpan
    // A buffer of its own (never a slice of Node's shared pool), so it can be transferred to a
    // worker thread without detaching anything else.
    const chunk = Buffer.allocUnsafeSlow(this.batchBytes)
    let at = 0
    for (const piece of this.batchPieces) at += piece.copy(chunk, at)
    this.ready.push({
      spans: this.spans,
      chunk,
      starts: Int32Array.from(this.batchStarts),
      endOffset: last.offset + last.length,
      endLine: this.line,
      // The last record finished is the batch's last: a flush follows it at once, or at the end.
      resume: { offset: this.resumeOffset, line: this.resumeLine },
    })
    this.spans = []
    this.batchPieces = []
    this.batchStarts = []
    this.batchBytes = 0
  }
}

const NEWLINE_BUFFER = Buffer.from('\n')
const CLOSE_BRACKET_BUFFER = Buffer.from(']')
