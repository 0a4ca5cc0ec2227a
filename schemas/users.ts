import { type Static, Type } from '@sinclair/typebox'
import { stringEnum } from './common.ts'
import './record-formats.ts'

/**
 * The CSV columns of a user, in the order of an export (docs/contract.md §1). On import they may
 * come in any order.
 */
export const userColumns = ['id', 'email', 'name', 'role', 'active', 'created_at', 'updated_at'] as const

export const userRoles = ['admin', 'editor', 'author', 'reader'] as const

/**
 * One user of an import, as a JSON object (NDJSON line or element of a JSON array); a CSV row is
 * read as this object after its cells are converted. Values are trimmed first; an empty string
 * or null of an optional field means absent.
 */
export const UserRecordSchema = Type.Object(
  {
    id: Type.Optional(
      Type.String({
        format: 'uuid',
        description:
          'The user’s UUID, any case (stored in lower case). Absent: the user with the same email is updated, or a new user is inserted with a new id.',
      }),
    ),
    email: Type.String({
      format: 'email',
      maxLength: 254,
      description:
        'Required. A `local@domain.tld` address of at most 254 characters, unique case-insensitively; stored trimmed, case preserved.',
    }),
    name: Type.String({ minLength: 1, description: 'Required, non-blank. Stored trimmed.' }),
    // A union of literals (not stringEnum): the compiled TypeBox check only knows its own kinds.
    role: Type.Union(
      userRoles.map((role) => Type.Literal(role)),
      { description: 'Required. One of `admin`, `editor`, `author`, `reader` (exactly, after trimming).' },
    ),
    active: Type.Optional(
      Type.Boolean({
        description:
          'A JSON boolean; in CSV `true` or `false` in any case. Absent: true for a new user, unchanged on update.',
      }),
    ),
    created_at: Type.Optional(
      Type.String({
        format: 'date-time-with-zone',
        description:
          'ISO-8601 date and time with a zone (`Z`, `±HH:MM` or `±HHMM`), at most 6 fractional digits. Absent: now() for a new user, unchanged on update.',
      }),
    ),
    updated_at: Type.Optional(
      Type.String({
        format: 'date-time-with-zone',
        description:
          'ISO-8601 date and time with a zone (`Z`, `±HH:MM` or `±HHMM`), at most 6 fractional digits. Absent: now(), on insert and on update.',
      }),
    ),
  },
  {
    $id: 'UserRecord',
    description: 'One user record of an import. Unknown keys (CSV columns) are ignored.',
    additionalProperties: true,
  },
)

export type UserRecord = Static<typeof UserRecordSchema>

userColumns satisfies readonly (keyof UserRecord)[]

/** Filters of a users export (querystring of its stream, `filters` of an async export). */
export const UserExportFiltersSchema = Type.Object(
  {
    role: Type.Optional(stringEnum(userRoles, { description: 'Only users with this role.' })),
    active: Type.Optional(Type.Boolean({ description: 'Only active (true) or inactive (false) users.' })),
    created_after: Type.Optional(
      Type.String({ format: 'date-time-with-zone', description: 'created_at at or after this.' }),
    ),
    created_before: Type.Optional(
      Type.String({ format: 'date-time-with-zone', description: 'created_at before this.' }),
    ),
    updated_after: Type.Optional(
      Type.String({ format: 'date-time-with-zone', description: 'updated_at at or after this.' }),
    ),
    updated_before: Type.Optional(
      Type.String({ format: 'date-time-with-zone', description: 'updated_at before this.' }),
    ),
  },
  { $id: 'UserExportFilters', additionalProperties: false },
)
