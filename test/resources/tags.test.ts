import t from 'tap'
import { defaultResources } from '../../resources/index.ts'
import type { ExportJob } from '../../schemas/exports.ts'
import { buildTestApp, countRows, importAndWait, until } from '../helper.ts'
import tags, { tagColumns } from './tags/tags.ts'

// A resource is one descriptor and one migration: `tags` lives only in test/resources/tags/ (its
// descriptor and its migration) and in this test. Given to the app beside the service's own
// resources, it gets its table migrated, its import, its stream and async exports, its schemas
// in the OpenAPI document and its metrics, with no other file knowing of it.

const names = Array.from({ length: 2_000 }, (_, index) => `tag-${index + 1}`)
const colors = ['#ff0000', '#00ff00', '#0000ff']
const csv = [
  'name,color',
  ...names.map((name, index) => `${name},${colors[index % colors.length]}`),
  'bad-color,red', // record 2001: invalid_format
  ',#ff0000', // 2002: required
  'tag-1,#0000ff', // 2003: no id, so it updates tag-1 (its natural key): the colour changes
].join('\n')

t.test('a fourth resource from a descriptor under test/: import, stream export, async export, OpenAPI', async (t) => {
  const app = await buildTestApp(t, { resources: [...defaultResources, tags] })
  app.jobs.start()

  // Its migration ran with the service's own.
  t.equal(await countRows(app, 'tags'), 0, 'the table exists, empty')

  // Import: the job runs in the job thread, validation in the validation threads (both load the
  // descriptor by its module), the upsert in the database.
  const job = await importAndWait(app, { resource: 'tags', file: `${csv}\n`, filename: 'tags.csv' })
  t.equal(job.status, 'completed')
  t.equal(job.resource, 'tags')
  t.match(job.counters, { processed: 2_003, inserted: 2_000, updated: 1, failed: 2 })
  t.match(
    job.errors.map(({ record, field, code }) => ({ record, field, code })),
    [
      { record: 2001, field: 'color', code: 'invalid_format' },
      { record: 2002, field: 'name', code: 'required' },
    ],
  )
  t.equal(await countRows(app, 'tags'), 2_000)
  t.same(await app.sql`select color from tags where name = 'tag-1'`, [{ color: '#0000ff' }], 'updated by name')

  // A record that claims another tag's name with an id of its own: the upsert's unique_violation.
  const clash = await importAndWait(app, {
    resource: 'tags',
    file: '[{"id":"5a0c7c2e-8a43-4d57-9f1b-1f0e2d3c4b5a","name":"tag-2"}]',
    filename: 'clash.json',
  })
  t.match(clash.counters, { processed: 1, failed: 1 })
  t.match(clash.errors, [{ field: 'name', code: 'unique_violation' }])

  // Stream export, with the resource's own filter.
  const red = await app.inject({ url: '/api/v1/exports/tags/stream?format=csv&color=%23ff0000' })
  t.equal(red.statusCode, 200)
  const redRows = red.body.trim().split('\n')
  t.equal(redRows[0], tagColumns.join(','), 'the header is the descriptor’s columns')
  t.equal(redRows.length - 1, await countRows(app, "select 1 from tags where color = '#ff0000'"))
  const unknownFilter = await app.inject({ url: '/api/v1/exports/tags/stream?role=admin' })
  t.equal(unknownFilter.statusCode, 400, 'another resource’s filter is refused')

  const all = await app.inject({ url: '/api/v1/exports/tags/stream?format=ndjson' })
  const streamed = all.body
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { id: string; name: string })
  t.equal(streamed.length, 2_000)
  t.same(Object.keys(streamed[0] ?? {}), [...tagColumns])

  // Async export: the job thread builds its COPY from the same descriptor.
  const created = await app.inject({
    method: 'POST',
    url: '/api/v1/exports',
    payload: { resource: 'tags', format: 'ndjson', filters: { created_after: '2000-01-01T00:00:00Z' } },
  })
  t.equal(created.statusCode, 202, created.body)
  const exported = await until(async () => {
    const view = (await app.inject({ url: `/api/v1/exports/${created.json<ExportJob>().id}` })).json<ExportJob>()
    return view.done ? view : undefined
  }, 'the tags export')
  t.equal(exported.status, 'completed')
  t.same(exported.fields, [...tagColumns])
  const download = await app.inject({ url: exported.download_url as string })
  t.equal(download.body, all.body, 'the file holds what the stream sent')

  // A round trip: the exported CSV imports back as 2,000 updates, nothing changed.
  const before = await app.sql`select id, name, color, created_at from tags order by id`
  const csvExport = await app.inject({ url: '/api/v1/exports/tags/stream?format=csv' })
  const again = await importAndWait(app, { resource: 'tags', file: csvExport.body, filename: 'again.csv' })
  t.match(again.counters, { processed: 2_000, inserted: 0, updated: 2_000, failed: 0 })
  t.same(await app.sql`select id, name, color, created_at from tags order by id`, before)

  // The OpenAPI document has it everywhere resources are named.
  const document = app.swagger() as {
    paths: Record<string, { get?: { operationId?: string } }>
    components: { schemas: Record<string, { properties?: Record<string, { enum?: string[] }> }> }
  }
  t.equal(document.paths['/api/v1/exports/tags/stream']?.get?.operationId, 'streamTagsExport')
  const schemas = document.components.schemas
  t.ok(schemas.TagExportFilters, 'its filters')
  t.ok(schemas.TagsExportRequest, 'its export request')
  t.same(schemas.ImportJob?.properties?.resource?.enum, ['users', 'articles', 'comments', 'tags'])
  t.same(schemas.ImportFromUrl?.properties?.resource?.enum, ['users', 'articles', 'comments', 'tags'])
  t.same(schemas.ExportJob?.properties?.resource?.enum, ['users', 'articles', 'comments', 'tags'])
  t.match(JSON.stringify(schemas.ExportRequest), /TagsExportRequest/)

  // And its metrics series, at zero or counted.
  const metrics = (await app.inject({ url: '/metrics' })).body
  t.match(metrics, /bulkio_import_records_total\{[^}]*resource="tags"[^}]*outcome="inserted"[^}]*\} 2000/)
  t.match(metrics, /bulkio_export_rows_total\{resource="tags",format="ndjson",mode="async"\} 2000/)
})

t.test('an app without the fourth resource refuses it', async (t) => {
  const app = await buildTestApp(t)
  const upload = await app.inject({
    method: 'POST',
    url: '/api/v1/imports',
    payload: { resource: 'tags', url: 'https://example.com/tags.csv' },
  })
  t.equal(upload.statusCode, 400)
  t.match(upload.json(), { errors: [{ name: 'resource' }] })
  const stream = await app.inject({ url: '/api/v1/exports/tags/stream' })
  t.equal(stream.statusCode, 400)
  t.match(stream.json(), { detail: 'There is no resource "tags" to export; use one of users, articles, comments.' })
})
