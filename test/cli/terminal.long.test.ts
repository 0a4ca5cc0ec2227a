import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { appWithLockedUser, importJob, root, scratchDirectory, until, usersCsv } from '../helper.ts'
import { cliEnvironment, cliPath, listen } from './run-cli.ts'

// The CLI in a real terminal: tmux gives it a pseudo-terminal (stdin and stderr are TTYs), the
// test reads the screen as a person sees it (capture-pane) and every byte written to it
// (pipe-pane), and types Ctrl-C and answers as a person would (send-keys). CI installs tmux.

try {
  execFileSync('tmux', ['-V'])
} catch {
  throw new Error('this test needs tmux (apt-get install -y tmux), as .ci/run installs it')
}

const socket = `bulk-io-test-${process.pid}-${randomBytes(3).toString('hex')}`
const tmux = (...args: string[]) =>
  execFileSync('tmux', ['-L', socket, '-f', '/dev/null', ...args], { encoding: 'utf8' })
t.teardown(() => {
  try {
    tmux('kill-server')
  } catch {}
})
const scratch = scratchDirectory('bulk-io-terminal-')
const quote = (text: string) => `'${text.replace(/'/g, `'\\''`)}'`

interface Terminal {
  /** The screen as it shows now. */
  screen(): string
  /** Every byte the program wrote to the terminal so far. */
  bytes(): string
  keys(...keys: string[]): void
  waitFor(pattern: RegExp, what: string): Promise<string>
}

/** Runs `bulk-io <args>` in a 120×40 terminal; the shell then prints its exit code as [exit N]. */
function terminal(name: string, args: string[], apiUrl: string): Terminal {
  const log = path.join(scratch, `${name}.log`)
  writeFileSync(log, '')
  const command = [
    'sleep 0.3;', // pipe-pane is attached before the CLI writes its first byte
    'env -i',
    ...Object.entries(cliEnvironment({ API_URL: apiUrl })).map(([name, value]) => `${name}=${quote(value)}`),
    quote(process.execPath),
    quote(cliPath),
    ...args.map(quote),
    '; echo "[exit $?]"; sleep 600',
  ].join(' ')
  tmux('new-session', '-d', '-s', name, '-x', '120', '-y', '40', '-c', root, command)
  tmux('pipe-pane', '-t', name, '-o', `cat >> ${quote(log)}`)
  const screen = () => tmux('capture-pane', '-p', '-t', name)
  return {
    screen,
    bytes: () => readFileSync(log, 'utf8'),
    keys: (...keys) => {
      tmux('send-keys', '-t', name, ...keys)
    },
    waitFor: async (pattern, what) => {
      const deadline = Date.now() + 60_000
      for (;;) {
        const shown = screen()
        if (pattern.test(shown)) return shown
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; the screen:\n${shown}`)
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    },
  }
}

/** Keeps a screen as text under .data/screenshots/, for people to look at. */
function keepScreen(t: Test, name: string, screen: string) {
  const file = path.join(root, '.data', 'screenshots', name)
  mkdirSync(path.dirname(file), { recursive: true })
  writeFileSync(file, screen)
  t.comment(`screen: ${path.relative(root, file)}`)
}

t.test('a live bar, redrawn in place, that ends at 100% with a summary and exit 0', async (t) => {
  const { app, other } = await appWithLockedUser(t, { prefix: 'bar', seeded: 30_000, locked: 25_000, batchSize: 500 })
  const apiUrl = await listen(app)
  const file = path.join(scratch, 'bar.csv')
  writeFileSync(file, usersCsv(100_000, { prefix: 'bar' }))
  const term = terminal('bar', ['import', file, '--resource', 'users'], apiUrl)

  // The job commits batches up to the locked row, then waits: the bar shows where it stands.
  const waiting = await term.waitFor(/bar\.csv waiting \(row_locks\) ▕█+░+▏ +\d+%/, 'the bar of a waiting job')
  const percent = Number(
    /▕[█░]+▏ +(\d+)%/.exec(waiting.split('\n').find((line) => line.includes('waiting')) ?? '')?.[1],
  )
  t.ok(percent > 0 && percent < 100, `the bar stands part way (${percent}%)`)
  t.match(waiting, /bar\.csv uploading ▕█{30}▏ +100%/, 'the upload’s bar, done')
  t.match(waiting, /import [0-9a-f-]{36} queued: users, csv/)

  await other`rollback`
  other.release()
  const done = await term.waitFor(/\[exit \d+\]/, 'the end')
  t.match(done, /\[exit 0\]/, 'exit 0: completed, no failed record')
  t.match(done, /bar\.csv completed ▕█{30}▏ +100% +100,000 records/, 'the bar ends at 100%')
  t.match(done, /import [0-9a-f-]{36} completed in \d+s: 100,000 records: 70,000 inserted, 30,000 updated, 0 failed/)
  keepScreen(t, 'cli-import-waiting.txt', waiting)
  keepScreen(t, 'cli-import-done.txt', done)
  const bars = done.split('\n').filter((line) => line.includes('▕'))
  t.equal(bars.length, 2, 'one line for the upload, one for the job: the bar is redrawn in place')

  const bytes = term.bytes()
  t.ok(bytes.includes('\r') && bytes.includes('\u001b[K'), 'redrawn with a carriage return and erase-line')
  t.match(bytes, /\rbar\.csv waiting \(row_locks\) ▕/, 'the frames written include the waiting one')
})

