// When a batch of an import tries the insert-first statement (db/upsert.ts, insertNewRange)
// before the upsert. A file of new records, the common first load, then writes at the speed of a
// plain INSERT … SELECT (about three times the upsert's, which looks up every record's keys); a
// batch with one record that is not new fails it and runs the upsert, so its outcome is the
// same either way. A file that updates wastes the failed tries: after a failure the next batches
// skip the try, twice as many after each failure in a row (up to MAX_SKIPPED), none after a success.

const MAX_SKIPPED = 64

export class InsertFirst {
  /** Batches still to skip before the next try. */
  private skipping = 0
  /** How many the next failure makes skip. */
  private nextSkip = 1

  /** Whether the next batch (in file order) tries the insert-first statement. */
  wanted(): boolean {
    if (this.skipping === 0) return true
    this.skipping--
    return false
  }

  succeeded(): void {
    this.nextSkip = 1
  }

  failed(): void {
    this.skipping = this.nextSkip
    this.nextSkip = Math.min(MAX_SKIPPED, this.nextSkip * 2)
  }
}
