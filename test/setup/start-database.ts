// tap `before` step: start (or find) the test PostgreSQL and build the migrated template once.
import { prepareTestDatabases } from '../db.ts'

const state = await prepareTestDatabases()
console.log(`# test databases: template ${state.template} on ${new URL(state.url).host}`)
