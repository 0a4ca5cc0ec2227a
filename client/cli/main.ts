#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { DEFAULT_API_URL, globalOptions } from './context.ts'
import { exportCommand } from './export.ts'
import { importCommand } from './import.ts'
import { jobsCommand } from './jobs.ts'
import { describeError, exitCodes, UsageError } from './output.ts'

// bulk-io: the command line of the bulk-io service, built on its generated client (../index.ts).
// `npx bulk-io --help` in the repository; README, "The CLI".

const usage = `Usage: bulk-io <command> [options]

Commands:
  import <file|url> --resource <r>   import a file, with a progress bar, a summary and its errors
  export <resource> [-o <file>]      stream a resource's rows to a file or stdout
  jobs [list|show|watch|cancel|errors|failed-records|download]
                                     import and export jobs
  help [<command>]                   this text, or a command's

Options of every command:
      --api-url <url>            the service (default: API_URL, else ${DEFAULT_API_URL})
      --api-key <key>            an API key, when the service asks for one (default: API_KEY)
      --json                     print JSON on stdout, for scripts
  -q, --quiet                    no progress on stderr
      --progress-interval <s>    seconds between progress lines when stderr is not a terminal (5)
  -h, --help                     help
      --version                  the CLI's version

Exit codes: 0 done, 1 error (the service answered with a problem, could not be reached, or the job
failed or was cancelled), 2 usage, 3 an import completed with failed records, 130 interrupted.
`

const commands: Record<string, (args: string[]) => Promise<number>> = {
  import: importCommand,
  export: exportCommand,
  jobs: jobsCommand,
}

/** The command's name: the first argument that is neither an option nor a global option's value. */
function splitCommand(args: string[]): { name: string | undefined; rest: string[] } {
  for (let index = 0; index < args.length; index++) {
    const arg = args[index] as string
    if (!arg.startsWith('-')) return { name: arg, rest: [...args.slice(0, index), ...args.slice(index + 1)] }
    const option = globalOptions[arg.replace(/^--/, '').split('=')[0] as keyof typeof globalOptions]
    if (option?.type === 'string' && !arg.includes('=')) index++
  }
  return { name: undefined, rest: args }
}

async function main(args: string[]): Promise<number> {
  if (args.includes('--version')) {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
    process.stdout.write(`${pkg.version}\n`)
    return exitCodes.done
  }
  const { name, rest } = splitCommand(args)
  if (name === 'help' || name === undefined) {
    const [topic] = rest.filter((arg) => !arg.startsWith('-'))
    if (topic && commands[topic]) return (commands[topic] as (args: string[]) => Promise<number>)(['--help'])
    const stream =
      name === undefined && !rest.some((arg) => arg === '-h' || arg === '--help') ? process.stderr : process.stdout
    stream.write(usage)
    return name === undefined && stream === process.stderr ? exitCodes.usage : exitCodes.done
  }
  const command = commands[name]
  if (!command) throw new UsageError(`unknown command ${name} (${Object.keys(commands).join(', ')}, help)`)
  return command(rest)
}

// A reader of stdout that goes away (`| head`) ends the CLI quietly.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(exitCodes.done)
  throw error
})

const apiUrl = () => {
  const index = process.argv.indexOf('--api-url')
  return (index > 0 ? process.argv[index + 1] : undefined) ?? process.env.API_URL ?? DEFAULT_API_URL
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (error: unknown) => {
    for (const line of describeError(error, apiUrl())) process.stderr.write(`${line}\n`)
    if (error instanceof UsageError) process.stderr.write('(bulk-io help, or bulk-io <command> --help)\n')
    process.exitCode = (error as { exitCode?: number }).exitCode ?? exitCodes.error
  },
)
