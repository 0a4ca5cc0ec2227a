import { availableParallelism } from 'node:os'
import fp from 'fastify-plugin'
import Tinypool from 'tinypool'

declare module 'fastify' {
  interface FastifyInstance {
    /** Worker threads for import batches (app/workers/import-batch.ts). */
    pool: Tinypool
  }
}

/**
 * The tinypool of import workers, shared by every job of the process. Node runs the TypeScript
 * task file directly in the worker threads. Threads start on demand and stop when idle.
 */
export default fp(
  async (app) => {
    // By default one core is left to the main thread and PostgreSQL: validation is cheap, and
    // threads that compete with the database for every core make the writes slower.
    const threads = app.config.IMPORT_THREADS || Math.max(1, availableParallelism() - 1)
    const pool = new Tinypool({
      filename: new URL('../app/workers/import-batch.ts', import.meta.url).href,
      minThreads: 0,
      maxThreads: threads,
      idleTimeout: 30_000,
      // Workers allocate fast (decoded text, parsed records, SQL literals): a small young
      // generation collects that garbage early instead of growing the resident set.
      resourceLimits: { maxYoungGenerationSizeMb: 12, maxOldGenerationSizeMb: 256 },
    })
    app.decorate('pool', pool)
    app.addHook('onClose', async () => {
      await pool.destroy()
    })
  },
  { name: 'pool', dependencies: ['config'] },
)
