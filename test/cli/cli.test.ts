import { randomUUID } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { type AddressInfo, createServer } from 'node:net'
import path from 'node:path'
import t from 'tap'
import { createClient, dataOf } from '../../client/index.ts'
import { appWithLockedUser, buildTestApp, countRows, scratchDirectory, until, usersCsv } from '../helper.ts'
import { listen, runCli, startCli } from './run-cli.ts'

// The CLI as a script meets it: stdout and stderr are pipes (so progress comes as lines), against
// a service listening on a real port with API keys on.

const apiKey = 'cli-test-key-0123456789'
const app = await buildTestApp(t, { environment: { API_KEYS: apiKey, BATCH_SIZE: '500' } })
app.jobs.start()
const apiUrl = await listen(app)
const env = { API_URL: apiUrl, API_KEY: apiKey }
const scratch = scratchDirectory('bulk-io-cli-')
const file = (name: string, text: string) => {
  const at = path.join(scratch, name)
  writeFileSync(at, text)
  return at
}

// 2,000 users, three of them bad (a bad email, a bad role, a missing name).
const users = usersCsv(2000, { prefix: 'cli' })
  .replace('cli7@example.com', 'not-an-email')
  .replace('User 70,reader', 'User 70,boss')
  .replace('User 700,reader', ',reader')
const withErrors = file('users.csv', users)

