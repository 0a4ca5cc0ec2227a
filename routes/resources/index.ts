import type { FastifyPluginAsync } from 'fastify'
import { exportStreamRoute } from '../../app/exports/stream-route.ts'

/**
 * Each resource's own plugin (one per descriptor of app.resources): GET
 * /api/v1/exports/<resource>/stream, with the resource's filters. Imports and async exports name
 * their resource in the request, so their routes (routes/imports/, routes/exports/) serve every
 * resource; their schemas are built from the same list.
 */
const resourceRoutes: FastifyPluginAsync = async (app) => {
  for (const resource of app.resources) await app.register(exportStreamRoute(resource))
}
export default resourceRoutes
