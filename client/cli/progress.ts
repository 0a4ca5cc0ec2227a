// Progress on stderr, in one of three ways: a bar redrawn in place when stderr is a terminal; one
// line every few seconds (and at each change of phase) when it is not, so that logs stay readable;
// nothing with --quiet.

export type ProgressMode = 'bar' | 'lines' | 'none'

export interface ProgressState {
  /** The phase, in a word or two: "uploading", "queued", "running", "waiting: row_locks"… */
  phase: string
  /** 0–100, or null while unknown (no bar is drawn then). */
  percent: number | null
  /** What follows the bar: "48,120 rows/s", "ETA 7s", "12 failed"… */
  details: string[]
}

export interface ProgressOptions {
  stream: NodeJS.WriteStream
  mode: ProgressMode
  /** What the progress is of, e.g. "users.csv" or "import 1b2c3d4e". */
  subject: string
  /** Lines mode: milliseconds between two lines of the same phase. */
  intervalMs: number
}

const BAR_REDRAW_MS = 100

export class Progress {
  readonly #options: ProgressOptions
  #state: ProgressState | undefined
  #drawn = false
  #lastDraw = 0
  #pending: NodeJS.Timeout | undefined
  #ticker: NodeJS.Timeout | undefined
  #lastPhase = ''
  #lastLine = ''
  #sameLines = 0
  #suspended = false

  constructor(options: ProgressOptions) {
    this.#options = options
    if (options.mode === 'lines') {
      this.#ticker = setInterval(() => this.#writeLine(true), options.intervalMs)
      this.#ticker.unref()
    }
  }

  get mode(): ProgressMode {
    return this.#options.mode
  }

  update(state: ProgressState): void {
    this.#state = state
    if (this.#suspended) return
    if (this.#options.mode === 'lines') {
      // A new phase is said at once; within a phase, the ticker writes a line every interval.
      if (state.phase !== this.#lastPhase) this.#writeLine()
      return
    }
    if (this.#options.mode !== 'bar') return
    const wait = BAR_REDRAW_MS - (Date.now() - this.#lastDraw)
    if (wait <= 0) this.#draw()
    else this.#pending ??= setTimeout(() => this.#draw(), wait)
  }

  /** A line of its own (above the bar, when there is one). */
  note(line: string): void {
    if (this.#options.mode === 'none') return
    this.#clear()
    this.#options.stream.write(`${line}\n`)
    if (this.#options.mode === 'bar' && !this.#suspended) this.#draw()
  }

  /** Takes the bar off the screen (e.g. while a question is asked) until resume(). */
  suspend(): void {
    this.#suspended = true
    this.#clear()
  }

  resume(): void {
    this.#suspended = false
    if (this.#options.mode === 'bar') this.#draw()
  }

  /** The last state drawn for good: the bar stays on screen as it ended (lines mode said it when its phase began). */
  stop(): void {
    clearTimeout(this.#pending)
    clearInterval(this.#ticker)
    this.#pending = undefined
    if (this.#options.mode === 'bar' && this.#state) {
      this.#draw()
      this.#options.stream.write('\n')
      this.#drawn = false
    }
  }

  #draw(): void {
    clearTimeout(this.#pending)
    this.#pending = undefined
    const state = this.#state
    if (!state || this.#suspended) return
    this.#lastDraw = Date.now()
    const columns = this.#options.stream.columns || 80
    const percent = state.percent === null ? null : Math.max(0, Math.min(100, state.percent))
    const text = [
      this.#options.subject,
      state.phase,
      percent === null ? '' : `${percent.toFixed(percent < 10 ? 1 : 0)}%`.padStart(5),
      ...state.details,
    ].filter((part) => part !== '')
    let line: string
    if (percent === null) line = text.join('  ')
    else {
      const rest = text.slice(2).join('  ')
      const head = text.slice(0, 2).join(' ')
      const width = Math.max(10, Math.min(30, columns - head.length - rest.length - 6))
      const filled = Math.round((percent / 100) * width)
      line = `${head} ▕${'█'.repeat(filled)}${'░'.repeat(width - filled)}▏ ${rest}`
    }
    // Never as wide as the terminal: a wrapped line could not be redrawn in place (and room is left
    // for the ^C a terminal echoes).
    if (line.length > columns - 3) line = `${line.slice(0, Math.max(0, columns - 4))}…`
    this.#options.stream.write(`\r${line}\x1b[K`)
    this.#drawn = true
  }

  #clear(): void {
    if (this.#drawn) this.#options.stream.write('\r\x1b[K')
    this.#drawn = false
  }

  /**
   * A progress line. On the ticker, a line that says nothing new waits: one in six intervals is
   * still written (30 s by default), so that a log shows the wait is alive.
   */
  #writeLine(ticking = false): void {
    const state = this.#state
    if (!state || this.#suspended) return
    this.#lastPhase = state.phase
    const percent = state.percent === null ? '' : ` ${state.percent.toFixed(1)}%`
    const details = state.details.length ? `, ${state.details.join(', ')}` : ''
    const line = `${this.#options.subject}: ${state.phase}${percent}${details}\n`
    if (ticking && line === this.#lastLine && ++this.#sameLines % 6 !== 0) return
    if (line !== this.#lastLine) this.#sameLines = 0
    this.#lastLine = line
    this.#options.stream.write(line)
  }
}