t.test('import: lines of progress on a pipe, a summary, exit 3 with failed records', async (t) => {
  const result = await runCli(['import', withErrors, '--resource', 'users', '--progress-interval', '0.2'], env)
  t.equal(result.code, 3, result.stderr)
  const id = /import ([0-9a-f-]{36}) completed/.exec(result.stdout)?.[1]
  t.ok(id, 'the summary names the job')
  t.match(result.stdout, '2,000 records: 1,997 inserted, 0 updated, 3 failed')
  t.match(result.stdout, /line 8, email: /, 'the first errors, by line and field')
  t.match(result.stdout, `bulk-io jobs errors ${id}`, 'where to fetch every error')
  t.match(result.stdout, `${apiUrl}/api/v1/imports/${id}/failed-records`, 'and the failed records')
  t.notOk(
    result.stderr.includes('\r') || result.stderr.includes('\u001b'),
    'no bar and no escape codes when stderr is not a terminal',
  )
  t.match(result.stderr, /^users\.csv: (queued|running)/m, 'progress lines')
  t.match(result.stderr, /^users\.csv: completed 100\.0%, 2,000 records, 3 failed$/m, 'the last line says how it ended')
  t.equal(await countRows(app, `select 1 from users where email like 'cli%'`), 1997)

  t.test('jobs errors, failed-records, then the fixed records imported', async (t) => {
    const errorsFile = path.join(scratch, 'errors.ndjson')
    const errors = await runCli(['jobs', 'errors', id as string, '-o', errorsFile], env)
    t.equal(errors.code, 0, errors.stderr)
    const lines = readFileSync(errorsFile, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
    t.same(
      lines.map((line) => [line.line, line.field]),
      [
        [8, 'email'],
        [71, 'role'],
        [701, 'name'],
      ],
    )
    const csv = await runCli(['jobs', 'errors', id as string, '--format', 'csv'], env)
    t.match(csv.stdout, /^line,record,id,field,code,message,value\n/, 'CSV errors on stdout')

    const failedFile = path.join(scratch, 'failed.csv')
    const failed = await runCli(['jobs', 'failed-records', id as string, '-o', failedFile], env)
    t.equal(failed.code, 0, failed.stderr)
    t.match(failed.stderr, `to ${failedFile}`)
    const rows = readFileSync(failedFile, 'utf8')
    t.equal(
      rows,
      'email,name,role\nnot-an-email,User 7,reader\ncli70@example.com,User 70,boss\ncli700@example.com,,reader\n',
    )
    const fixed = file(
      'fixed.csv',
      rows.replace('not-an-email', 'cli7@example.com').replace('boss', 'editor').replace(',,', ',User 700,'),
    )
    const again = await runCli(['import', fixed, '--resource', 'users', '--json', '--quiet'], env)
    t.equal(again.code, 0, again.stderr)
    t.equal(again.stderr, '', '--quiet: nothing on stderr')
    const job = JSON.parse(again.stdout)
    t.same(job.counters, { processed: 3, inserted: 3, updated: 0, failed: 0 })
    t.equal(await countRows(app, `select 1 from users where email like 'cli%'`), 2000)
  })

  t.test('jobs list and show', async (t) => {
    const listed = await runCli(['jobs', 'list', '--kind', 'imports', '--json'], env)
    t.equal(listed.code, 0, listed.stderr)
    t.ok(
      JSON.parse(listed.stdout).imports.items.some((job: { id: string }) => job.id === id),
      '--json lists the page',
    )
    const table = await runCli(['jobs'], env)
    t.match(table.stdout, /^ID +KIND +RESOURCE +STATUS +PROGRESS +CREATED$/m)
    t.match(table.stdout, new RegExp(`^${id} +import +users +completed +2,000 records, 3 failed`, 'm'))
    const shown = await runCli(['jobs', 'show', id as string], env)
    t.match(shown.stdout, /status +completed/)
    t.match(shown.stdout, /records +2,000 processed: 1,997 inserted, 0 updated, 3 failed/)
    const missing = await runCli(['jobs', 'show', randomUUID()], env)
    t.equal(missing.code, 1)
    t.match(missing.stderr, 'no import or export job has the id')
  })
})

t.test('import --dry-run writes nothing; --idempotency-key gives the same job twice', async (t) => {
  const csv = file('dry.csv', usersCsv(50, { prefix: 'dry' }))
  const dry = await runCli(['import', csv, '-r', 'users', '--dry-run'], env)
  t.equal(dry.code, 0, dry.stderr)
  t.match(dry.stdout, 'dry run of import')
  t.match(dry.stdout, '50 records: 50 inserted')
  t.match(dry.stdout, 'nothing was written')
  t.equal(await countRows(app, `select 1 from users where email like 'dry%'`), 0)

  const key = `cli-${randomUUID()}`
  const args = ['import', csv, '-r', 'users', '--idempotency-key', key, '--detach', '--json']
  const first = await runCli(args, env)
  const second = await runCli(args, env)
  t.equal(first.code, 0, first.stderr)
  t.equal(JSON.parse(second.stdout).id, JSON.parse(first.stdout).id, 'the retry is the same job')
  const watched = await runCli(['jobs', 'watch', JSON.parse(first.stdout).id, '--json'], env)
  t.equal(watched.code, 0, watched.stderr)
  t.equal(JSON.parse(watched.stdout).status, 'completed', 'jobs watch follows it to the end')
})

t.test('export: to a file and to stdout, with fields and filters, rows counted', async (t) => {
  const total = await countRows(app, 'users')
  const out = path.join(scratch, 'users-export.csv')
  const toFile = await runCli(['export', 'users', '--format', 'csv', '-o', out, '--progress-interval', '0.1'], env)
  t.equal(toFile.code, 0, toFile.stderr)
  const text = readFileSync(out, 'utf8')
  t.equal(text.trim().split('\n').length, total + 1, 'a header and every row')
  t.match(toFile.stderr, `exported ${total.toLocaleString('en-US')} users`)
  t.match(toFile.stderr, /^export users: done, [\d,]+ rows/m)

  const ndjson = await runCli(
    ['export', 'users', '--fields', 'email,role', '--filter', 'role=editor', '--json', '--quiet'],
    env,
  )
  t.equal(ndjson.code, 0, ndjson.stderr)
  const rows = ndjson.stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line))
  t.same(rows, [{ email: 'cli70@example.com', role: 'editor' }], 'only the filtered row, only the fields asked')
  t.same(JSON.parse(ndjson.stderr).rows, 1, '--json with the data on stdout: the summary on stderr')

  const json = await runCli(
    ['export', 'users', '--format', 'json', '--fields', 'id', '-o', path.join(scratch, 'u.json'), '--json'],
    env,
  )
  t.equal(JSON.parse(json.stdout).rows, total, 'a JSON array: rows counted without its brackets')
  t.equal(JSON.parse(readFileSync(path.join(scratch, 'u.json'), 'utf8')).length, total)

  const badFilter = await runCli(['export', 'users', '--filter', 'updated_after=yesterday'], env)
  t.equal(badFilter.code, 1)
  t.match(badFilter.stderr, /^error: 400 /m, 'the service’s problem')
  t.match(badFilter.stderr, /updated_after/, 'and the failing field')
})

