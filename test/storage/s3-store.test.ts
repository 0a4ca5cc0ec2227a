import { createHash, randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { ListMultipartUploadsCommand, PutObjectCommand } from '@aws-sdk/client-s3'
import t, { type Test } from 'tap'
import { StoreError, type StoreObserver } from '../../app/storage/object-store.ts'
import { S3Store, s3Client } from '../../app/storage/s3-store.ts'
import { s3Fixture } from '../setup/s3-fixture.ts'
import { type S3Proxy, startS3Proxy } from '../setup/s3-proxy.ts'

// The S3 store (app/storage/s3-store.ts) on a real S3-compatible server, through a proxy that
// breaks connections as a network does: a read that breaks off goes on from the byte it reached,
// a write is whole or absent, and the store's refusals arrive as StoreErrors of the right kind.
// The server itself refuses what S3 refuses (a wrong secret, a tampered presigned URL): were it a
// mock that accepts anything, the tests built on it would prove nothing.

const fixture = s3Fixture(t, ['store-tests'])
const object = randomBytes(3 * 1024 * 1024 + 17)

function store(endpoint: string, observe?: StoreObserver, maxAttempts = 3): S3Store {
  const settings = {
    endpoint,
    region: fixture.server.region,
    bucket: 'store-tests',
    prefix: 'unit/',
    forcePathStyle: true,
    checksums: 'when_required' as const,
    partBytes: 5 * 1024 * 1024,
    maxAttempts,
  }
  return new S3Store(s3Client(settings), settings, observe)
}

async function through(t: Test, options: Parameters<typeof startS3Proxy>[1]) {
  const proxy: S3Proxy = await startS3Proxy(fixture.server.endpoint, options)
  t.teardown(() => proxy.close())
  return proxy
}

t.before(async () => {
  await fixture.s3.send(new PutObjectCommand({ Bucket: 'store-tests', Key: 'unit/object.bin', Body: object }))
})

t.test('a read that breaks off goes on from the byte it reached: the same bytes, whole or by range', async (t) => {
  const proxy = await through(t, { cutDownstreamAfterBytes: 1024 * 1024, downstreamCuts: 2 })
  const reads: string[] = []
  const bucket = store(proxy.endpoint, (operation, _seconds, outcome, bytes) => {
    if (operation === 'read' && bytes === undefined) reads.push(outcome)
  })
  const whole = Buffer.concat(await (await bucket.read('object.bin')).toArray())
  t.equal(proxy.cut(), 2, 'two connections were cut mid-body')
  t.equal(whole.length, object.length)
  t.ok(whole.equals(object), 'the exact bytes')
  t.same(reads, ['ok', 'ok', 'ok'], 'three GETs: the first, and one after each break')
  const ranged = Buffer.concat(await (await bucket.read('object.bin', { start: 1000, end: 2_000_999 })).toArray())
  t.ok(ranged.equals(object.subarray(1000, 2_001_000)), 'a range, the exact bytes')
})

t.test('a read whose answers all break off fails as unavailable; a missing object as not_found', async (t) => {
  // Cut within the response's head: no byte of the body ever arrives, however often it is asked.
  const proxy = await through(t, { cutDownstreamAfterBytes: 100 })
  await t.rejects(store(proxy.endpoint, undefined, 2).read('object.bin'), { name: 'StoreError', kind: 'unavailable' })
  await t.rejects(store(fixture.server.endpoint).read('missing.bin'), { name: 'StoreError', kind: 'not_found' })
  t.equal(await store(fixture.server.endpoint).stat('missing.bin'), undefined)
})

t.test('a write is whole, with its size and SHA-256; one stopped mid-way leaves no upload behind', async (t) => {
  const bucket = store(fixture.server.endpoint)
  const body = randomBytes(12 * 1024 * 1024)
  const written = await bucket.write(
    'written.bin',
    Readable.from([body.subarray(0, 7_000_000), body.subarray(7_000_000)]),
  )
  t.same(written, { size: body.length, sha256: createHash('sha256').update(body).digest('hex') })
  t.equal((await bucket.stat('written.bin'))?.size, body.length)

  const stop = new AbortController()
  const slow = new Readable({ read() {} })
  slow.push(randomBytes(6 * 1024 * 1024)) // more than a part: a multipart upload is under way
  setTimeout(() => stop.abort(new Error('stopped')), 1000)
  await t.rejects(bucket.write('stopped.bin', slow, { signal: stop.signal }))
  const uploads = await fixture.s3.send(new ListMultipartUploadsCommand({ Bucket: 'store-tests', Prefix: 'unit/' }))
  t.same(uploads.Uploads ?? [], [], 'the multipart upload was aborted')
  t.equal(await bucket.stat('stopped.bin'), undefined, 'no object')

  // The store goes away while a write is under way: the write fails (it does not wait for ever).
  const proxy = await through(t, { cutAfterBytes: 1024 * 1024 }) // no part gets through
  const failing = store(proxy.endpoint, undefined, 2)
  const endless = new Readable({
    read() {
      this.push(randomBytes(1024 * 1024))
    },
  })
  await t.rejects(failing.write('cut.bin', endless), { name: 'StoreError', kind: 'unavailable' })
  endless.destroy()
})

t.test('a wrong secret is denied, a missing bucket is no_bucket', async (t) => {
  const saved = process.env.AWS_SECRET_ACCESS_KEY
  process.env.AWS_SECRET_ACCESS_KEY = 'wrong'
  t.teardown(() => {
    process.env.AWS_SECRET_ACCESS_KEY = saved
  })
  await t.rejects(store(fixture.server.endpoint).check(), new StoreError('denied', ''))
  process.env.AWS_SECRET_ACCESS_KEY = saved
  const missing = store(fixture.server.endpoint)
  missing.settings.bucket = 'no-such-bucket'
  await t.rejects(missing.check(), { name: 'StoreError', kind: 'no_bucket' })
})

t.test('the server checks signatures: a presigned GET works as given, not for another key', async (t) => {
  const bucket = store(fixture.server.endpoint)
  const url = await bucket.presignGet('object.bin', { expiresIn: 60 })
  const response = await fetch(url, { headers: { range: 'bytes=0-9' } })
  t.equal(response.status, 206)
  t.ok(Buffer.from(await response.arrayBuffer()).equals(object.subarray(0, 10)))
  const tampered = new URL(url)
  tampered.pathname = tampered.pathname.replace('object.bin', 'other.bin')
  t.equal((await fetch(tampered)).status, 403, 'another key under the same signature')
})
