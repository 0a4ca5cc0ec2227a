import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { isPrivateAddress } from '../../app/imports/download.ts'
import type { ImportJob } from '../../schemas/imports.ts'
import { problemTypeUri } from '../../schemas/problem.ts'
import { assertProblem, buildTestApp, countRows, waitForImport } from '../helper.ts'

// Imports from a URL (docs/contract.md §6): the job downloads the file (size and redirect limits,
// private hosts refused by default), then imports it as an upload. Apart from test/routes/
// imports.test.ts so that the two halves of the import API's tests run side by side.

function sha256(bytes: Buffer | string): string {
  return createHash('sha256').update(bytes).digest('hex')
}

async function startedApp(t: Test, environment: Record<string, string> = {}): Promise<FastifyInstance> {
  const app = await buildTestApp(t, { environment })
  app.jobs.start()
  return app
}

type Handler = (request: IncomingMessage, response: ServerResponse) => void

/** A tiny HTTP server on 127.0.0.1 (a random port), closed at the end of the test. */
async function fileServer(t: Test, routes: Record<string, Handler>): Promise<string> {
  const server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://x').pathname
    const handler = routes[path]
    if (handler) handler(request, response)
    else response.writeHead(404, { 'content-type': 'text/plain' }).end('not found')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

const remoteCsv = 'email,name,role\nr1@example.com,R1,reader\nr2@example.com,R2,editor\nbad,R3,reader\n'
const serveCsv: Handler = (_request, response) => {
  response.writeHead(200, { 'content-type': 'text/csv', 'content-length': Buffer.byteLength(remoteCsv) }).end(remoteCsv)
}

function importUrl(app: FastifyInstance, url: string): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: '/api/v1/imports', payload: { resource: 'users', url } })
}

async function importUrlAndWait(t: Test, app: FastifyInstance, url: string): Promise<ImportJob> {
  const response = await importUrl(app, url)
  t.equal(response.statusCode, 202, 'accepted')
  return waitForImport(app, response.json<ImportJob>().id)
}

t.test('a URL import (private hosts allowed) downloads the file and imports it', async (t) => {
  const base = await fileServer(t, { '/users.csv': serveCsv })
  const app = await startedApp(t, { IMPORT_URL_ALLOW_PRIVATE: 'true' })
  const response = await importUrl(app, `${base}/users.csv`)
  t.equal(response.statusCode, 202)
  const created = response.json<ImportJob>()
  t.equal(response.headers.location, `/api/v1/imports/${created.id}`)
  t.same(created.source, { type: 'url', filename: null, url: `${base}/users.csv`, size_bytes: null, sha256: null })
  const job = await waitForImport(app, created.id)
  t.equal(job.status, 'completed')
  t.equal(job.format, 'csv')
  t.same(job.counters, { processed: 3, inserted: 2, updated: 0, failed: 1 })
  t.same(job.source, {
    type: 'url',
    filename: null,
    url: `${base}/users.csv`,
    size_bytes: Buffer.byteLength(remoteCsv),
    sha256: sha256(remoteCsv),
  })
  t.equal(await countRows(app, 'users'), 2)
})

t.test('a URL on a private host is refused at once with a 422 problem by default', async (t) => {
  const base = await fileServer(t, { '/users.csv': serveCsv })
  const app = await buildTestApp(t)
  const response = await importUrl(app, `${base}/users.csv`)
  assertProblem(
    t,
    response,
    'unprocessable',
    "The url's host 127.0.0.1 is a private, loopback or link-local address (IMPORT_URL_ALLOW_PRIVATE is off).",
  )
  const list = await app.inject({ url: '/api/v1/imports' })
  t.same(list.json().items, [], 'no job was created')
})

t.test('a URL with another scheme than http or https answers a 422 problem', async (t) => {
  const app = await buildTestApp(t, { environment: { IMPORT_URL_ALLOW_PRIVATE: 'true' } })
  const response = await importUrl(app, 'ftp://example.com/users.csv')
  assertProblem(t, response, 'unprocessable', 'The url must use http or https, not ftp.')
})

