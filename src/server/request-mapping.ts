/** Turning decoded protobuf requests into the core's plain inputs (and back for timestamps). */
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { ClickSource, TopQueriesOrder } from "../../gen/clickanalytics/v1/click_analytics_pb.js";
import type { TopQueriesOrder as OrderName } from "../core/top-queries.js";
import { InvalidArgumentError } from "../core/errors.js";
import { CLICK_SOURCES, optionalId, optionalVariant, type ClickSourceName } from "../core/events.js";
import { requestWindow, type TimeWindow } from "../core/window.js";
import type { MetricsFilter } from "../store/click-store.js";

export function requestTime(ts: Timestamp | undefined, field = "timestamp"): Date | undefined {
  if (ts === undefined) return undefined;
  if (!Number.isInteger(ts.nanos) || ts.nanos < 0 || ts.nanos > 999_999_999) {
    throw new InvalidArgumentError(`${field}.nanos`, "must be between 0 and 999999999");
  }
  return timestampDate(ts);
}

export const responseTime = timestampFromDate;

const SOURCE_BY_ENUM = new Map<ClickSource, ClickSourceName>([
  [ClickSource.UNSPECIFIED, "SEARCH_RESULTS"],
  [ClickSource.SEARCH_RESULTS, "SEARCH_RESULTS"],
  [ClickSource.RECOMMENDATIONS, "RECOMMENDATIONS"],
  [ClickSource.AUTOCOMPLETE, "AUTOCOMPLETE"],
  [ClickSource.RELATED_PRODUCTS, "RELATED_PRODUCTS"],
  [ClickSource.SPONSORED, "SPONSORED"],
]);

export function clickSource(value: ClickSource): ClickSourceName {
  const name = SOURCE_BY_ENUM.get(value);
  if (name === undefined) throw new InvalidArgumentError("source", `must be one of ${CLICK_SOURCES.join(", ")} (got enum value ${value})`);
  return name;
}

/** What a request's window fields ask for: the last `days` days, or the period [start_time, end_time). */
export interface WindowFields {
  days: number;
  startTime?: Timestamp | undefined;
  endTime?: Timestamp | undefined;
}

export function windowOf(request: WindowFields, now = new Date()): TimeWindow {
  return requestWindow({ days: request.days, startTime: requestTime(request.startTime, "start_time"), endTime: requestTime(request.endTime, "end_time") }, now);
}

/** Optional user/variant filters (empty strings mean none) and the window. */
export function metricsFilter(request: { userId?: string; variant?: string } & WindowFields, now = new Date()): MetricsFilter {
  return {
    userId: optionalId("user_id", request.userId),
    variant: request.variant === undefined ? undefined : optionalVariant("variant", request.variant),
    window: windowOf(request, now),
  };
}

const ORDER_BY = new Map<TopQueriesOrder, OrderName>([
  [TopQueriesOrder.UNSPECIFIED, "searches"],
  [TopQueriesOrder.SEARCHES, "searches"],
  [TopQueriesOrder.CLICKS, "clicks"],
  [TopQueriesOrder.CTR, "ctr"],
  [TopQueriesOrder.NO_RESULTS, "no_results"],
]);

export function topQueriesOrder(value: TopQueriesOrder): OrderName {
  const order = ORDER_BY.get(value);
  if (order === undefined) throw new InvalidArgumentError("order_by", `must be SEARCHES, CLICKS, CTR or NO_RESULTS (got enum value ${value})`);
  return order;
}

/** 1..1000; 0 (unset) means 10. */
export function queryLimit(limit: number): number {
  if (limit === 0) return 10;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new InvalidArgumentError("limit", `must be between 1 and 1000 (0 means 10), got ${limit}`);
  return limit;
}

/** 1..3600 seconds; 0 (unset) means 5. */
export function watchInterval(seconds: number): number {
  if (seconds === 0) return 5;
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 3600) throw new InvalidArgumentError("interval_seconds", `must be between 1 and 3600 (0 means 5), got ${seconds}`);
  return seconds;
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