t.test('an async export: jobs watch, then jobs download', async (t) => {
  const client = createClient({ baseUrl: apiUrl, apiKey })
  const job = dataOf(await client.POST('/api/v1/exports', { body: { resource: 'users', format: 'csv' } as never }))
  const watched = await runCli(['jobs', 'watch', job.id], env)
  t.equal(watched.code, 0, watched.stderr)
  t.match(watched.stdout, `bulk-io jobs download ${job.id}`)
  const out = path.join(scratch, 'download.csv')
  const downloaded = await runCli(['jobs', 'download', job.id, '-o', out], env)
  t.equal(downloaded.code, 0, downloaded.stderr)
  const final = dataOf(await client.GET('/api/v1/exports/{id}', { params: { path: { id: job.id } } }))
  t.equal(readFileSync(out).length, final.counters.bytes, 'the whole file')
  const cancel = await runCli(['jobs', 'cancel', job.id], env)
  t.equal(cancel.code, 1)
  t.match(cancel.stderr, 'export jobs cannot be cancelled')
})

t.test('usage errors exit 2; service errors exit 1, with what to do', async (t) => {
  const usage: [string[], string | RegExp][] = [
    [[], /^Usage: bulk-io/m],
    [['frobnicate'], 'unknown command frobnicate'],
    [['import', withErrors], '--resource is required'],
    [['import', withErrors, '--resource', 'tags'], '--resource must be one of users, articles, comments'],
    [['import', path.join(scratch, 'missing.csv'), '-r', 'users'], 'cannot read'],
    [['import', withErrors, '-r', 'users', '--format', 'xml'], '--format must be one of'],
    [['import', withErrors, '-r', 'users', '--colour'], "Unknown option '--colour'"],
    [['export'], 'name the resource'],
    [['jobs', 'show'], "name the job's id"],
    [['jobs', 'show', 'abc'], 'not a job id'],
    [['jobs', 'list', '--limit', '0'], '--limit'],
    [['jobs', 'list', '--api-url', 'ftp://x'], 'must be an http(s) URL'],
  ]
  const results = await Promise.all(usage.map(([args]) => runCli(args, env)))
  for (const [index, [args, message]] of usage.entries()) {
    t.equal(results[index]?.code, 2, `bulk-io ${args.join(' ')}: exit 2`)
    t.match(results[index]?.stderr, message)
  }
  const help = await runCli(['import', '--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /^Usage: bulk-io import/)

  const noKey = await runCli(['jobs', 'list'], { API_URL: apiUrl })
  t.equal(noKey.code, 1)
  t.match(noKey.stderr, /^error: 401 /m)
  t.match(noKey.stderr, 'set API_KEY or --api-key')
  const badKey = await runCli(['jobs', 'list', '--api-key', 'wrong'], { API_URL: apiUrl })
  t.equal(badKey.code, 1)

  const closed = await closedPort()
  const nobody = await runCli(['jobs', 'list', '--api-url', `http://127.0.0.1:${closed}`], {})
  t.equal(nobody.code, 1)
  t.match(nobody.stderr, `cannot reach the service at http://127.0.0.1:${closed}: ECONNREFUSED`)
})

/** A port nothing listens on (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

t.test('Ctrl-C when nobody can answer: the job is left running, exit 130, and cancelled later', async (t) => {
  const { app: locked, other } = await appWithLockedUser(t, { prefix: 'sig', seeded: 100, locked: 80 })
  const url = await listen(locked)
  const csv = file('sig.csv', usersCsv(200, { prefix: 'sig' }))
  const run = startCli(['import', csv, '-r', 'users', '--progress-interval', '0.2'], { API_URL: url })
  await until(async () => (/waiting \(row_locks\)/.test(run.output().stderr) ? true : undefined), 'the job to wait')
  run.child.kill('SIGINT')
  const result = await run.result
  t.equal(result.code, 130, result.stderr)
  const id = /import ([0-9a-f-]{36}) queued/.exec(result.stderr)?.[1] as string
  t.match(result.stderr, `left import ${id} running`)
  t.match(result.stderr, `bulk-io jobs cancel ${id}`)

  const cancelled = await runCli(['jobs', 'cancel', id], { API_URL: url })
  t.equal(cancelled.code, 0, cancelled.stderr)
  t.match(cancelled.stdout, new RegExp(`import ${id} (is cancelling|cancelled)`))
  const watched = await runCli(['jobs', 'watch', id], { API_URL: url })
  t.equal(watched.code, 1, 'a cancelled import exits 1')
  t.match(watched.stdout, `import ${id} cancelled`)
  await other`rollback`
  other.release()
})
