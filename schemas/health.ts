import { Type } from '@sinclair/typebox'
import { ref, stringEnum } from './common.ts'
import { ProblemSchema } from './problem.ts'

export const DatabaseCheckSchema = Type.Object(
  {
    status: stringEnum(['up', 'down']),
    mode: stringEnum(['external', 'embedded'], {
      description: '`embedded` when the service runs its own PostgreSQL (no DATABASE_URL).',
    }),
    latency_ms: Type.Union([Type.Number(), Type.Null()], {
      description: 'Round-trip time of `select 1` in milliseconds; null when it failed.',
    }),
    server_version: Type.Optional(Type.String({ description: 'PostgreSQL server version.' })),
    error: Type.Optional(Type.String({ description: 'Why the check failed.' })),
  },
  { $id: 'DatabaseCheck', additionalProperties: false },
)

export const HealthSchema = Type.Object(
  {
    status: stringEnum(['ok']),
    version: Type.String({ description: 'Version of the service.' }),
    uptime_seconds: Type.Number(),
    database: ref(DatabaseCheckSchema),
  },
  { $id: 'Health', additionalProperties: false },
)

export const HealthProblemSchema = Type.Composite(
  [Type.Omit(ProblemSchema, ['errors']), Type.Object({ database: ref(DatabaseCheckSchema) })],
  { $id: 'HealthProblem', description: 'A problem (RFC 9457) that also carries the failed database check.' },
)

export const ReadinessSchema = Type.Object(
  { status: stringEnum(['ready']) },
  { $id: 'Readiness', additionalProperties: false },
)

export const LivenessSchema = Type.Object(
  { status: stringEnum(['alive']), uptime_seconds: Type.Number() },
  { $id: 'Liveness', additionalProperties: false },
)
