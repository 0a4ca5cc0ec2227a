import { existsSync } from 'node:fs'
import { chromium } from 'playwright-core'
import t from 'tap'
import { buildTestApp } from '../helper.ts'

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
