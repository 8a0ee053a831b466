/**
 * Which events a read covers (MetricsFilter) and how it becomes a MongoDB filter and time limit:
 * the first thing every read of the read path takes.
 */
import type { Filter } from "mongodb";
import type { TimeWindow } from "../../core/window.js";
import type { ClickDocument, ImpressionDocument } from "../schema/documents.js";
import { DomainError } from "../../core/errors.js";

/** Which events a metric covers. The same filter applies to clicks and impressions alike. */
export interface MetricsFilter {
  window: TimeWindow;
  /** What is left of the caller's deadline: MongoDB abandons the work once it has passed. */
  maxTimeMS?: number | undefined;
  /** The caller's deadline (Date.now() ms), where it has one: CPU work for a caller gone is skipped. */
  deadline?: number | undefined;
  userId?: string | undefined;
  variant?: string | undefined;
}

/** Aggregation options that stop MongoDB's work when the caller's time is up. */
export function timeLimit(f: Pick<MetricsFilter, "maxTimeMS">): { maxTimeMS?: number } {
  return f.maxTimeMS === undefined ? {} : { maxTimeMS: Math.max(1, Math.floor(f.maxTimeMS)) };
}

/**
 * Before a read's own CPU work on what MongoDB returned (a year of hourly buckets is a fifth of a
 * second): a caller whose deadline has passed is answered already, and the work would only slow
 * every other call.
 */
export function requireTimeLeft(f: Pick<MetricsFilter, "deadline">): void {
  if (f.deadline !== undefined && Date.now() >= f.deadline) throw new DomainError("deadline_exceeded", "the call's deadline passed before its answer was computed");
}

export function match(f: MetricsFilter): Filter<ClickDocument & ImpressionDocument> {
  const m: Filter<ClickDocument & ImpressionDocument> = { timestamp: f.window.until === undefined ? { $gte: f.window.start } : { $gte: f.window.start, $lt: f.window.until } };
  if (f.userId !== undefined) m.user_id = f.userId;
  if (f.variant !== undefined) m.variant = f.variant;
  return m;
}
