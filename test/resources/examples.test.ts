import t from 'tap'
import { exampleCsv, exampleNdjson } from '../../resources/examples.ts'
import { defaultResources } from '../../resources/index.ts'
import { buildTestApp, importAndWait } from '../helper.ts'

// The descriptors' example records, which docs/api.md shows: each resource's examples import
// without an error, as CSV and as NDJSON, in the order users, articles, comments; a second
// import of the same files updates every record; an export gives them back.

t.test('the example records import as the docs say', async (t) => {
  const app = await buildTestApp(t)
  app.jobs.start()

  for (const resource of defaultResources) {
    for (const record of resource.examples) {
      t.match(resource.validate(record, 'json'), { ok: true }, `${resource.name}: a valid example`)
    }
    const count = resource.examples.length
    const first = await importAndWait(app, {
      resource: resource.name,
      file: exampleCsv(resource),
      filename: 'examples.csv',
    })
    t.match(
      first.counters,
      { processed: count, inserted: count, updated: 0, failed: 0 },
      `${resource.name}: the CSV inserts every example`,
    )
    t.same(first.errors, [])
    const again = await importAndWait(app, {
      resource: resource.name,
      file: exampleNdjson(resource),
      filename: 'examples.ndjson',
    })
    t.match(
      again.counters,
      { processed: count, inserted: 0, updated: count, failed: 0 },
      `${resource.name}: the NDJSON updates them (by id or natural key)`,
    )
  }

  const users = await app.inject({ url: '/api/v1/exports/users/stream?format=ndjson' })
  const exported = users.body
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>)
  const [ada, grace] = defaultResources[0].examples
  t.match(
    exported.find((user) => user.id === ada?.id),
    { email: ada?.email, name: ada?.name, role: ada?.role, active: true, created_at: '2024-01-15T09:30:00+00:00' },
  )
  t.match(
    exported.find((user) => user.email === grace?.email),
    { name: grace?.name, active: true },
  )
})
