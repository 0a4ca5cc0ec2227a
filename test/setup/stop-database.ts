// tap `after` step: stop the server the `before` step started, if it started one.
import { releaseTestDatabases } from '../db.ts'

await releaseTestDatabases()
