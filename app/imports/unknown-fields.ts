// Unknown fields (CSV columns, JSON keys that are not the resource's) are ignored and named once
// in the job's warnings (docs/contract.md §2). A file may hold any number of distinct ones (a key per record),
// so the job keeps the first UNKNOWN_FIELDS_LISTED names it meets and whether there were more: a
// warning of bounded size, stored with every batch's commit, which a resumed job takes up again.

/** Names listed in the warning; further ones are only counted as "more". */
export const UNKNOWN_FIELDS_LISTED = 100

/** Longest name listed, in code points (a CSV header cell or a JSON key may be long). */
export const UNKNOWN_FIELD_NAME_MAX_LENGTH = 100

/** The unknown fields a job has met so far: the first names (sorted), and whether it met more. */
export class UnknownFields {
  private readonly listed: Set<string>
  more: boolean

  constructor(names: readonly string[] = [], more = false) {
    this.listed = new Set(names)
    this.more = more
  }

  /** Adds the names a batch (or a CSV header) met; true when the list changed. */
  add(names: Iterable<string>, more = false): boolean {
    const before = this.listed.size
    const moreBefore = this.more
    for (const name of names) {
      if (this.listed.has(name)) continue
      if (this.listed.size < UNKNOWN_FIELDS_LISTED) this.listed.add(name)
      else this.more = true
    }
    if (more) this.more = true
    return this.listed.size !== before || this.more !== moreBefore
  }

  get names(): string[] {
    return [...this.listed].sort()
  }

  /** What a job records: the names listed and whether there were more. */
  get list(): UnknownFieldList {
    return { names: this.names, more: this.more }
  }

  /** The list of `names` (a CSV header's unknown columns, say), bounded. */
  static listOf(names: Iterable<string>): UnknownFieldList {
    const fields = new UnknownFields()
    fields.add(names)
    return fields.list
  }
}

/** The unknown fields a job records (import_jobs.unknown_fields and unknown_fields_more). */
export interface UnknownFieldList {
  names: string[]
  more: boolean
}

/** The warning naming the unknown fields, or undefined when there are none. */
export function unknownFieldsWarning(names: readonly string[], more: boolean): string | undefined {
  if (names.length === 0) return undefined
  const listed = `unknown field${names.length > 1 || more ? 's' : ''} ignored: ${names.join(', ')}`
  return more ? `${listed} (and more: only the first ${UNKNOWN_FIELDS_LISTED} names are listed)` : listed
}
