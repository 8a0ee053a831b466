/**
 * Results kept by the exact objects they were made from. The readers' caches hand out the same
 * object for the same stored versions (a window's rollup sums, a settled edge hour's stretch, a
 * per-user table or body), so a result made of the same objects is the same result, and a read
 * repeated over data that has not changed (a dashboard refreshing, WatchMetrics) is not summed
 * again. A write moves a version, which makes a new object, which misses.
 */
export class ComposedCache<K extends object, V> {
  private readonly byKey = new WeakMap<K, { parts: readonly unknown[]; value: V }[]>();

  constructor(private readonly kept = 4) {}

  /** The value made from `key` and exactly these `parts` (compared with ===, in order). */
  get(key: K, parts: readonly unknown[]): V | undefined {
    return this.byKey.get(key)?.find((e) => e.parts.length === parts.length && e.parts.every((p, i) => p === parts[i]))?.value;
  }

  set(key: K, parts: readonly unknown[], value: V): V {
    let list = this.byKey.get(key);
    if (!list) this.byKey.set(key, (list = []));
    list.unshift({ parts, value });
    if (list.length > this.kept) list.pop();
    return value;
  }
}
