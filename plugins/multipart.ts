import multipart from '@fastify/multipart'
import fp from 'fastify-plugin'

/**
 * multipart/form-data parsing for uploads, streamed (request.parts()), never buffered. The limits
 * are explicit: without them a file is silently cut at 1 MiB. A file over UPLOAD_MAX_BYTES makes
 * the part's stream fail with a 413 error.
 */
export default fp(
  async (app) => {
    await app.register(multipart, {
      throwFileSizeLimit: true,
      limits: {
        fileSize: app.config.UPLOAD_MAX_BYTES,
        files: 1,
        fields: 10,
        fieldSize: 4096,
        parts: 20,
        headerPairs: 100,
      },
    })
  },
  { name: 'multipart', dependencies: ['config'] },
)
