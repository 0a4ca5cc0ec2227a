import type { TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import fp from 'fastify-plugin'
import { type Config, ConfigSchema } from '../schemas/config.ts'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

/** A configuration value that does not fit its schema; `message` is one line naming the key. */
export class ConfigError extends Error {
  readonly key: string

  constructor(key: string, message: string) {
    super(message)
    this.name = 'ConfigError'
    this.key = key
  }
}

/**
 * Reads the service's configuration from the environment (the only place that does), applies
 * defaults and converts text to numbers and booleans. Empty values count as unset.
 * @throws ConfigError on the first key whose value does not fit ConfigSchema.
 */
export function loadConfig(environment: NodeJS.ProcessEnv = process.env): Config {
  const raw: Record<string, string> = {}
  for (const key of Object.keys(ConfigSchema.properties)) {
    const value = environment[key]?.trim()
    if (value) raw[key] = value
  }
  const properties: Record<string, TSchema> = ConfigSchema.properties
  const converted = Object.fromEntries(
    Object.entries(raw).map(([key, value]) => [key, convert(properties[key] as TSchema, value)]),
  )
  const config = Value.Default(ConfigSchema, converted)
  const error = Value.Errors(ConfigSchema, config).First()
  if (!error) return config as Config
  const key = error.path.split('/')[1] ?? ''
  const schema = properties[key]
  const shown = schema?.secret ? '(value hidden)' : JSON.stringify(raw[key] ?? '')
  const expected = schema ? describeExpectation(schema) : error.message
  throw new ConfigError(key, `invalid configuration: ${key}=${shown} is not ${expected}`)
}

/** Strict text conversion: "1.5" is not an integer and "yes" is not a boolean. */
function convert(schema: TSchema, text: string): unknown {
  const integer = schema.type === 'integer' || schema.anyOf?.some((option: TSchema) => option.type === 'integer')
  if (integer && /^-?\d+$/.test(text)) return Number(text)
  if (schema.type === 'boolean' && /^(true|false|1|0)$/i.test(text)) return /^(true|1)$/i.test(text)
  return text
}

function describeExpectation(schema: TSchema): string {
  if (schema.expected) return schema.expected
  if (schema.anyOf) return `one of ${schema.anyOf.map((option: TSchema) => option.const).join(', ')}`
  if (schema.type === 'boolean') return 'true or false'
  if (schema.type === 'integer') {
    const { minimum, maximum } = schema
    if (minimum !== undefined && maximum !== undefined) return `an integer from ${minimum} to ${maximum}`
    if (minimum !== undefined) return `an integer of at least ${minimum}`
    return 'an integer'
  }
  if (schema.minLength) return 'a non-empty string'
  return 'valid'
}

/** Makes the validated configuration available as `app.config` to every plugin and route. */
export default fp(
  async (app, options: { config: Config }) => {
    app.decorate('config', options.config)
  },
  { name: 'config' },
)
