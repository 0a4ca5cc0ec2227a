import { readlinkSync } from 'node:fs'
import { setPriority } from 'node:os'

// The module a validation thread (tinypool) loads: the batch task of import-batch.ts, run below
// the main thread. On Linux each thread has a niceness of its own (set through its thread id; pid
// 0 would mean the whole process), and API requests (a client polling its job's status) must not
// queue behind validation. Elsewhere there is no /proc/thread-self: no matter. A job thread that
// validates its batches itself (IMPORT_THREADS=0) imports import-batch.ts directly, and keeps its
// own niceness.
try {
  const threadId = Number(readlinkSync('/proc/thread-self').split('/').pop())
  if (threadId > 0) setPriority(threadId, 10)
} catch {}

export { default, warmUp } from './import-batch.ts'
