import { readlinkSync } from 'node:fs'
import { setPriority } from 'node:os'

/**
 * Lowers the calling thread's priority to `niceness`, so that API requests (a client polling its
 * job's status) do not queue behind the work of background threads. On Linux each thread has a
 * niceness of its own, set through its thread id (pid 0 would mean the whole process); elsewhere
 * there is no /proc/thread-self, and nothing changes.
 */
export function lowerThreadPriority(niceness: number): void {
  try {
    const threadId = Number(readlinkSync('/proc/thread-self').split('/').pop())
    if (threadId > 0) setPriority(threadId, niceness)
  } catch {}
}
