import { type TSchema, Type } from '@sinclair/typebox'
import { ref, stringEnum } from './common.ts'

// What import and export jobs share in the API (docs/contract.md §5): their statuses, how one is
// named in a URL and how they are listed.

export const jobStatuses = ['queued', 'running', 'completed', 'failed', 'cancelled'] as const

export const JobIdParamsSchema = Type.Object({ id: Type.String({ format: 'uuid' }) }, { additionalProperties: false })

/** The querystring of a job listing: filters by status and by one of `resourceNames`, a page. */
export function listJobsQuerySchema(resourceNames: readonly string[]) {
  return Type.Object(
    {
      status: Type.Optional(stringEnum(jobStatuses)),
      resource: Type.Optional(stringEnum(resourceNames)),
      limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
      cursor: Type.Optional(Type.String({ maxLength: 200, description: 'next_cursor of the previous page.' })),
    },
    { additionalProperties: false },
  )
}

/** A page of jobs of one kind (`item`, a schema with an $id), with the cursor of the next page. */
export function jobListSchema<Item extends TSchema>(item: Item, $id: string) {
  return Type.Object(
    {
      items: Type.Array(ref(item)),
      next_cursor: Type.Union([Type.String(), Type.Null()], {
        description: 'Pass as `cursor` for the next page; null at the end.',
      }),
    },
    { $id, additionalProperties: false },
  )
}