t.test('a URL answering 404 ends the job failed with a problem naming HTTP 404', async (t) => {
  const base = await fileServer(t, {})
  const app = await startedApp(t, { IMPORT_URL_ALLOW_PRIVATE: 'true' })
  const job = await importUrlAndWait(t, app, `${base}/missing.csv`)
  t.equal(job.status, 'failed')
  t.same(job.counters, { processed: 0, inserted: 0, updated: 0, failed: 0 })
  t.same(job.error, {
    type: problemTypeUri('unprocessable'),
    title: 'Import source rejected',
    status: 422,
    detail: 'The url answered HTTP 404.',
    code: 'unprocessable',
  })
})

t.test('a URL file larger than IMPORT_URL_MAX_BYTES (declared length) fails the job', async (t) => {
  const base = await fileServer(t, { '/users.csv': serveCsv })
  const app = await startedApp(t, { IMPORT_URL_ALLOW_PRIVATE: 'true', IMPORT_URL_MAX_BYTES: '20' })
  const job = await importUrlAndWait(t, app, `${base}/users.csv`)
  t.equal(job.status, 'failed')
  t.equal(
    (job.error as { detail?: string } | null)?.detail,
    `The url's file is ${Buffer.byteLength(remoteCsv)} bytes; IMPORT_URL_MAX_BYTES is 20.`,
  )
  t.equal(await countRows(app, 'users'), 0)
})

t.test('a streamed URL file that grows past IMPORT_URL_MAX_BYTES fails the job', async (t) => {
  const base = await fileServer(t, {
    '/users.csv': (_request, response) => {
      response.writeHead(200, { 'content-type': 'text/csv' }) // chunked: no declared length
      response.write(remoteCsv)
      response.end(remoteCsv.repeat(10))
    },
  })
  const app = await startedApp(t, { IMPORT_URL_ALLOW_PRIVATE: 'true', IMPORT_URL_MAX_BYTES: '100' })
  const job = await importUrlAndWait(t, app, `${base}/users.csv`)
  t.equal(job.status, 'failed')
  t.equal(
    (job.error as { detail?: string } | null)?.detail,
    "The url's file is larger than IMPORT_URL_MAX_BYTES (100 bytes).",
  )
})

t.test('a URL that redirects (302) to another path is followed', async (t) => {
  const base = await fileServer(t, {
    '/old.csv': (_request, response) => response.writeHead(302, { location: '/users.csv' }).end(),
    '/users.csv': serveCsv,
  })
  const app = await startedApp(t, { IMPORT_URL_ALLOW_PRIVATE: 'true' })
  const job = await importUrlAndWait(t, app, `${base}/old.csv`)
  t.equal(job.status, 'completed')
  t.same(job.counters, { processed: 3, inserted: 2, updated: 0, failed: 1 })
  t.equal(job.source.sha256, sha256(remoteCsv))
})

t.test('a URL that redirects more than IMPORT_URL_MAX_REDIRECTS times fails the job', async (t) => {
  const routes: Record<string, Handler> = { '/users.csv': serveCsv }
  for (let hop = 0; hop < 3; hop++) {
    routes[`/hop${hop}`] = (_request, response) =>
      response.writeHead(302, { location: hop === 2 ? '/users.csv' : `/hop${hop + 1}` }).end()
  }
  const base = await fileServer(t, routes)
  const app = await startedApp(t, { IMPORT_URL_ALLOW_PRIVATE: 'true', IMPORT_URL_MAX_REDIRECTS: '2' })
  const job = await importUrlAndWait(t, app, `${base}/hop0`)
  t.equal(job.status, 'failed')
  t.equal((job.error as { detail?: string } | null)?.detail, 'The url redirects more than 2 times.')

  const within = await importUrlAndWait(t, app, `${base}/hop1`)
  t.equal(within.status, 'completed', 'two redirects are allowed')
})

t.test('isPrivateAddress blocks loopback, private, link-local and unique-local addresses', async (t) => {
  for (const address of [
    '127.0.0.1',
    '10.1.2.3',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '0.0.0.0',
    '::1',
    'fd00:ec2::254',
    '::ffff:127.0.0.1',
    '::ffff:169.254.169.254',
    '::ffff:7f00:1',
    'fe80::1',
    'not-an-address',
  ]) {
    t.equal(isPrivateAddress(address), true, `${address} is private`)
  }
})

t.test('isPrivateAddress lets public addresses through', async (t) => {
  for (const address of ['93.184.216.34', '2606:4700::1111', '172.32.0.1', '8.8.8.8', '::ffff:93.184.216.34']) {
    t.equal(isPrivateAddress(address), false, `${address} is public`)
  }
})
