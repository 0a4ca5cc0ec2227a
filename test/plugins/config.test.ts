import { statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { ConfigError, loadConfig } from '../../plugins/config.ts'
import { ConfigSchema } from '../../schemas/config.ts'
import { buildTestApp, scratchDirectory } from '../helper.ts'

/** What loadConfig throws for `environment`, as plain data; null when it does not throw. */
function rejection(environment: Record<string, string>): { name: string; key: string; message: string } | null {
  try {
    loadConfig(environment)
    return null
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    return { name: error.name, key: error.key, message: error.message }
  }
}

const rejected = (key: string, message: string) => ({ name: 'ConfigError', key, message })

t.test('an empty environment gives every key its schema default', async (t) => {
  const config = loadConfig({})
  const defaults = Object.fromEntries(
    Object.entries(ConfigSchema.properties)
      .filter(([, schema]) => 'default' in schema)
      .map(([key, schema]) => [key, schema.default]),
  )
  t.same(config, defaults)
  t.equal(config.DATABASE_URL, undefined, 'no default: the embedded PostgreSQL is used')
  t.equal(Object.keys(defaults).length, Object.keys(ConfigSchema.properties).length - 1)
  t.equal(config.HTTP_PORT, 8080)
  t.equal(config.LOG_LEVEL, 'info')
  t.equal(config.MIGRATE_ON_START, true)
  t.equal(config.METRICS_AUTH, false)
  t.equal(config.API_KEYS, '')
})

t.test('only the environment given is read, not process.env', async (t) => {
  const saved = process.env.HTTP_PORT
  process.env.HTTP_PORT = '1234'
  t.teardown(() => {
    if (saved === undefined) delete process.env.HTTP_PORT
    else process.env.HTTP_PORT = saved
  })
  t.equal(loadConfig({}).HTTP_PORT, 8080)
  t.equal(loadConfig().HTTP_PORT, 1234, 'process.env is the default environment')
})

t.test('integers are converted from text, surrounding spaces ignored', async (t) => {
  const config = loadConfig({
    HTTP_PORT: '9090',
    DATABASE_POOL_MAX: ' 25 ',
    BODY_LIMIT_BYTES: '2048',
    HTTP_PORT_X: 'x',
  })
  t.equal(config.HTTP_PORT, 9090)
  t.equal(config.DATABASE_POOL_MAX, 25)
  t.equal(config.BODY_LIMIT_BYTES, 2048)
  t.equal(loadConfig({ HTTP_PORT: '0' }).HTTP_PORT, 0)
  t.equal(loadConfig({ HTTP_PORT: '65535' }).HTTP_PORT, 65535)
  t.notOk('HTTP_PORT_X' in config, 'unknown keys are ignored')
})

t.test('booleans accept true/false/1/0 in any case', async (t) => {
  for (const text of ['true', 'TRUE', 'True', '1']) {
    t.equal(loadConfig({ MIGRATE_ON_START: 'false', METRICS_AUTH: text }).METRICS_AUTH, true, text)
  }
  for (const text of ['false', 'FALSE', 'False', '0']) {
    t.equal(loadConfig({ MIGRATE_ON_START: text }).MIGRATE_ON_START, false, text)
  }
})

t.test('empty or blank values count as unset', async (t) => {
  const config = loadConfig({ HTTP_PORT: '', LOG_LEVEL: '   ', DATABASE_URL: '', MIGRATE_ON_START: '', API_KEYS: '' })
  t.equal(config.HTTP_PORT, 8080)
  t.equal(config.LOG_LEVEL, 'info')
  t.equal(config.DATABASE_URL, undefined)
  t.equal(config.MIGRATE_ON_START, true)
  t.equal(config.API_KEYS, '')
})

t.test('an integer key rejects text, fractions and values out of range in one line', async (t) => {
  t.same(
    rejection({ HTTP_PORT: 'abc' }),
    rejected('HTTP_PORT', 'invalid configuration: HTTP_PORT="abc" is not an integer from 0 to 65535'),
  )
  t.same(
    rejection({ HTTP_PORT: '1.5' }),
    rejected('HTTP_PORT', 'invalid configuration: HTTP_PORT="1.5" is not an integer from 0 to 65535'),
  )
  t.same(
    rejection({ HTTP_PORT: '65536' }),
    rejected('HTTP_PORT', 'invalid configuration: HTTP_PORT="65536" is not an integer from 0 to 65535'),
  )
  t.same(
    rejection({ BODY_LIMIT_BYTES: '1023' }),
    rejected('BODY_LIMIT_BYTES', 'invalid configuration: BODY_LIMIT_BYTES="1023" is not an integer of at least 1024'),
  )
})

t.test('an unknown LOG_LEVEL is rejected with the list of choices', async (t) => {
  t.same(
    rejection({ LOG_LEVEL: 'verbose' }),
    rejected(
      'LOG_LEVEL',
      'invalid configuration: LOG_LEVEL="verbose" is not one of fatal, error, warn, info, debug, trace, silent',
    ),
  )
  t.equal(loadConfig({ LOG_LEVEL: 'debug' }).LOG_LEVEL, 'debug')
})

t.test('a boolean key rejects anything but true/false/1/0', async (t) => {
  t.same(
    rejection({ MIGRATE_ON_START: 'yes' }),
    rejected('MIGRATE_ON_START', 'invalid configuration: MIGRATE_ON_START="yes" is not true or false'),
  )
  t.same(
    rejection({ METRICS_AUTH: '2' }),
    rejected('METRICS_AUTH', 'invalid configuration: METRICS_AUTH="2" is not true or false'),
  )
})

t.test('DATABASE_URL and API_KEYS values never appear in an error', async (t) => {
  t.same(
    rejection({ DATABASE_URL: 'mysql://admin:hunter2@db.internal/app' }),
    rejected(
      'DATABASE_URL',
      'invalid configuration: DATABASE_URL=(value hidden) is not a postgres:// or postgresql:// connection URL',
    ),
  )
  t.same(
    rejection({ API_KEYS: 'long-enough-key-0123456789,tiny-key' }),
    rejected(
      'API_KEYS',
      'invalid configuration: API_KEYS=(value hidden) is not a comma-separated list of keys of at least 16 characters without spaces',
    ),
  )
  t.equal(loadConfig({ DATABASE_URL: 'postgresql://u:p@h/d' }).DATABASE_URL, 'postgresql://u:p@h/d')
})

t.test('API_KEYS takes one or more keys of at least 16 characters, without spaces', async (t) => {
  const keys = 'first-key-0123456789,second-key-0123456789'
  t.equal(loadConfig({ API_KEYS: keys }).API_KEYS, keys)
  t.equal(loadConfig({ API_KEYS: '0123456789abcdef' }).API_KEYS, '0123456789abcdef', 'exactly 16 characters')
  for (const keys of [
    '0123456789abcde',
    'first-key-0123456789,',
    'with space 0123456789',
    'a-key-0123456789,,b-key-0123456789',
  ]) {
    t.equal(rejection({ API_KEYS: keys })?.key, 'API_KEYS', keys)
  }
})

t.test(
  'IMPORT_DIR is created at start-up, and one that cannot be a directory fails the start, naming it',
  async (t) => {
    const scratch = scratchDirectory()
    const fresh = path.join(scratch, 'new', 'imports')
    const app = await buildTestApp(t, { environment: { IMPORT_DIR: fresh } })
    t.equal(app.storage.importDir, fresh)
    t.ok(statSync(fresh).isDirectory(), 'a missing directory is created')

    const file = path.join(scratch, 'plain-file')
    writeFileSync(file, 'not a directory')
    const importDir = path.join(file, 'imports')
    await t.rejects(buildTestApp(t, { environment: { IMPORT_DIR: importDir } }), {
      message: `IMPORT_DIR=${importDir} is not a writable directory: ENOTDIR: not a directory, mkdir '${importDir}'`,
    })
  },
)

t.test('IMPORT_THREADS is auto or a thread count, 0 included', async (t) => {
  t.equal(loadConfig({}).IMPORT_THREADS, 'auto')
  t.equal(loadConfig({ IMPORT_THREADS: 'auto' }).IMPORT_THREADS, 'auto')
  t.equal(loadConfig({ IMPORT_THREADS: '0' }).IMPORT_THREADS, 0)
  t.equal(loadConfig({ IMPORT_THREADS: ' 3 ' }).IMPORT_THREADS, 3)
  for (const text of ['-1', '1.5', '257', 'AUTO', 'two']) {
    t.same(
      rejection({ IMPORT_THREADS: text }),
      rejected(
        'IMPORT_THREADS',
        `invalid configuration: IMPORT_THREADS="${text}" is not auto or an integer from 0 to 256`,
      ),
      text,
    )
  }
})
