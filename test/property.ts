import type { Parameters } from 'fast-check'

// Settings of the property-based tests (fast-check), files named `*.property.test.ts`.
// `make test` (and CI) runs each property with its base number of examples and a fixed seed, so a
// failure there reproduces exactly. `make fuzz` runs the same properties with FUZZ_FACTOR (10 or
// more) times as many examples and a fresh seed each run, printed with every failure: rerun a
// failure with `FUZZ_SEED=<seed> make fuzz`.

const factor = Number(process.env.FUZZ_FACTOR ?? 1)
if (!Number.isInteger(factor) || factor < 1) throw new Error(`FUZZ_FACTOR must be a positive integer, not ${factor}`)

/** The seed of every property in this run: FUZZ_SEED, else fixed (`make test`) or random (`make fuzz`). */
export const fuzzSeed =
  process.env.FUZZ_SEED !== undefined
    ? Number(process.env.FUZZ_SEED)
    : factor > 1
      ? Math.floor(Math.random() * 0x7fffffff)
      : 20261203

/**
 * fast-check parameters for a property checked `baseRuns` times in `make test` (scaled by
 * FUZZ_FACTOR in `make fuzz`). `seed` is the run's seed, so that a failure names it.
 */
export function propertyParameters<T>(baseRuns: number, extra: Parameters<T> = {}): Parameters<T> {
  return { numRuns: baseRuns * factor, seed: fuzzSeed, endOnFailure: true, ...extra }
}

/** The number of examples a hand-rolled loop should try (same scaling as propertyParameters). */
export function exampleCount(baseRuns: number): number {
  return baseRuns * factor
}
