import t from 'tap'
import type { ExportJob } from '../../schemas/exports.ts'
import type { ImportJob } from '../../schemas/imports.ts'
import { buildTestApp, generated, importAndWait, startImport, until, waitForImport } from '../helper.ts'
import { s3Fixture, usersDigest, waitForExport } from '../setup/s3-fixture.ts'

// The object store (STORAGE=s3, a real Swift: test/setup/s3-server.ts) goes away while jobs run:
// requests get clear problems, /ready says so, jobs wait instead of failing, and resume when it is
// back, ending as an uninterrupted run. (Long: two imports of 200,000 records and a wait.)

const fixture = s3Fixture(t, ['bulk-io'])
const { app: s3App } = fixture

t.test(
  'the store goes away mid-import and mid-export: clear problems, and the jobs resume when it is back',
  async (t) => {
    const file = await generated({ resource: 'users', format: 'csv', rows: 200_000, defectRate: 0.02, seed: 11 })
    const reference = await buildTestApp(t, { environment: { BATCH_SIZE: '2000' } })
    reference.jobs.start()
    const referenceJob = await importAndWait(reference, { resource: 'users', file, filename: 'users.csv' })

    const app = await s3App(t, 'away/', { BATCH_SIZE: '2000', S3_MAX_ATTEMPTS: '2' })
    const { id } = await startImport(app, 'users', file, 'users.csv')
    await until(async () => {
      const job = (await app.inject({ url: `/api/v1/imports/${id}` })).json<ImportJob>()
      return job.counters.processed >= 20_000 ? job : undefined
    }, 'the import under way')
    await fixture.server.halt()
    try {
      const ready = await until(async () => {
        const response = await app.inject({ url: '/ready' })
        return response.statusCode === 503 ? response : undefined
      }, '/ready to see the store away')
      t.match(ready.json(), { code: 'store_unavailable', reason: 'store_down' })
      const refused = await app.inject({
        method: 'POST',
        url: '/api/v1/exports',
        payload: { resource: 'users', format: 'csv' },
      })
      t.equal(refused.statusCode, 202, 'an export is queued while the store is away')
      const exportId = refused.json<ExportJob>().id
      const upload = await app.inject({
        method: 'POST',
        url: '/api/v1/imports',
        payload: { resource: 'users', url: 'https://example.com/users.csv' },
      })
      t.not(upload.statusCode, 500, 'no 500 while the store is away')
      // Given time to fail, neither job does: they wait for the store.
      await new Promise((resolve) => setTimeout(resolve, 8000))
      const waiting = (await app.inject({ url: `/api/v1/imports/${id}` })).json<ImportJob>()
      t.not(waiting.status, 'failed', `the import waits (${waiting.status}, ${JSON.stringify(waiting.error)})`)
      t.ok(waiting.counters.processed < 200_000, 'it stopped where the store went away')
      const exportWaiting = (await app.inject({ url: `/api/v1/exports/${exportId}` })).json<ExportJob>()
      t.not(exportWaiting.status, 'failed', `the export waits (${exportWaiting.status})`)
      await fixture.server.resume()
      const job = await waitForImport(app, id)
      t.equal(job.status, 'completed', JSON.stringify(job.error))
      t.same(job.counters, referenceJob.counters, 'the counters of an uninterrupted run')
      t.same(await usersDigest(app), await usersDigest(reference), 'the rows of an uninterrupted run')
      const exported = await waitForExport(app, exportId)
      t.equal(exported.status, 'completed')
      const download = await app.inject({ url: `/api/v1/exports/${exportId}/download` })
      t.equal(download.statusCode, 200)
      t.equal(Number(download.headers['content-length']), exported.counters.bytes)
      t.equal((await app.inject({ url: '/ready' })).statusCode, 200, 'ready again')
    } finally {
      await fixture.server.resume().catch(() => {})
    }
  },
)
