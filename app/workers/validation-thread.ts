import { lowerThreadPriority } from './thread-priority.ts'

// The module a validation thread (tinypool) loads: the batch task of import-batch.ts, below the
// main thread and the job thread. A job thread that validates its batches itself
// (IMPORT_THREADS=0) imports import-batch.ts directly, and keeps its own priority.
lowerThreadPriority(10)

export { default, warmUp } from './import-batch.ts'
