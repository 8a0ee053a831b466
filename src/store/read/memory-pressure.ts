/**
 * Read caches give way before the heap runs out. Each cache is bounded (rollup-reader.ts,
 * query-tables.ts, user-rollups.ts), but together they take most of the server's 256 MB heap at
 * millions of events: at 3M, with a busy dashboard's caches full (~194 MB live), a raw month in a
 * half-hour time zone still ran the server out of memory. After every full collection that leaves
 * more than SHED_AT of the old generation's limit in use, every registered cache is dropped: reads
 * then rebuild what they need, slower, instead of the process dying.
 */
import { constants, PerformanceObserver } from "node:perf_hooks";
import { getHeapStatistics } from "node:v8";

/** Of the old generation's limit: 205 MB of the server's 256 (a busy dashboard's caches at 3M events are ~194). */
const SHED_AT = 0.8;
/** V8's young generation at most (three 16 MB semi-spaces), the rest of its heap limit when no old-space size is given. */
const YOUNG_GENERATION_BYTES = 48 * 2 ** 20;

const shedders = new Set<() => void>();
let observer: PerformanceObserver | undefined;

/** Calls `shed` whenever the heap is near its limit after a full collection; returns the way to stop. */
export function onMemoryPressure(shed: () => void): () => void {
  shedders.add(shed);
  if (observer === undefined) {
    observer = new PerformanceObserver((list) => {
      // Only after a full collection is the heap in use close to what is live.
      if (list.getEntries().some((e) => (e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR)) relieveMemoryPressure();
    });
    observer.observe({ entryTypes: ["gc"] });
  }
  return () => {
    shedders.delete(shed);
    if (shedders.size === 0) {
      observer?.disconnect();
      observer = undefined;
    }
  };
}

/** The old generation's limit: `--max-old-space-size` where given (flags or NODE_OPTIONS), else V8's heap limit less its young generation. */
export function oldGenerationLimit(flags: readonly string[] = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? "").split(/\s+/)], heapLimit = getHeapStatistics().heap_size_limit): number {
  let mb: number | undefined;
  for (const flag of flags) {
    const m = /^--max[-_]old[-_]space[-_]size=(\d+)$/.exec(flag);
    if (m) mb = Number(m[1]);
  }
  return mb !== undefined ? mb * 2 ** 20 : heapLimit - YOUNG_GENERATION_BYTES;
}

/** Drops every registered cache if the heap in use is past SHED_AT of the old generation's limit; whether it did. */
export function relieveMemoryPressure(used = getHeapStatistics().used_heap_size, limit = oldGenerationLimit()): boolean {
  if (used < SHED_AT * limit) return false;
  for (const shed of shedders) shed();
  return true;
}
