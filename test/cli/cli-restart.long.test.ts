import { writeFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { drain } from '../../app/server.ts'
import { createTestDatabase } from '../db.ts'
import {
  buildTestApp,
  countRows,
  outsiderConnection,
  scratchDirectory,
  startImport,
  until,
  usersCsv,
  waitForImport,
} from '../helper.ts'
import { listen, startCli } from './run-cli.ts'

// The CLI across a restart of the service (a drain, then a second service on the same port):
// `make test-long`, beside the other restart tests; cli.test.ts has the rest of the CLI.

const scratch = scratchDirectory('bulk-io-cli-')
const file = (name: string, text: string) => {
  const at = path.join(scratch, name)
  writeFileSync(at, text)
  return at
}

t.test('the service restarts mid-import: the CLI follows the job on, to its end', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const environment = { BATCH_SIZE: '500' }
  const first = await buildTestApp(t, { databaseUrl, environment })
  first.jobs.start()
  await waitForImport(first, (await startImport(first, 'users', usersCsv(3000, { prefix: 'restart' }))).id)
  // A row locked a third into the file holds the job there, running.
  const other = await outsiderConnection(t, databaseUrl)
  await other`begin`
  await other`select * from users where email = 'restart2000@example.com' for update`
  const url = await listen(first)
  const csv = file('restart.csv', usersCsv(6000, { prefix: 'restart' }))
  const run = startCli(['import', csv, '-r', 'users', '--progress-interval', '0.2'], { API_URL: url })
  await until(async () => (/waiting \(row_locks\)/.test(run.output().stderr) ? true : undefined), 'the job to wait')

  // The service drains as on SIGTERM (the job goes back to the queue, the events stream ends),
  // and another starts on the same port. An upload still in flight keeps the first one closing
  // for a few seconds, during which it answers 503 on the connections it still has open.
  const upload = new TransformStream<Uint8Array, Uint8Array>()
  const uploading = upload.writable.getWriter()
  const held = fetch(`${url}/api/v1/imports`, {
    method: 'POST',
    headers: { 'content-type': 'multipart/form-data; boundary=held' },
    body: upload.readable,
    duplex: 'half',
  } as RequestInit).catch(() => undefined)
  await uploading.write(
    new TextEncoder().encode('--held\r\ncontent-disposition: form-data; name="resource"\r\n\r\nusers\r\n'),
  )
  const drained = drain(first, { reason: 'test', drainDelayMs: 0 })
  await new Promise((resolve) => setTimeout(resolve, 4000))
  await uploading.abort().catch(() => {})
  await Promise.all([drained, held])
  const second = await buildTestApp(t, { databaseUrl, environment })
  await second.listen({ host: '127.0.0.1', port: Number(new URL(url).port) })
  second.jobs.start()
  await other`rollback`
  other.release()

  const result = await run.result
  t.equal(result.code, 0, result.stderr)
  t.match(result.stdout, /completed in \d+s: 6,000 records: 3,000 inserted, 3,000 updated, 0 failed/)
  t.match(result.stderr, /waiting \(row_locks\)[\s\S]*completed 100\.0%/, 'one progress, across the restart')
  t.equal(await countRows(second, `select 1 from users where email like 'restart%'`), 6000)
})
