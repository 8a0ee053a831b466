/**
 * The dataset's events as the service stores them (README, "Storage"), without the service: what
 * the benchmark's raw insertMany and the ingest floor (ingest-floor.ts) write.
 */
import { Double, type Document } from "mongodb";
import { normalizeQuery } from "../src/core/events.js";
import type { DatasetEvent } from "../src/cli/traffic-generator.js";

export function toDocument(e: DatasetEvent): Document {
  const common = { event_id: e.eventId, impression_id: e.impressionId, user_id: e.userId };
  const tail = { variant: e.variant, response_time_ms: new Double(e.responseTimeMs), session_id: e.sessionId };
  if (e.kind === "impression") {
    return { ...common, query: e.query, query_normalized: normalizeQuery(e.query), ...tail, results_count: e.resultsCount, timestamp: new Date(e.timestampMs), ...(e.teams === undefined ? {} : { teams: e.teams }) };
  }
  return {
    ...common,
    product_id: e.productId,
    rank: e.rank,
    search_query: e.searchQuery,
    query_normalized: normalizeQuery(e.searchQuery),
    ...tail,
    source: e.source,
    timestamp: new Date(e.timestampMs),
  };
}
