import { createHash, randomUUID } from 'node:crypto'
import { mkdir, readdir, utimes, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { Readable } from 'node:stream'
import t from 'tap'
import { FileStore } from '../../app/storage/file-store.ts'
import { StoreError } from '../../app/storage/object-store.ts'
import { scratchDirectory } from '../helper.ts'

// The directory store (STORAGE=fs): writes appear whole or not at all, and the sweeper's listing
// sees only the service's own files: the directory is the operator's choice, and may hold others.

async function store(): Promise<FileStore> {
  const directory = scratchDirectory('bulk-io-file-store-')
  await mkdir(directory, { recursive: true })
  return new FileStore(directory)
}

t.test('a write appears whole under its key, with its size and SHA-256; a range reads back', async (t) => {
  const files = await store()
  const written = await files.write('a.csv', Readable.from([Buffer.from('id,email\n'), Buffer.from('1,a@b.c\n')]))
  t.same(written, { size: 17, sha256: createHash('sha256').update('id,email\n1,a@b.c\n').digest('hex') })
  t.same(await readdir(files.directory), ['a.csv'], 'no partial file left')
  const range = Buffer.concat(await (await files.read('a.csv', { start: 3, end: 7 })).toArray())
  t.equal(range.toString(), 'email')
  t.equal((await files.stat('a.csv'))?.size, 17)
  t.equal(await files.stat('missing.csv'), undefined)
  await t.rejects(files.read('missing.csv'), new StoreError('not_found', ''), 'a missing file is not_found')
})

t.test('a write that fails (too large, or its source breaks) leaves nothing', async (t) => {
  const files = await store()
  const tooLarge = new Error('too large')
  await t.rejects(
    files.write('big.csv', Readable.from([Buffer.alloc(10), Buffer.alloc(10)]), {
      limit: { maxBytes: 15, tooLarge: () => tooLarge },
    }),
    tooLarge,
  )
  const broken = new Readable({ read() {} })
  broken.push(Buffer.alloc(10))
  setImmediate(() => broken.destroy(new Error('connection reset')))
  await t.rejects(files.write('broken.csv', broken), { message: 'connection reset' })
  t.same(await readdir(files.directory), [])
})

t.test('the listing and the sweep of unfinished writes see only the service’s own files', async (t) => {
  const files = await store()
  const id = randomUUID()
  const other = randomUUID()
  const names = [
    `${id}.upload`,
    `${id}.download`,
    `${id}.direct`,
    `${id}.csv`,
    `${id}.ndjson.gz`,
    `${id}.csv.${other}.partial`,
    `${id}.2.partial`,
    'notes.txt',
    'foo.partial',
    `${id}.csv.bak`,
  ]
  for (const name of names) {
    await writeFile(path.join(files.directory, name), 'x')
    await utimes(path.join(files.directory, name), new Date(0), new Date(0))
  }
  const listed: string[] = []
  for await (const object of files.list()) listed.push(object.key)
  t.same(listed.sort(), [`${id}.csv`, `${id}.direct`, `${id}.download`, `${id}.ndjson.gz`, `${id}.upload`].sort())
  t.equal(await files.sweepUnfinished(new Date(1000)), 2, 'the two partial files of the service')
  t.same(
    (await readdir(files.directory)).sort(),
    names.filter((name) => !name.endsWith('.partial') || name === 'foo.partial').sort(),
    'the operator’s files stay',
  )
})

t.test('abandon removes the partial files of one key only', async (t) => {
  const files = await store()
  const id = randomUUID()
  await writeFile(path.join(files.directory, `${id}.csv.${randomUUID()}.partial`), 'half')
  await writeFile(path.join(files.directory, `${id}.csv.gz.${randomUUID()}.partial`), 'half')
  await files.abandon(`${id}.csv`)
  t.same(
    (await readdir(files.directory)).map((name) => name.replace(/\.[0-9a-f-]{36}\.partial$/, '.<uuid>.partial')),
    [`${id}.csv.gz.<uuid>.partial`],
  )
})
