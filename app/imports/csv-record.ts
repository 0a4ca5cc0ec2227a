// The fields of one CSV record, by the one CSV rule of the service (docs/api.md, "Records and
// errors"): RFC 4180 — fields separated by commas, a quoted field doubling its quotes (`""`) —
// with one leniency: a quote opens a quoted field only as the field's first character and is an
// ordinary character anywhere else. Text after a closing quote makes the record unreadable. The
// record splitter (app/imports/record-splitter.ts) finds where records end by the same rule, so
// a malformed record never moves the boundaries of the others; the CSV header and every record
// (in the worker threads) are read with this function.

/**
 * The fields of `text`, one CSV record without its line end (a CR in it is an ordinary
 * character), or a message saying why it cannot be read.
 */
export function parseCsvFields(text: string): string[] | string {
  const fields: string[] = []
  let at = 0
  const length = text.length
  for (;;) {
    let value: string
    if (text.charCodeAt(at) === 0x22) {
      value = ''
      let from = at + 1
      for (;;) {
        const quote = text.indexOf('"', from)
        if (quote === -1) return 'a quoted field is not closed'
        value += text.slice(from, quote)
        if (text.charCodeAt(quote + 1) === 0x22) {
          value += '"'
          from = quote + 2
          continue
        }
        at = quote + 1
        break
      }
      if (at < length && text.charCodeAt(at) !== 0x2c) {
        return `a quoted field is followed by other text in field ${fields.length + 1}`
      }
    } else {
      const comma = text.indexOf(',', at)
      const end = comma === -1 ? length : comma
      value = text.slice(at, end)
      at = end
    }
    fields.push(value)
    if (at >= length) break
    at++ // the comma
    if (at === length) {
      // A trailing comma: one more, empty field.
      fields.push('')
      break
    }
  }
  return fields
}
