// Splits an import source into records without parsing them: the main thread only finds where
// each record starts and ends (and on which physical line), and hands whole records, as raw
// bytes, to the worker threads that parse and validate them. Scanning is a few native indexOf
// calls per record; no record is ever decoded here.

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
 * and lines are absolute in the source (a UTF-8 BOM counts as bytes, not as content).
 */
export class RecordSplitter {
  readonly format: ImportFormat
  /** The CSV header record, once seen. */
  header: { span: RecordSpan; bytes: Buffer } | undefined
  /** "\r\n" when the first line ends so, else "\n": failed-records reproduces it. */
  lineEnding: '\n' | '\r\n' = '\n'
  /** Anything odd but harmless found in the source (e.g. data after a JSON array). */
  readonly warnings: string[] = []

  private readonly options: Required<SplitterOptions>
  /** Absolute offset of the next byte to be pushed. */
  private position = 0
  /** Current physical line (1-based) at the scan position. */
  private line = 1
  private recordCount = 0
  private lineEndingKnown = false

  // The record being read: where it started, and its bytes so far (slices of pushed buffers).
  private recordStart = -1
  private recordLine = 0
  private pieces: Buffer[] = []
  private pieceBytes = 0
  private tooLarge = false

  // CSV: inside a quoted field; the byte before the scan position (field starts follow , or \n).
  private inQuotes = false
  private previousByte = NEWLINE
  // JSON: where in the top-level array we are, nesting depth and string state of the element.
  private jsonState: 'start' | 'before' | 'element' | 'after' | 'end' | 'ignored' = 'start'
  private depth = 0
  private inString = false
  private escaped = false
  private elementEnd = -1

  // The batch being filled.
  private spans: RecordSpan[] = []
  private batchPieces: Buffer[] = []
  private batchStarts: number[] = []
  private batchBytes = 0
  private ready: RecordBatch[] = []

  constructor(options: SplitterOptions) {
    this.options = { skipRecords: 0, maxBatchBytes: 8 * 1024 * 1024, ...options }
    this.format = options.format
  }

  /** Records emitted or passed over so far. */
  get records(): number {
    return this.recordCount
  }

  push(buffer: Buffer): RecordBatch[] {
    let from = 0
    if (this.position === 0 && buffer.length >= 3 && buffer[0] === 0xef && buffer[1] === 0xbb && buffer[2] === 0xbf) {
      from = 3 // a UTF-8 BOM is tolerated and not part of the first record
    }
    if (this.format === 'json') this.scanJson(buffer, from)
    else this.scanLines(buffer, from)
    this.position += buffer.length
    return this.takeReady()
  }

  end(): RecordBatch[] {
    const endOffset = this.position
    if (this.format === 'json') {
      if (this.jsonState === 'element') {
        const unterminated = this.inString || this.depth > 0
        this.finishRecord(this.elementEnd >= 0 ? this.elementEnd + 1 : endOffset, unterminated)
        this.warnings.push('the JSON array is not closed with "]"')
      } else if (this.jsonState === 'start') {
        throw new SourceFormatError('a json import must be a top-level JSON array; the source is empty')
      } else if (this.jsonState !== 'end' && this.jsonState !== 'ignored') {
        this.warnings.push('the JSON array is not closed with "]"')
      }
    } else if (this.recordStart >= 0) {
      this.finishRecord(endOffset, this.format === 'csv' && this.inQuotes)
    }
    this.flushBatch()
    return this.takeReady()
  }

  private takeReady(): RecordBatch[] {
    const ready = this.ready
    this.ready = []
    return ready
  }

  // --- CSV and NDJSON: records end at a newline (for CSV, one outside a quoted field) --------

  private scanLines(buffer: Buffer, from: number): void {
    const csv = this.format === 'csv'
    let at = from
    while (at < buffer.length) {
      if (this.recordStart < 0) this.beginRecord(this.position + at)
      if (csv && this.inQuotes) {
        const quote = buffer.indexOf(QUOTE, at)
        const stop = quote === -1 ? buffer.length : quote
        this.line += countNewlines(buffer, at, stop)
        this.collect(buffer, at, quote === -1 ? buffer.length : quote + 1)
        if (quote === -1) return
        // `""` inside quotes is an escaped quote: closing, then reopening at once, keeps us inside.
        this.inQuotes = false
        this.previousByte = QUOTE
        at = quote + 1
        continue
      }
      const newline = buffer.indexOf(NEWLINE, at)
      const quote = csv ? buffer.indexOf(QUOTE, at) : -1
      if (quote !== -1 && (newline === -1 || quote < newline)) {
        // A quote opens a quoted field only at the start of a field; elsewhere it is a literal
        // (the parser decides whether the record is well-formed).
        // A quote right after a closing quote is the second half of `""`: we are still inside.
        const before = quote > at ? buffer[quote - 1] : this.previousByte
        if (before === COMMA || before === NEWLINE || before === QUOTE) this.inQuotes = true
        this.collect(buffer, at, quote + 1)
        this.previousByte = QUOTE
        at = quote + 1
        continue
      }
      if (newline === -1) {
        this.collect(buffer, at, buffer.length)
        this.previousByte = buffer[buffer.length - 1] ?? this.previousByte
        return
      }
      this.collect(buffer, at, newline)
      const end = this.position + newline
      const crlf = (newline > 0 ? buffer[newline - 1] : this.lastCollectedByte()) === CARRIAGE_RETURN
      if (!this.lineEndingKnown) {
        this.lineEnding = crlf ? '\r\n' : '\n'
        this.lineEndingKnown = true
      }
      this.finishLine(crlf ? end - 1 : end)
      this.line++
      this.previousByte = NEWLINE
      at = newline + 1
    }
  }

