import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { expectedFiles } from '../scripts/generated-files.ts'
import { buildTestApp, root } from './helper.ts'

// Generated files are committed; these tests fail when one drifts from its source.

t.test('openapi.yaml, .env.example and the README configuration table are current', async (t) => {
  for (const [file, expected] of Object.entries(await expectedFiles())) {
    const committed = await readFile(path.join(root, file), 'utf8')
    t.equal(committed, expected, `${file} is current (run \`make generate\`)`)
  }
})

t.test('openapi.yaml is exactly the document the running service serves', async (t) => {
  const app = await buildTestApp(t)
  const served = await app.inject({ url: '/docs/yaml' })
  t.equal(served.statusCode, 200)
  const committed = await readFile(path.join(root, 'openapi.yaml'), 'utf8')
  t.equal(committed.slice(committed.indexOf('\n') + 1), served.body)
  const json = await app.inject({ url: '/docs/json' })
  t.equal(json.json().openapi, '3.1.0')
})

t.test('openapi.yaml passes the Redocly linter with no errors or warnings', async (t) => {
  const cli = path.join(root, 'node_modules', '@redocly', 'cli', 'bin', 'cli.js')
  const { stdout, stderr } = await promisify(execFile)(
    process.execPath,
    [cli, 'lint', 'openapi.yaml', '--format=stylish'],
    { cwd: root, env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' } },
  )
  const output = stdout + stderr
  t.match(output, /Your API description is valid/)
  t.notMatch(output, /\b(error|warning)\b/)
})
