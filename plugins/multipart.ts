import multipart from '@fastify/multipart'
import fp from 'fastify-plugin'

/**
 * The shape of every form the service reads (today the import upload: three short fields and
 * one file). Beyond these the parser stops with an error that app/imports/intake.ts turns into a
 * 400 naming the rule: a form's shape is the client's mistake, not a payload too large. Sizes
 * in bytes. (busboy does not cut multipart field names, so no fieldNameSize applies.)
 */
export const FORM_LIMITS = {
  files: 1,
  fields: 10,
  fieldSize: 4096,
  parts: 20,
  headerPairs: 100,
} as const

/**
 * multipart/form-data parsing for uploads, streamed (request.parts()), never buffered. The limits
 * are explicit: without them a file is silently cut at 1 MiB. A file over UPLOAD_MAX_BYTES makes
 * the part's stream fail with a 413 error.
 */
export default fp(
  async (app) => {
    await app.register(multipart, {
      throwFileSizeLimit: true,
      limits: { ...FORM_LIMITS, fileSize: app.config.UPLOAD_MAX_BYTES },
    })
  },
  { name: 'multipart', dependencies: ['config'] },
)
