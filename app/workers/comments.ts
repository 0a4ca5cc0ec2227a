import { COMMENT_BODY_MAX_WORDS, CommentRecordSchema, commentColumns } from '../../schemas/comments.ts'
import { body, hasMoreWordsThan, type RecordOutcome, RecordValidator, type Source, shortText, uuid } from './fields.ts'

const comments = new RecordValidator(CommentRecordSchema, commentColumns, {
  rules: [
    {
      field: 'body',
      code: 'too_long',
      message: `must have at most ${COMMENT_BODY_MAX_WORDS} words`,
      broken: (row) => typeof row.body === 'string' && hasMoreWordsThan(row.body, COMMENT_BODY_MAX_WORDS),
    },
  ],
})

/**
 * Validates one comment record (docs/contract.md §2): a CSV row (text cells keyed by header) or a parsed JSON
 * object; unknown keys are ignored. Every field is text, so CSV and JSON are read alike. The row
 * holds the values to store: UUIDs in lower case, the body as given, created_at trimmed (left
 * undefined when absent).
 */
export function validate(input: Record<string, unknown>, _source: Source): RecordOutcome {
  return comments.outcome(input, {
    id: uuid(input.id),
    article_id: uuid(input.article_id),
    user_id: uuid(input.user_id),
    body: body(input.body),
    created_at: shortText(input.created_at),
  })
}
