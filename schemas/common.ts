import { type Static, type TSchema, Type } from '@sinclair/typebox'

/**
 * A reference to a shared schema (one with an `$id`, registered with `app.addSchema`), typed as
 * the schema itself. Shared schemas appear once under `components.schemas` in openapi.yaml.
 */
export function ref<T extends TSchema>(schema: T, options: { description?: string } = {}) {
  if (!schema.$id) throw new Error('ref() needs a schema with an $id')
  return Type.Unsafe<Static<T>>(Type.Ref(schema.$id, options))
}

/**
 * A string that is one of `values`, written as one `enum` (not TypeBox's anyOf of constants)
 * so that generated clients get a proper enum type.
 */
export function stringEnum<const Values extends readonly string[]>(
  values: Values,
  options: { description?: string; default?: Values[number] } = {},
) {
  return Type.Unsafe<Values[number]>({ type: 'string', enum: [...values], ...options })
}

/** `users` → `Users`: the stem of a resource's schema names (UsersExportRequest). */
export function pascalName(name: string): string {
  return name.replace(/(^|_)([a-z])/g, (_match, _underscore, letter: string) => letter.toUpperCase())
}
