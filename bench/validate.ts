// Validation micro-benchmark (`node bench/validate.ts [records]`): validates generated valid
// records of each resource (CSV source: every cell is text to convert) and prints records per
// second. The records are generated up front, so only validation is timed, and go through a
// JSON round trip: a parser hands out flat strings, while the template literals that build them
// here are rope strings that V8 would flatten on first access, inside the timed loop.
import { performance } from 'node:perf_hooks'
import type { RecordOutcome } from '../app/workers/fields.ts'
import articles from '../resources/articles.ts'
import comments from '../resources/comments.ts'
import users from '../resources/users.ts'

const validateArticle = articles.validate
const validateComment = comments.validate
const validateUser = users.validate

const count = Number(process.argv[2] ?? 1_000_000)
const roles = ['admin', 'editor', 'author', 'reader']

function uuidOf(index: number): string {
  const hex = index.toString(16).padStart(12, '0')
  return `0f8fad5b-d9cb-469f-a165-${hex}`
}

function timestampOf(index: number): string {
  const second = String(index % 60).padStart(2, '0')
  const micros = String(index % 1_000_000).padStart(6, '0')
  return `2024-0${1 + (index % 9)}-1${index % 10}T12:34:${second}.${micros}Z`
}

function userRecord(index: number): Record<string, string> {
  return {
    id: uuidOf(index),
    email: `user${index}@example.com`,
    name: `User ${index}`,
    role: roles[index % 4] as string,
    active: index % 3 === 0 ? 'false' : 'true',
    created_at: timestampOf(index),
    updated_at: timestampOf(index + 1),
  }
}

function articleRecord(index: number): Record<string, string> {
  return {
    id: uuidOf(index),
    slug: `article-${index}`,
    title: `Article ${index}`,
    body: `The body of article ${index}.\nIt has two lines.`,
    author_id: uuidOf(index >> 2),
    tags: index % 2 === 0 ? 'news|tech' : '["news","tech"]',
    published_at: index % 2 === 0 ? timestampOf(index) : '',
    status: 'published',
  }
}

function commentRecord(index: number): Record<string, string> {
  return {
    id: uuidOf(index),
    article_id: uuidOf(index >> 3),
    user_id: uuidOf(index >> 2),
    body: `Comment ${index}: a few words about the article, nothing more.`,
    created_at: timestampOf(index),
  }
}

function run(
  name: string,
  generate: (index: number) => Record<string, string>,
  validate: (input: Record<string, unknown>, source: 'csv' | 'json') => RecordOutcome,
): void {
  const records: Record<string, string>[] = JSON.parse(
    JSON.stringify(Array.from({ length: count }, (_, index) => generate(index))),
  )
  // Warm-up, so that the timed loop runs optimized code.
  for (const record of records.slice(0, 100_000)) validate(record, 'csv')
  const started = performance.now()
  let failed = 0
  for (const record of records) if (!validate(record, 'csv').ok) failed++
  const seconds = (performance.now() - started) / 1000
  if (failed > 0) throw new Error(`${name}: ${failed} generated records failed validation`)
  const perSecond = Math.round(count / seconds).toLocaleString('en-US')
  const micros = ((seconds * 1e6) / count).toFixed(3)
  const total = count.toLocaleString('en-US')
  console.log(
    `${name.padEnd(8)} ${total} records in ${seconds.toFixed(3)} s: ${perSecond} records/s (${micros} µs/record)`,
  )
}

run('users', userRecord, validateUser)
run('articles', articleRecord, validateArticle)
run('comments', commentRecord, validateComment)
