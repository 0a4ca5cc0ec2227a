import fp from 'fastify-plugin'
import { checkResources, defaultResources, type ResourceDescriptor } from '../resources/index.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The resources this app serves (AppOptions.resources; by default users, articles, comments). */
    resources: readonly ResourceDescriptor[]
  }
}

/** The list of resources every route, schema and job of the app is derived from. */
export default fp(
  async (app, options: { resources?: readonly ResourceDescriptor[] }) => {
    app.decorate('resources', checkResources(options.resources ?? defaultResources))
  },
  { name: 'resources' },
)
