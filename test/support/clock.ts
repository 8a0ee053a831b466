const HOUR_MS = 3_600_000;

/** The current UTC hour's start (ms). */
export const currentHour = (): number => Math.floor(Date.now() / HOUR_MS) * HOUR_MS;

/**
 * Returns the current UTC hour once the next hour boundary is at least `marginMs` away, waiting
 * past it when it is nearer. Trailing windows' edges, whole hours and settled hours all move at hour
 * boundaries, so a test that expects two reads of the same window to rebuild nothing runs its reads
 * clear of one (and checks afterwards, with `currentHour()`, that they stayed in that hour).
 */
export async function clearOfHourBoundary(marginMs = 60_000): Promise<number> {
  const untilNext = currentHour() + HOUR_MS - Date.now();
  if (untilNext < marginMs) await new Promise((resolve) => setTimeout(resolve, untilNext + 1_000));
  return currentHour();
}
