import { AjvCompiler } from '@fastify/ajv-compiler'
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler'
import type { FastifyServerOptions } from 'fastify'

// Fastify compiles every route's schemas (Ajv validators, fast-json-stringify serializers) when
// an app is built. The functions it compiles depend only on the schema, the shared schemas and
// the options, so they are kept per process, keyed by those: an app built again in the same
// process (every test builds dozens) reuses them instead of compiling again, which took most of
// an app's build time. A service process builds one app, for which this changes nothing.

type Factories = NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>
type BuildValidator = NonNullable<Factories['buildValidator']>
type BuildSerializer = NonNullable<Factories['buildSerializer']>

const validators = new Map<string, unknown>()
const serializers = new Map<string, unknown>()

/** Fastify's own validator compiler (Ajv), with its compiled functions kept per process. */
const buildValidator: BuildValidator = (externalSchemas, options) => {
  // Functions (custom formats) do not show in the key: they are the same code in every app.
  const prefix = JSON.stringify([externalSchemas, options])
  let compile: ReturnType<BuildValidator> | undefined
  return (route) => {
    const key = `${prefix}${route.httpPart}${JSON.stringify(route.schema)}`
    let validate = validators.get(key)
    if (!validate) {
      compile ??= AjvCompiler()(externalSchemas, options)
      validate = compile(route)
      validators.set(key, validate)
    }
    return validate as ReturnType<ReturnType<BuildValidator>>
  }
}

/** Fastify's own serializer compiler (fast-json-stringify), with its functions kept per process. */
const buildSerializer: BuildSerializer = (externalSchemas, options) => {
  const prefix = JSON.stringify([externalSchemas, options])
  let compile: ReturnType<BuildSerializer> | undefined
  return (route) => {
    const key = `${prefix}${JSON.stringify(route.schema)}`
    let serialize = serializers.get(key)
    if (!serialize) {
      compile ??= SerializerSelector()(externalSchemas, options)
      serialize = compile(route)
      serializers.set(key, serialize)
    }
    return serialize as ReturnType<ReturnType<BuildSerializer>>
  }
}

/** For Fastify's `schemaController` option. */
export const schemaController = { compilersFactory: { buildValidator, buildSerializer } }
