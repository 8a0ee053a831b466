import { InvalidArgumentError } from "./errors.js";

export const DEFAULT_WINDOW_DAYS = 7;
export const MAX_WINDOW_DAYS = 365;
export const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * A window of events: timestamp >= start, and < until when the window has an explicit end (an
 * experiment period). A trailing window (the last `days` days) has no `until`: events up to
 * the 5 minutes a log call may run ahead of the server's clock count too.
 */
export interface TimeWindow {
  /** Whole days the window spans (rounded up for a period). */
  readonly days: number;
  readonly start: Date;
  /** The window's end for listing time buckets: `until`, or now. */
  readonly end: Date;
  readonly until?: Date | undefined;
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

/**
 * The window a request asks for: the explicit period [start_time, end_time) when start_time is
 * set (end_time unset means up to now, open like a trailing window), otherwise the last `days`
 * days. A period spans at most MAX_WINDOW_DAYS and cannot be combined with `days`.
 */
export function requestWindow(req: { days: number; startTime?: Date | undefined; endTime?: Date | undefined }, now: Date = new Date()): TimeWindow {
  const { startTime, endTime } = req;
  if (startTime === undefined) {
    if (endTime !== undefined) throw new InvalidArgumentError("end_time", "needs start_time (a period is [start_time, end_time))");
    return timeWindow(req.days, now);
  }
  if (req.days !== 0) throw new InvalidArgumentError("days", `must be 0 (unset) when start_time is given, got ${req.days}`);
  if (!Number.isFinite(startTime.getTime())) throw new InvalidArgumentError("start_time", "must be a valid timestamp");
  if (endTime !== undefined && !Number.isFinite(endTime.getTime())) throw new InvalidArgumentError("end_time", "must be a valid timestamp");
  if (startTime.getTime() > now.getTime()) throw new InvalidArgumentError("start_time", `must not be in the future, got ${startTime.toISOString()}`);
  if (endTime !== undefined && !(endTime.getTime() > startTime.getTime())) {
    throw new InvalidArgumentError("end_time", `must be after start_time (${startTime.toISOString()}), got ${endTime.toISOString()}`);
  }
  const end = endTime ?? now;
  const span = end.getTime() - startTime.getTime();
  if (span > MAX_WINDOW_DAYS * DAY_MS) throw new InvalidArgumentError("end_time", `must be at most ${MAX_WINDOW_DAYS} days after start_time, got ${(span / DAY_MS).toFixed(1)} days`);
  return { days: Math.max(1, Math.ceil(span / DAY_MS)), start: startTime, end, until: endTime };
}
