import { randomBytes } from 'node:crypto'
import {
  CreateBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import t from 'tap'
import { startS3Server } from '../setup/s3-server.ts'

// The S3 server of the object-storage tests (test/setup/s3-server.ts, OpenStack Swift) does what
// those tests rely on, and refuses what S3 refuses: a wrong secret, a tampered presigned URL.
// Were it a mock that accepts anything, the tests of record built on it would prove nothing.

const server = await startS3Server()
t.teardown(() => server.stop())

function client(secretAccessKey = server.secretAccessKey): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey },
    // Swift refuses the SDK's default aws-chunked bodies with trailing checksums.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  })
}

const s3 = client()
t.teardown(() => s3.destroy())
const Bucket = 'bulk-io-canary'
await s3.send(new CreateBucketCommand({ Bucket }))

t.test('an object written can be read whole and by range', async (t) => {
  await s3.send(new PutObjectCommand({ Bucket, Key: 'a.txt', Body: 'hello, object storage' }))
  const whole = await s3.send(new GetObjectCommand({ Bucket, Key: 'a.txt' }))
  t.equal(await whole.Body?.transformToString(), 'hello, object storage')
  const range = await s3.send(new GetObjectCommand({ Bucket, Key: 'a.txt', Range: 'bytes=7-12' }))
  t.equal(await range.Body?.transformToString(), 'object')
  t.equal(range.ContentRange, 'bytes 7-12/21')
  const listed = await s3.send(new ListObjectsV2Command({ Bucket }))
  t.same(
    listed.Contents?.map((object) => object.Key),
    ['a.txt'],
  )
})

t.test('a multipart upload of several parts stores the exact bytes', async (t) => {
  const body = randomBytes(11 * 1024 * 1024 + 123)
  const upload = new Upload({ client: s3, params: { Bucket, Key: 'big.bin', Body: body }, partSize: 5 * 1024 * 1024 })
  await upload.done()
  const head = await s3.send(new HeadObjectCommand({ Bucket, Key: 'big.bin' }))
  t.equal(head.ContentLength, body.length)
  t.match(head.ETag, /-3"$/, 'three parts')
  const tail = await s3.send(new GetObjectCommand({ Bucket, Key: 'big.bin', Range: `bytes=${body.length - 100}-` }))
  t.same(Buffer.from((await tail.Body?.transformToByteArray()) ?? []), body.subarray(body.length - 100))
})

t.test('a presigned GET works as given and fails when tampered with', async (t) => {
  await s3.send(new PutObjectCommand({ Bucket, Key: 'signed.txt', Body: 'signed' }))
  const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket, Key: 'signed.txt' }), { expiresIn: 60 })
  const response = await fetch(url)
  t.equal(response.status, 200)
  t.equal(await response.text(), 'signed')
  const tampered = new URL(url)
  tampered.pathname = `/${Bucket}/a.txt`
  t.equal((await fetch(tampered)).status, 403, 'another key under the same signature')
})

t.test('a wrong secret is refused', async (t) => {
  const intruder = client('not-the-secret')
  t.teardown(() => intruder.destroy())
  const refused = await intruder.send(new GetObjectCommand({ Bucket, Key: 'a.txt' })).then(
    () => null,
    (error: { $metadata?: { httpStatusCode?: number } }) => error.$metadata?.httpStatusCode,
  )
  t.equal(refused, 403)
})
