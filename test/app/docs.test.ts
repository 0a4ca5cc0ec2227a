import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { chromium } from 'playwright-core'
import t from 'tap'
import { buildTestApp, root, waitForImport } from '../helper.ts'

// Swagger UI in a real headless Chromium (Debian's /usr/bin/chromium; CI installs it): the page
// loads the generated document and renders every operation.

const executablePath = '/usr/bin/chromium'

// Skipped only outside CI; in CI a missing browser fails the launch below.
const skip =
  !existsSync(executablePath) && !process.env.CI && `${executablePath} is missing (apt-get install -y chromium)`

t.test('Swagger UI at /docs renders every operation of the generated document', { skip }, async (t) => {
  const app = await buildTestApp(t)
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  const document = (await app.inject({ url: '/docs/json' })).json()
  const operationIds = Object.values(document.paths as Record<string, Record<string, { operationId: string }>>)
    .flatMap((operations) => Object.values(operations))
    .map((operation) => operation.operationId)
  t.ok(operationIds.length >= 4, 'the document has operations')

  const browser = await chromium.launch({
    executablePath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  })
  t.teardown(() => browser.close())
  const page = await browser.newPage()
  const failedRequests: string[] = []
  page.on('requestfailed', (request) => failedRequests.push(request.url()))
  await page.goto(`${address}/docs`)
  await page.waitForSelector('.opblock', { timeout: 15_000 })
  t.match(await page.locator('.info .title').textContent(), /Bulk import\/export API/)
  const rendered = await page.locator('.opblock').evaluateAll((blocks) => blocks.map((block) => block.id))
  for (const operationId of operationIds) {
    t.ok(
      rendered.some((id) => id.endsWith(`-${operationId}`)),
      `operation ${operationId} is rendered`,
    )
  }
  t.same(failedRequests, [], 'every asset of the page loaded from the service itself')
})

t.test('Try it out: a CSV uploaded through Swagger UI starts an import (202 with the job)', { skip }, async (t) => {
  const app = await buildTestApp(t)
  app.jobs.start()
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  const browser = await chromium.launch({
    executablePath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  })
  t.teardown(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1280, height: 1600 } })
  await page.goto(`${address}/docs`)
  const operation = page.locator('#operations-imports-createImport')
  await operation.locator('.opblock-summary').click()
  await operation.getByRole('button', { name: 'Try it out' }).click()
  await operation.getByLabel('Request content type').selectOption('multipart/form-data')
  await operation.locator('input[type=file]').setInputFiles({
    name: 'users.csv',
    mimeType: 'text/csv',
    buffer: Buffer.from('email,name,role\nann@example.com,Ann,admin\nbob@example.com,Bob,boss\n'),
  })
  await operation.locator('tr[data-property-name="resource"] select').selectOption('users')
  await operation.getByRole('button', { name: 'Execute' }).click()
  const status = operation.locator('.live-responses-table tbody .response-col_status')
  await status.waitFor({ timeout: 15_000 })
  t.equal((await status.textContent())?.trim(), '202', 'the service answered 202')
  const body = JSON.parse((await operation.locator('.live-responses-table .microlight').first().textContent()) ?? '{}')
  t.equal(body.resource, 'users')
  t.equal(body.source?.filename, 'users.csv')
  const job = await waitForImport(app, body.id)
  t.same(job.counters, { processed: 2, inserted: 1, updated: 0, failed: 1 }, 'the import ran, with its one bad record')

  const screenshot = path.join(root, '.data', 'screenshots', 'swagger-ui-try-it-out-import.png')
  await mkdir(path.dirname(screenshot), { recursive: true })
  await operation.screenshot({ path: screenshot })
  t.comment(`screenshot: ${path.relative(root, screenshot)}`)
})
