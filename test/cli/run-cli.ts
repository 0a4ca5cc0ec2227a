import { spawn } from 'node:child_process'
import path from 'node:path'
import type { FastifyInstance } from 'fastify'
import { root } from '../helper.ts'

// Running the CLI as users do: a process of its own against a service on a real port.

export const cliPath = path.join(root, 'client', 'cli', 'main.ts')

/** The base URL of an app listening on a free port of 127.0.0.1. */
export async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  if (!address || typeof address === 'string') throw new Error('the app does not listen on a port')
  return `http://127.0.0.1:${address.port}`
}

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export interface CliRun {
  child: ReturnType<typeof spawn>
  /** What it wrote so far. */
  output(): { stdout: string; stderr: string }
  result: Promise<CliResult>
}

/**
 * The environment a CLI process gets: PATH, Node's compile cache when the tests have one (the CLI
 * starts in a third of the time), and what the test gives.
 */
export function cliEnvironment(environment: Record<string, string>): Record<string, string> {
  const inherited: Record<string, string> = { PATH: process.env.PATH ?? '' }
  if (process.env.NODE_COMPILE_CACHE) inherited.NODE_COMPILE_CACHE = process.env.NODE_COMPILE_CACHE
  return { ...inherited, ...environment }
}

/** Starts `bulk-io <args>` with only cliEnvironment(environment) (stdin, stdout, stderr are pipes). */
export function startCli(args: string[], environment: Record<string, string> = {}): CliRun {
  const child = spawn(process.execPath, [cliPath, ...args], {
    cwd: root,
    env: cliEnvironment(environment),
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    stdout += text
  })
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    stderr += text
  })
  const result = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
  return { child, output: () => ({ stdout, stderr }), result }
}

/** Runs `bulk-io <args>` to its end. */
export function runCli(args: string[], environment: Record<string, string> = {}): Promise<CliResult> {
  const run = startCli(args, environment)
  run.child.stdin?.end()
  return run.result
}