  private lastCollectedByte(): number | undefined {
    const last = this.pieces[this.pieces.length - 1]
    return last?.[last.length - 1]
  }

  /** A line ended: a record, unless it is blank (skipped: blank lines are not records). */
  private finishLine(end: number): void {
    const length = end - this.recordStart
    const blank = this.format === 'csv' ? length === 0 : this.isBlank()
    if (blank && !this.tooLarge) {
      this.resetRecord()
      return
    }
    this.finishRecord(end, false)
  }

  private isBlank(): boolean {
    for (const piece of this.pieces) {
      for (const byte of piece) if (!isWhitespace(byte)) return false
    }
    return true
  }

  // --- JSON: elements of one top-level array -------------------------------------------------

  private scanJson(buffer: Buffer, from: number): void {
    for (let at = from; at < buffer.length; at++) {
      const byte = buffer[at] as number
      if (this.jsonState !== 'element' && byte === NEWLINE) this.line++
      switch (this.jsonState) {
        case 'ignored':
          return
        case 'start':
          if (isWhitespace(byte)) continue
          if (byte !== OPEN_BRACKET) {
            throw new SourceFormatError(
              byte === OPEN_BRACE
                ? 'a json import must be a top-level JSON array of records, not a single object (use ndjson for one object per line)'
                : 'a json import must be a top-level JSON array of records',
            )
          }
          this.jsonState = 'before'
          continue
        case 'before':
        case 'after':
          if (isWhitespace(byte)) continue
          if (byte === CLOSE_BRACKET) {
            this.jsonState = 'end'
            continue
          }
          if (byte === COMMA && this.jsonState === 'after') {
            this.jsonState = 'before'
            continue
          }
          // An element starts (a stray comma starts one too: its parse fails, reported per record).
          this.jsonState = 'element'
          this.beginRecord(this.position + at)
          this.lineEndingKnown = true
          this.depth = 0
          this.inString = false
          this.escaped = false
          this.elementEnd = -1
          at = this.scanElement(buffer, at) - 1
          continue
        case 'element':
          at = this.scanElement(buffer, at) - 1
          continue
        case 'end':
          if (!isWhitespace(byte)) {
            this.warnings.push('data after the end of the JSON array was ignored')
            this.jsonState = 'ignored'
            return
          }
      }
    }
  }

  /**
   * Scans inside an element from `at`; returns where scanning stopped (the end of the buffer, or
   * the position of the `,` or `]` that ends the element, which the caller then reads).
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
        this.finishRecord(this.elementEnd + 1, false)
        this.jsonState = 'after'
        return at
      }
      if (byte === QUOTE) this.inString = true
      else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) this.depth++
      else if (byte === CLOSE_BRACE || byte === CLOSE_BRACKET) this.depth--
      else if (byte === NEWLINE) this.line++
      if (!isWhitespace(byte)) this.elementEnd = this.position + at
      at++
    }
    this.collect(buffer, from, buffer.length)
    return at
  }

  // --- Records and batches -------------------------------------------------------------------

  private beginRecord(offset: number): void {
    this.recordStart = offset
    this.recordLine = this.line
    this.pieces = []
    this.pieceBytes = 0
    this.tooLarge = false
  }

  private resetRecord(): void {
    this.recordStart = -1
    this.pieces = []
    this.pieceBytes = 0
    this.tooLarge = false
  }

  /** Keeps buffer[from, to) as part of the current record, unless it has grown too large. */
  private collect(buffer: Buffer, from: number, to: number): void {
    if (to <= from || this.tooLarge) return
    this.pieceBytes += to - from
    if (this.pieceBytes > this.options.maxRecordBytes) {
      this.tooLarge = true
      this.pieces = []
      return
    }
    this.pieces.push(buffer.subarray(from, to))
  }

  private finishRecord(end: number, unterminated: boolean): void {
    const length = Math.max(0, end - this.recordStart)
    if (!this.header && this.format === 'csv') {
      const bytes = Buffer.concat(this.pieces).subarray(0, length)
      this.header = { span: { record: 0, line: this.recordLine, offset: this.recordStart, length }, bytes }
      this.resetRecord()
      return
    }
    this.recordCount++
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
    })
    this.spans = []
    this.batchPieces = []
    this.batchStarts = []
    this.batchBytes = 0
  }
}

const NEWLINE_BUFFER = Buffer.from('\n')
