import { writeFileSync } from 'node:fs'
import path from 'node:path'
import fc from 'fast-check'
import t from 'tap'
import { buildTestApp, scratchDirectory, usersCsv } from '../helper.ts'
import { propertyParameters } from '../property.ts'
import { listen, runCli } from './run-cli.ts'

// Command lines nobody wrote by hand, against a real service: whatever the words, the CLI ends
// with one of its documented exit codes and a message, never a stack trace.

const app = await buildTestApp(t)
app.jobs.start()
const apiUrl = await listen(app)
const scratch = scratchDirectory('bulk-io-cli-args-')
const csv = path.join(scratch, 'users.csv')
writeFileSync(csv, usersCsv(20, { prefix: 'args' }))

const word = fc.oneof(
  fc.constantFrom(
    'import',
    'export',
    'jobs',
    'help',
    'list',
    'show',
    'watch',
    'cancel',
    'errors',
    'failed-records',
    'download',
    'users',
    'articles',
    'comments',
    'tags',
    csv,
    path.join(scratch, 'missing.csv'),
    '-',
    '--',
    '--resource',
    '-r',
    '--format',
    '-f',
    'csv',
    'ndjson',
    'json',
    'xml',
    '--dry-run',
    '--detach',
    '--json',
    '--quiet',
    '-q',
    '--fields',
    'id,email',
    'nope',
    '--filter',
    'role=admin',
    'role',
    '=x',
    '--output',
    '-o',
    path.join(scratch, 'out.file'),
    '--limit',
    '0',
    '3',
    '--kind',
    'imports',
    '--status',
    'queued',
    '--idempotency-key',
    '--progress-interval',
    '0.1',
    '-1',
    '--api-url',
    'ftp://x',
    '--help',
    '--version',
    '00000000-0000-0000-0000-000000000000',
    'not-a-uuid',
  ),
  fc.string({ maxLength: 6 }),
)

t.test('any command line ends with a documented exit code, without a stack trace', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.array(word, { maxLength: 6 }), async (args) => {
      const result = await runCli(args, { API_URL: apiUrl })
      const documented = [0, 1, 2, 3, 130].includes(result.code ?? -1)
      const traced = /\n\s+at .+:\d+:\d+/.test(result.stderr) || /TypeError|ReferenceError/.test(result.stderr)
      if (!documented || traced) t.comment(`bulk-io ${JSON.stringify(args)} → ${result.code}\n${result.stderr}`)
      return documented && !traced
    }),
    propertyParameters(40),
  )
  t.pass('held for every example')
})
