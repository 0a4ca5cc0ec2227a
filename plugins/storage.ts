import { constants } from 'node:fs'
import { access, mkdir } from 'node:fs/promises'
import path from 'node:path'
import fp from 'fastify-plugin'

export interface Storage {
  /** Absolute IMPORT_DIR: uploaded files. */
  importDir: string
  /** Absolute EXPORT_DIR: finished export files. */
  exportDir: string
}

declare module 'fastify' {
  interface FastifyInstance {
    storage: Storage
  }
}

async function writableDirectory(key: string, directory: string): Promise<string> {
  const absolute = path.resolve(directory)
  try {
    await mkdir(absolute, { recursive: true })
    await access(absolute, constants.W_OK)
  } catch (error) {
    throw new Error(`${key}=${directory} is not a writable directory: ${(error as Error).message}`)
  }
  return absolute
}

/** The file directories, created at start-up: a wrong path fails the start, not the first job. */
export default fp(
  async (app) => {
    app.decorate('storage', {
      importDir: await writableDirectory('IMPORT_DIR', app.config.IMPORT_DIR),
      exportDir: await writableDirectory('EXPORT_DIR', app.config.EXPORT_DIR),
    })
  },
  { name: 'storage', dependencies: ['config'] },
)
