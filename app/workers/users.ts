import { UserRecordSchema, userColumns } from '../../schemas/users.ts'
import { csvBoolean, jsonBoolean, type RecordOutcome, RecordValidator, type Source, shortText, uuid } from './fields.ts'

const users = new RecordValidator(UserRecordSchema, userColumns)

/**
 * Validates one user record (docs/contract.md §2): a CSV row (text cells keyed by header) or a parsed JSON
 * object; unknown keys are ignored. The row holds the values to store: trimmed, the id in lower
 * case, `active` a boolean; absent fields are left undefined (the upsert gives them their defaults).
 */
export function validate(input: Record<string, unknown>, source: Source): RecordOutcome {
  return users.outcome(input, {
    id: uuid(input.id),
    email: shortText(input.email),
    name: shortText(input.name),
    role: shortText(input.role),
    active: source === 'csv' ? csvBoolean(input.active) : jsonBoolean(input.active),
    created_at: shortText(input.created_at),
    updated_at: shortText(input.updated_at),
  })
}
