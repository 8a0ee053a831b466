import type { Document, Filter } from "mongodb";
import { interpolatePercentile, rankStats, type RankStats } from "../core/metrics.js";
import type { TimeWindow } from "../core/window.js";
import type { ClickDocument, Collections, ImpressionDocument } from "./documents.js";

/** Which events a metric covers. The same filter applies to clicks and impressions alike. */
export interface MetricsFilter {
  window: TimeWindow;
  userId?: string | undefined;
  variant?: string | undefined;
}

export interface VariantTotals {
  clicks: number;
  impressions: number;
}

export interface CtrTotals extends VariantTotals {
  /** Every variant with at least one event in the window. */
  variants: Map<string, VariantTotals>;
}

export interface ResponseTimeStats {
  count: number;
  avg?: number | undefined;
  min?: number | undefined;
  max?: number | undefined;
  p50?: number | undefined;
  p95?: number | undefined;
  p99?: number | undefined;
}

export interface UserActivity {
  clicks: number;
  impressions: number;
  avgRankClicked?: number | undefined;
  avgResponseTimeMs?: number | undefined;
  variantsUsed: string[];
}

export interface VariantActivity extends VariantTotals {
  avgRankClicked?: number | undefined;
  avgResponseTimeMs?: number | undefined;
}

export const REPORTED_PERCENTILES = [0.5, 0.95, 0.99] as const;

function match(f: MetricsFilter): Filter<ClickDocument & ImpressionDocument> {
  const m: Filter<ClickDocument & ImpressionDocument> = { timestamp: { $gte: f.window.start } };
  if (f.userId !== undefined) m.user_id = f.userId;
  if (f.variant !== undefined) m.variant = f.variant;
  return m;
}

/** null from $avg/$min over no documents becomes undefined ("no data"). */
function num(value: unknown): number | undefined {
  return value === null || value === undefined ? undefined : Number(value);
}

/** Events per variant in one collection. */
async function countByVariant(collection: Collections["clicks"] | Collections["impressions"], f: MetricsFilter): Promise<Map<string, number>> {
  const rows = await collection
    .aggregate<{ _id: string; n: number }>([{ $match: match(f) }, { $group: { _id: "$variant", n: { $sum: 1 } } }])
    .toArray();
  return new Map(rows.map((r) => [r._id, Number(r.n)]));
}

export async function ctrTotals(c: Collections, f: MetricsFilter): Promise<CtrTotals> {
  const [clicks, impressions] = await Promise.all([countByVariant(c.clicks, f), countByVariant(c.impressions, f)]);
  const variants = new Map<string, VariantTotals>();
  for (const name of new Set([...clicks.keys(), ...impressions.keys()])) {
    variants.set(name, { clicks: clicks.get(name) ?? 0, impressions: impressions.get(name) ?? 0 });
  }
  const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  return { clicks: sum(clicks), impressions: sum(impressions), variants };
}

/** Exact rank statistics: MongoDB reduces clicks to a rank histogram, which is small. */
export async function rankMetrics(c: Collections, f: MetricsFilter): Promise<RankStats> {
  const rows = await c.clicks
    .aggregate<{ _id: number; n: number }>([{ $match: match(f) }, { $group: { _id: "$rank", n: { $sum: 1 } } }])
    .toArray();
  return rankStats(rows.map((r) => [Number(r._id), Number(r.n)] as const));
}

/**
 * Latency over impressions. Exact percentiles: one sort numbers the values, and only the (at
 * most six) values at the interpolation positions leave the server.
 */
