import fc from 'fast-check'
import t from 'tap'
import type { Upload } from '../../schemas/uploads.ts'
import { propertyParameters } from '../property.ts'
import { s3Fixture } from '../setup/s3-fixture.ts'

// Direct uploads' routes with STORAGE=s3 (the route fuzzer, test/routes/routes.property.test.ts,
// runs with STORAGE=fs, where they answer 409): whatever the body, never a 5xx; a valid request
// gets URLs that cover the declared size in parts S3 accepts; a completion that does not name
// the parts as uploaded is refused as the client's mistake.

const fixture = s3Fixture(t, ['uploads-property'])
const TiB = 1024 ** 4

const hostile = fc.oneof(
  fc.string(),
  fc.constantFrom('', '../../etc/passwd', 'a\u0000b', '💥.csv', 'x'.repeat(2000), '<script>', 'users.csv.gz'),
)

t.test('any creation body: 201 with parts that cover the size, or a 4xx problem', async (t) => {
  const app = await fixture.app(t, 'property/', { S3_PART_BYTES: String(5 * 1024 * 1024) })
  await fc.assert(
    fc.asyncProperty(
      fc.record(
        {
          // Up to 1 GiB: a few hundred parts to sign (5 TiB, 10,000 of them, is checked below).
          size_bytes: fc.oneof(
            fc.integer({ min: 1, max: 64 * 1024 * 1024 }),
            fc.integer({ min: 1, max: 1024 ** 3 }),
            fc.constantFrom(0, -1, 5 * TiB + 1, 1.5, '10', null),
          ),
          filename: hostile,
          content_type: hostile,
          extra: fc.anything(),
        },
        { requiredKeys: [] },
      ),
      async (body) => {
        const response = await app.inject({ method: 'POST', url: '/api/v1/uploads', payload: body })
        if (response.statusCode !== 201) {
          t.ok(response.statusCode >= 400 && response.statusCode < 500, `${response.statusCode}: ${response.body}`)
          t.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8')
          return
        }
        const upload = response.json<Upload>()
        const size = body.size_bytes as number
        if (upload.url) {
          t.ok(size <= 5 * 1024 * 1024, 'one PUT only up to a part')
        } else {
          const part = upload.part_size_bytes as number
          t.ok(part >= 5 * 1024 * 1024 && upload.parts.length <= 10_000, 'parts S3 accepts')
          t.ok(part * upload.parts.length >= size && part * (upload.parts.length - 1) < size, 'they cover the size')
        }
      },
    ),
    propertyParameters(30),
  )
  const largest = await app.inject({ method: 'POST', url: '/api/v1/uploads', payload: { size_bytes: 5 * TiB } })
  t.equal(largest.statusCode, 201, 'the largest object S3 takes')
  const { parts, part_size_bytes: partSize } = largest.json<Upload>()
  t.ok(parts.length <= 10_000 && parts.length > 9_900, `in ${parts.length} parts: no more than S3 takes`)
  t.ok((partSize as number) * parts.length >= 5 * TiB, 'they cover the size')
})

t.test('any completion body: 200 only with the parts as uploaded, else a 4xx problem', async (t) => {
  const app = await fixture.app(t, 'complete/', { S3_PART_BYTES: String(5 * 1024 * 1024) })
  const created = await app.inject({
    method: 'POST',
    url: '/api/v1/uploads',
    payload: { size_bytes: 6 * 1024 * 1024 },
  })
  const upload = created.json<Upload>()
  const etags: string[] = []
  for (const part of upload.parts) {
    const bytes = part.part_number === 1 ? 5 * 1024 * 1024 : 1024 * 1024
    const put = await fetch(part.url, { method: 'PUT', body: Buffer.alloc(bytes, part.part_number) })
    etags.push(put.headers.get('etag') as string)
  }
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.record({
          parts: fc.array(
            fc.record({
              part_number: fc.oneof(fc.integer({ min: -1, max: 3 }), fc.constant(10_001)),
              etag: fc.oneof(fc.constantFrom(...etags), hostile),
            }),
            { maxLength: 4 },
          ),
        }),
        fc.anything(),
      ),
      async (body) => {
        const response = await app.inject({ method: 'POST', url: upload.complete_url, payload: body as object })
        t.ok(response.statusCode < 500, `${response.statusCode}: ${response.body}`)
        if (response.statusCode === 200) t.equal(response.json<Upload>().status, 'completed')
      },
    ),
    propertyParameters(30),
  )
  const done = await app.inject({
    method: 'POST',
    url: upload.complete_url,
    payload: { parts: etags.map((etag, index) => ({ part_number: index + 1, etag })) },
  })
  t.equal(done.statusCode, 200, 'the parts as uploaded complete it')
  t.equal(done.json<Upload>().size_bytes, 6 * 1024 * 1024)
})
