import { execFile } from 'node:child_process'
import { type AddressInfo, createServer } from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import { createTestDatabase } from '../db.ts'

// The benchmark scripts (`make bench-import`, `make bench-export`) run end to end on small
// inputs, so that a renamed module or a changed output cannot break them unnoticed: each must
// exit 0 and print its figures. Their numbers are not checked (speed lives in the benchmarks).

const root = path.dirname(path.dirname(path.dirname(fileURLToPath(import.meta.url))))
const run = promisify(execFile)

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

async function bench(t: Test, script: string, environment: Record<string, string>): Promise<string> {
  const admin = await createTestDatabase(t, { empty: true })
  const { stdout } = await run('bash', [path.join(root, 'bench', script)], {
    cwd: root,
    env: { ...process.env, BENCH_DATABASE_URL: admin, BENCH_PORT: String(await freePort()), ...environment },
    maxBuffer: 16 * 1024 * 1024,
  })
  return stdout
}

t.test('bench/import.sh imports its generated users and prints the rate, the ratio to COPY and the RSS', async (t) => {
  const output = await bench(t, 'import.sh', { ROWS: '2000' })
  t.match(output, /"processed":2000,"inserted":2000,"updated":0,"failed":0/)
  t.match(output, /import \(job\)\s+[\d.]+ s\s+\d+ rows\/s/)
  t.match(output, /ratio to COPY\s+[\d.]+ %/)
  t.match(output, /peak RSS\s+\d+ MB/)
})

t.test('bench/export.sh checks every stream against COPY and prints the table', async (t) => {
  const output = await bench(t, 'export.sh', { ROWS: '2000', RUNS: '1' })
  for (const resource of ['users', 'articles']) {
    for (const format of ['csv', 'ndjson', 'json']) {
      t.match(output, new RegExp(`^${resource}\\s+${format}\\s+2000\\s`, 'm'), `${resource} ${format}`)
    }
  }
  t.match(output, /peak RSS of the service: \d+ MB/)
})
