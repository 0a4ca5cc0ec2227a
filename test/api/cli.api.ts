import { randomUUID } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { runCli } from '../cli/run-cli.ts'
import { scratchDirectory } from '../helper.ts'

// `make test-api`, through the CLI: what a person does from a terminal, against the service that
// already runs (API_URL, API_KEY as for flow.api.ts). Rows are named after this run.

const env: Record<string, string> = { API_URL: process.env.API_URL ?? 'http://127.0.0.1:8080' }
if (process.env.API_KEY) env.API_KEY = process.env.API_KEY
const run = randomUUID().slice(0, 8)
const scratch = scratchDirectory('bulk-io-cli-api-')

t.test(`import, fix and re-import, export, through bulk-io (service at ${env.API_URL})`, async (t) => {
  const rows = ['email,name,role']
  for (let index = 1; index <= 500; index++) rows.push(`cli-${run}-${index}@example.com,CLI ${index},author`)
  rows.push(`cli-${run}-501@example.com,CLI 501,nobody`)
  const file = path.join(scratch, `cli-${run}.csv`)
  writeFileSync(file, `${rows.join('\n')}\n`)

  const first = await runCli(['import', file, '--resource', 'users', '--json', '--progress-interval', '0.5'], env)
  t.equal(first.code, 3, `exit 3: completed with a failed record\n${first.stderr}`)
  const job = JSON.parse(first.stdout)
  t.same(job.counters, { processed: 501, inserted: 500, updated: 0, failed: 1 })
  t.match(first.stderr, /completed 100\.0%, 501 records, 1 failed/)

  const failed = path.join(scratch, 'failed.csv')
  t.equal((await runCli(['jobs', 'failed-records', job.id, '-o', failed], env)).code, 0)
  writeFileSync(failed, readFileSync(failed, 'utf8').replace(',nobody', ',reader'))
  const again = await runCli(['import', failed, '--resource', 'users', '--quiet'], env)
  t.equal(again.code, 0, again.stderr)
  t.match(again.stdout, '1 record: 1 inserted, 0 updated, 0 failed')

  const exported = await runCli(
    ['export', 'users', '--format', 'ndjson', '--fields', 'email,role', '--filter', 'role=author', '--quiet'],
    env,
  )
  t.equal(exported.code, 0, exported.stderr)
  const mine = exported.stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { email: string })
    .filter((row) => row.email.startsWith(`cli-${run}-`))
  t.equal(mine.length, 500, 'every row of this run that the filter keeps')
})