t.test(
  'Ctrl-C asks; "n" goes on, "y" cancels the job (exit 1); Ctrl-C twice leaves it running (exit 130); a job that ends meanwhile withdraws the question',
  async (t) => {
    const { app, other } = await appWithLockedUser(t, { prefix: 'int', seeded: 300, locked: 250, batchSize: 500 })
    const apiUrl = await listen(app)
    const file = path.join(scratch, 'int.csv')
    writeFileSync(file, usersCsv(20_000, { prefix: 'int' }))

    const term = terminal('cancel', ['import', file, '--resource', 'users'], apiUrl)
    const waiting = await term.waitFor(/int\.csv waiting \(row_locks\)/, 'the job to wait')
    const id = /import ([0-9a-f-]{36}) queued/.exec(waiting)?.[1] as string
    term.keys('C-c')
    await term.waitFor(/Cancel import [0-9a-f-]{36}\? Batches already committed stay\. \[y\/N\] ?$/m, 'the question')
    term.keys('n', 'Enter')
    await term.waitFor(/\[y\/N\] n\n(.*\n)*int\.csv waiting \(row_locks\)/, 'the bar again after "n"')
    t.equal((await importJob(app, id)).status, 'running', '"n": the job goes on')

    term.keys('C-c')
    await until(
      async () => (term.screen().match(/\[y\/N\] ?$/gm)?.length === 1 ? true : undefined),
      'the second question',
    )
    term.keys('y', 'Enter')
    const cancelled = await term.waitFor(/\[exit \d+\]/, 'the end')
    keepScreen(t, 'cli-import-cancelled.txt', cancelled)
    t.match(cancelled, `cancelling import ${id.slice(0, 8)}`)
    t.match(cancelled, new RegExp(`import ${id} cancelled in \\d+s: \\d+ records`))
    t.match(cancelled, /\[exit 1\]/, 'a cancelled import exits 1')
    t.equal((await importJob(app, id)).status, 'cancelled')

    const leave = terminal('leave', ['import', file, '--resource', 'users'], apiUrl)
    const second = await leave.waitFor(/int\.csv waiting \(row_locks\)/, 'the second job to wait')
    const secondId = /import ([0-9a-f-]{36}) queued/.exec(second)?.[1] as string
    leave.keys('C-c')
    await leave.waitFor(/\[y\/N\] ?$/m, 'the question')
    leave.keys('C-c')
    const left = await leave.waitFor(/\[exit \d+\]/, 'the end')
    t.match(left, /\[exit 130\]/, 'Ctrl-C twice: exit 130')
    t.match(left, `left import ${secondId} running`)
    t.match(left, `bulk-io jobs cancel ${secondId}`)
    t.equal((await importJob(app, secondId)).status, 'running', 'the job was left running')

    // A job that ends while the question is on screen: the question goes, and the CLI ends as usual.
    const withdrawn = terminal('withdrawn', ['import', file, '--resource', 'users'], apiUrl)
    await withdrawn.waitFor(/int\.csv +(queued|waiting)/, 'the third job to wait')
    withdrawn.keys('C-c')
    await withdrawn.waitFor(/\[y\/N\] ?$/m, 'the question')
    await other`rollback`
    other.release()
    const ended = await withdrawn.waitFor(/\[exit \d+\]/, 'the end')
    t.match(ended, /import [0-9a-f-]{36} completed in \d+s: 20,000 records/, 'the job ran to its end')
    t.match(ended, /\[exit 0\]/, 'no answer needed: exit 0')
    await until(
      async () => ((await importJob(app, secondId)).status === 'completed' ? true : undefined),
      'the left job to end',
    )
  },
)
