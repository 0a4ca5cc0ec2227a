import { exportStreamRoute } from '../../app/exports/stream-route.ts'

/** The articles routes: GET /api/v1/exports/articles/stream, with the filters of articles (schemas/articles.ts). */
export default exportStreamRoute('articles')
