import { exportStreamRoute } from '../../app/exports/stream-route.ts'

/** The comments routes: GET /api/v1/exports/comments/stream, with the filters of comments (schemas/comments.ts). */
export default exportStreamRoute('comments')