export async function responseTimeStats(c: Collections, f: MetricsFilter): Promise<ResponseTimeStats> {
  const positionTests = REPORTED_PERCENTILES.flatMap((p) => {
    const h = { $multiply: [{ $subtract: ["$n", 1] }, p] };
    return [{ $eq: ["$pos", { $floor: h }] }, { $eq: ["$pos", { $ceil: h }] }];
  });
  const [result] = await c.impressions
    .aggregate<{ stats: Document[]; picks: { pos: number; v: number }[] }>(
      [
        { $match: match(f) },
        {
          $facet: {
            stats: [
              {
                $group: {
                  _id: null,
                  count: { $sum: 1 },
                  avg: { $avg: "$response_time_ms" },
                  min: { $min: "$response_time_ms" },
                  max: { $max: "$response_time_ms" },
                },
              },
            ],
            picks: [
              {
                $setWindowFields: {
                  sortBy: { response_time_ms: 1 },
                  output: {
                    pos: { $documentNumber: {} },
                    n: { $count: {}, window: { documents: ["unbounded", "unbounded"] } },
                  },
                },
              },
              { $set: { pos: { $subtract: ["$pos", 1] } } },
              { $match: { $expr: { $or: positionTests } } },
              { $project: { _id: 0, pos: 1, v: "$response_time_ms" } },
            ],
          },
        },
      ],
      { allowDiskUse: true },
    )
    .toArray();
  const stats = result?.stats[0];
  const count = Number(stats?.count ?? 0);
  const byPosition = new Map((result?.picks ?? []).map((p) => [Number(p.pos), Number(p.v)]));
  const valueAt = (pos: number) => {
    const v = byPosition.get(pos);
    if (v === undefined) throw new Error(`percentile position ${pos} of ${count} missing from aggregation`);
    return v;
  };
  const [p50, p95, p99] = REPORTED_PERCENTILES.map((p) => interpolatePercentile(count, p, valueAt));
  return { count, avg: num(stats?.avg), min: num(stats?.min), max: num(stats?.max), p50, p95, p99 };
}

export async function userActivity(c: Collections, userId: string, f: Pick<MetricsFilter, "window">): Promise<UserActivity> {
  const filter = match({ window: f.window, userId });
  const [clicks, impressions] = await Promise.all([
    c.clicks
      .aggregate([{ $match: filter }, { $group: { _id: null, n: { $sum: 1 }, avg: { $avg: "$rank" }, variants: { $addToSet: "$variant" } } }])
      .toArray(),
    c.impressions
      .aggregate([
        { $match: filter },
        { $group: { _id: null, n: { $sum: 1 }, avg: { $avg: "$response_time_ms" }, variants: { $addToSet: "$variant" } } },
      ])
      .toArray(),
  ]);
  const [cl, im] = [clicks[0], impressions[0]];
  const variants = new Set<string>([...(cl?.variants ?? []), ...(im?.variants ?? [])]);
  return {
    clicks: Number(cl?.n ?? 0),
    impressions: Number(im?.n ?? 0),
    avgRankClicked: num(cl?.avg),
    avgResponseTimeMs: num(im?.avg),
    variantsUsed: [...variants].sort(),
  };
}

export async function variantActivity(c: Collections, f: Pick<MetricsFilter, "window">): Promise<Map<string, VariantActivity>> {
  const filter = match({ window: f.window });
  const [clicks, impressions] = await Promise.all([
    c.clicks.aggregate([{ $match: filter }, { $group: { _id: "$variant", n: { $sum: 1 }, avg: { $avg: "$rank" } } }]).toArray(),
    c.impressions
      .aggregate([{ $match: filter }, { $group: { _id: "$variant", n: { $sum: 1 }, avg: { $avg: "$response_time_ms" } } }])
      .toArray(),
  ]);
  const out = new Map<string, VariantActivity>();
  const entry = (name: string) => {
    let v = out.get(name);
    if (!v) out.set(name, (v = { clicks: 0, impressions: 0 }));
    return v;
  };
  for (const r of clicks) Object.assign(entry(String(r._id)), { clicks: Number(r.n), avgRankClicked: num(r.avg) });
  for (const r of impressions) Object.assign(entry(String(r._id)), { impressions: Number(r.n), avgResponseTimeMs: num(r.avg) });
  return out;
}

