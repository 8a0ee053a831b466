import { InvalidArgumentError } from "./errors.js";

export const DEFAULT_WINDOW_DAYS = 7;
export const MAX_WINDOW_DAYS = 365;
export const DAY_MS = 24 * 60 * 60 * 1000;

/** A look-back window: events with timestamp >= start are in it. */
export interface TimeWindow {
  readonly days: number;
  readonly start: Date;
  readonly end: Date;
}

/** `days` is 1..365; 0 (proto3's unset) means the default of 7. */
export function resolveDays(days: number, field = "days"): number {
  if (days === 0) return DEFAULT_WINDOW_DAYS;
  if (!Number.isInteger(days) || days < 1 || days > MAX_WINDOW_DAYS) {
    throw new InvalidArgumentError(field, `must be between 1 and ${MAX_WINDOW_DAYS} (0 means ${DEFAULT_WINDOW_DAYS}), got ${days}`);
  }
  return days;
}

export function timeWindow(days: number, now: Date = new Date(), field = "days"): TimeWindow {
  const resolved = resolveDays(days, field);
  return { days: resolved, start: new Date(now.getTime() - resolved * DAY_MS), end: now };
}
