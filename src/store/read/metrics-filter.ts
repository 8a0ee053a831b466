/**
 * Which events a read covers (MetricsFilter) and how it becomes a MongoDB filter and time limit:
 * the first thing every read of the read path takes.
 */
import type { Filter } from "mongodb";
import type { TimeWindow } from "../../core/window.js";
import type { ClickDocument, ImpressionDocument } from "../schema/documents.js";

/** Which events a metric covers. The same filter applies to clicks and impressions alike. */
export interface MetricsFilter {
  window: TimeWindow;
  /** What is left of the caller's deadline: MongoDB abandons the work once it has passed. */
  maxTimeMS?: number | undefined;
  userId?: string | undefined;
  variant?: string | undefined;
}

/** Aggregation options that stop MongoDB's work when the caller's time is up. */
export function timeLimit(f: Pick<MetricsFilter, "maxTimeMS">): { maxTimeMS?: number } {
  return f.maxTimeMS === undefined ? {} : { maxTimeMS: Math.max(1, Math.floor(f.maxTimeMS)) };
}

export function match(f: MetricsFilter): Filter<ClickDocument & ImpressionDocument> {
  const m: Filter<ClickDocument & ImpressionDocument> = { timestamp: f.window.until === undefined ? { $gte: f.window.start } : { $gte: f.window.start, $lt: f.window.until } };
  if (f.userId !== undefined) m.user_id = f.userId;
  if (f.variant !== undefined) m.variant = f.variant;
  return m;
}
