import { exportStreamRoute } from '../../app/exports/stream-route.ts'

/** The users routes: GET /api/v1/exports/users/stream, with the filters of users (schemas/users.ts). */
export default exportStreamRoute('users')
