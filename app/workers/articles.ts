import { ArticleRecordSchema, articleColumns } from '../../schemas/articles.ts'
import {
  body,
  csvTags,
  jsonTags,
  nullableText,
  type RecordOutcome,
  RecordValidator,
  type Source,
  shortText,
  uuid,
} from './fields.ts'

const articles = new RecordValidator(ArticleRecordSchema, articleColumns, {
  expected: { slug: 'kebab-case (a-z, 0-9, single hyphens)' },
  rules: [
    {
      field: 'published_at',
      code: 'invalid_state',
      message: 'a draft must not have published_at',
      // Only this record's fields: a record that leaves published_at out but turns a published
      // row into a draft is caught by the upsert, which sees the stored row.
      broken: (row) => row.status === 'draft' && typeof row.published_at === 'string',
    },
  ],
})

/**
 * Validates one article record (docs/contract.md §2): a CSV row (text cells keyed by header) or a parsed JSON
 * object; unknown keys are ignored. The row holds the values to store: short texts and tags
 * trimmed, the body as given, UUIDs in lower case, published_at null when empty or null; absent
 * fields are left undefined (the upsert gives them their defaults).
 */
export function validate(input: Record<string, unknown>, source: Source): RecordOutcome {
  return articles.outcome(input, {
    id: uuid(input.id),
    slug: shortText(input.slug),
    title: shortText(input.title),
    body: body(input.body),
    author_id: uuid(input.author_id),
    tags: source === 'csv' ? csvTags(input.tags) : jsonTags(input.tags),
    published_at: nullableText(input.published_at),
    status: shortText(input.status),
  })
}
