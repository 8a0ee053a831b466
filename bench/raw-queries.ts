/**
 * Raw aggregations: the obvious pipelines over the events, with the little JavaScript each needs —
 * what the benchmark (bench.ts) times each metrics shape against, and what the user-read floor
 * (user-read-floor.ts) serves behind a bare gRPC server.
 */
import type { Db, Document } from "mongodb";
import type { InterleavingResult } from "../src/core/interleaving.js";
import { DAY_MS, INTERLEAVED_RANKERS } from "../src/cli/traffic-generator.js";
import { TOP_QUERIES_LIMIT, type MetricRpc, type ShapeParams } from "./bench-client.js";

export const CLICKS = "click_events";
export const IMPRESSIONS = "impressions";

export function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  const h = (sorted.length - 1) * p;
  const lo = Math.floor(h);
  return sorted[lo]! + (sorted[Math.ceil(h)]! - sorted[lo]!) * (h - lo);
}

export function windowMatch(p: ShapeParams): Document {
  return {
    timestamp: { $gte: new Date(Date.now() - p.days * DAY_MS) },
    ...(p.userId === undefined ? {} : { user_id: p.userId }),
    ...(p.variant === undefined ? {} : { variant: p.variant }),
  };
}

const isClicked = { $cond: [{ $eq: ["$clicked", true] }, 1, 0] };
const isNoResults = { $cond: [{ $eq: ["$results_count", 0] }, 1, 0] };

export type RawQuery = (db: Db, p: ShapeParams) => Promise<unknown>;

/** GetInterleavingResult's counts, as the raw aggregation finds them; `delta` without its interval. */
export type RawInterleaving = Omit<InterleavingResult, "delta" | "pValue" | "significant" | "rankerA" | "rankerB" | "test"> & {
  /** (wins_a + ties/2) / (wins_a + wins_b + ties) - 1/2; undefined without a decided search. */
  delta: number | undefined;
};

/**
 * ranker_a against ranker_b over the raw events, by the README's rules: the window's searches
 * whose shown positions (0 .. min(len(teams), results_count) - 1) include both rankers, each with
 * its clicks ($lookup by impression_id, wherever the click fell in time); each distinct clicked
 * shown position credits its team once, clicks elsewhere are uncredited; a search's verdict,
 * then per user.
 */
export async function rawInterleaving(db: Db, p: ShapeParams): Promise<RawInterleaving> {
  const [a, b] = INTERLEAVED_RANKERS;
  const credits = (team: string) => ({ $size: { $filter: { input: "$credited", cond: { $eq: ["$$this", team] } } } });
  const shown = { $min: [{ $size: "$teams" }, "$results_count"] };
  const rows = await db
    .collection(IMPRESSIONS)
    .aggregate(
      [
        { $match: { ...windowMatch(p), teams: { $all: [a, b] } } },
        { $project: { _id: 0, user_id: 1, impression_id: 1, teams: 1, shownTeams: { $slice: ["$teams", { $max: [1, shown] }] }, shown } },
        { $match: { shownTeams: { $all: [a, b] } } },
        { $lookup: { from: CLICKS, localField: "impression_id", foreignField: "impression_id", pipeline: [{ $project: { _id: 0, rank: 1 } }], as: "clicks" } },
        { $project: { user_id: 1, teams: 1, ranks: { $setUnion: [{ $filter: { input: "$clicks.rank", cond: { $lt: ["$$this", "$shown"] } } }] }, uncredited: { $size: { $filter: { input: "$clicks.rank", cond: { $gte: ["$$this", "$shown"] } } } } } },
        { $project: { user_id: 1, uncredited: 1, credited: { $map: { input: "$ranks", in: { $arrayElemAt: ["$teams", "$$this"] } } } } },
        { $project: { user_id: 1, uncredited: 1, a: credits(a), b: credits(b) } },
        {
          $group: {
            _id: "$user_id",
            impressions: { $sum: 1 },
            uncredited: { $sum: "$uncredited" },
            winsA: { $sum: { $cond: [{ $gt: ["$a", "$b"] }, 1, 0] } },
            winsB: { $sum: { $cond: [{ $gt: ["$b", "$a"] }, 1, 0] } },
            ties: { $sum: { $cond: [{ $and: [{ $eq: ["$a", "$b"] }, { $gt: ["$a", 0] }] }, 1, 0] } },
          },
        },
      ],
      { allowDiskUse: true },
    )
    .toArray();
  const r: RawInterleaving = { impressions: 0, winsA: 0, winsB: 0, ties: 0, uncreditedClicks: 0, users: 0, usersPreferringA: 0, usersPreferringB: 0, usersTied: 0, delta: undefined };
  for (const u of rows) {
    r.impressions += u.impressions;
    r.uncreditedClicks += u.uncredited;
    r.winsA += u.winsA;
    r.winsB += u.winsB;
    r.ties += u.ties;
    if (u.winsA + u.winsB + u.ties === 0) continue;
    r.users++;
    if (u.winsA > u.winsB) r.usersPreferringA++;
    else if (u.winsB > u.winsA) r.usersPreferringB++;
    else r.usersTied++;
  }
  const decided = r.winsA + r.winsB + r.ties;
  if (decided > 0) r.delta = (r.winsA + r.ties / 2) / decided - 0.5;
  return r;
}

/** What the benchmark times each metrics shape against: the raw aggregation a REST service would run. */
export const RAW_QUERIES: Record<MetricRpc, RawQuery> = {
  async GetCtr(db, p) {
    const m = windowMatch(p);
    const [imps, clicks] = await Promise.all([
      db
        .collection(IMPRESSIONS)
        .aggregate([{ $match: m }, { $group: { _id: "$variant", n: { $sum: 1 }, clicked: { $sum: isClicked }, noResults: { $sum: isNoResults }, users: { $addToSet: "$user_id" } } }], { allowDiskUse: true })
        .toArray(),
      db.collection(CLICKS).aggregate([{ $match: m }, { $group: { _id: "$variant", n: { $sum: 1 }, users: { $addToSet: "$user_id" } } }], { allowDiskUse: true }).toArray(),
    ]);
    const users = new Set<string>();
    let i = 0;
    let c = 0;
    for (const d of imps) (i += d.n, (d.users as string[]).forEach((u) => users.add(u)));
    for (const d of clicks) (c += d.n, (d.users as string[]).forEach((u) => users.add(u)));
    return { ctr: i > 0 ? c / i : undefined, users: users.size };
  },
  async GetRankMetrics(db, p) {
    const rows = await db.collection(CLICKS).aggregate([{ $match: windowMatch(p) }, { $group: { _id: "$rank", n: { $sum: 1 } } }, { $sort: { _id: 1 } }]).toArray();
    const total = rows.reduce((a, r) => a + r.n, 0);
    let seen = 0;
    const median = rows.find((r) => (seen += r.n) >= total / 2)?._id;
    return { total, avg: rows.reduce((a, r) => a + r._id * r.n, 0) / total, median, min: rows[0]?._id, max: rows.at(-1)?._id };
  },
  async GetResponseTimeMetrics(db, p) {
    const m = windowMatch(p);
    const [[stats], values] = await Promise.all([
      db.collection(IMPRESSIONS).aggregate([{ $match: m }, { $group: { _id: null, n: { $sum: 1 }, avg: { $avg: "$response_time_ms" }, min: { $min: "$response_time_ms" }, max: { $max: "$response_time_ms" } } }]).toArray(),
      db
        .collection(IMPRESSIONS)
        .aggregate([{ $match: m }, { $project: { _id: 0, v: "$response_time_ms" } }, { $sort: { v: 1 } }], { allowDiskUse: true })
        .toArray(),
    ]);
    const sorted = values.map((d) => Number(d.v));
    return { ...stats, p50: percentile(sorted, 0.5), p95: percentile(sorted, 0.95), p99: percentile(sorted, 0.99) };
  },
  async GetUserSummary(db, p) {
    const m = windowMatch(p);
    const [[clicks], [imps]] = await Promise.all([
      db.collection(CLICKS).aggregate([{ $match: m }, { $group: { _id: null, n: { $sum: 1 }, avgRank: { $avg: "$rank" }, variants: { $addToSet: "$variant" } } }]).toArray(),
      db.collection(IMPRESSIONS).aggregate([{ $match: m }, { $group: { _id: null, n: { $sum: 1 }, avgRt: { $avg: "$response_time_ms" }, variants: { $addToSet: "$variant" } } }]).toArray(),
    ]);
    return { clicks: clicks?.n ?? 0, impressions: imps?.n ?? 0, variants: [...new Set([...(clicks?.variants ?? []), ...(imps?.variants ?? [])])].sort() };
  },
  async GetVariantComparison(db, p) {
    const m = windowMatch(p);
    const [imps, clicks, latencies] = await Promise.all([
      db
        .collection(IMPRESSIONS)
        .aggregate(
          [{ $match: m }, { $group: { _id: "$variant", n: { $sum: 1 }, clicked: { $sum: isClicked }, noResults: { $sum: isNoResults }, avgRt: { $avg: "$response_time_ms" }, users: { $addToSet: "$user_id" } } }],
          { allowDiskUse: true },
        )
        .toArray(),
      db.collection(CLICKS).aggregate([{ $match: m }, { $group: { _id: "$variant", n: { $sum: 1 }, avgRank: { $avg: "$rank" } } }]).toArray(),
      db
        .collection(IMPRESSIONS)
        .aggregate([{ $match: m }, { $project: { _id: 0, k: "$variant", v: "$response_time_ms" } }, { $sort: { k: 1, v: 1 } }], { allowDiskUse: true })
        .toArray(),
    ]);
    const byVariant = new Map<string, number[]>();
    for (const d of latencies) {
      const list = byVariant.get(d.k) ?? [];
      list.push(Number(d.v));
      byVariant.set(d.k, list);
    }
    return imps.map((d) => ({ variant: d._id, ctr: (clicks.find((c) => c._id === d._id)?.n ?? 0) / d.n, searchCtr: d.clicked / d.n, users: d.users.length, p95: percentile(byVariant.get(d._id) ?? [], 0.95) }));
  },
  async GetTopQueries(db, p) {
    const m = windowMatch(p);
    const top = await db
      .collection(IMPRESSIONS)
      .aggregate([{ $match: m }, { $group: { _id: "$query_normalized", searches: { $sum: 1 }, clicked: { $sum: isClicked }, noResults: { $sum: isNoResults } } }, { $sort: { searches: -1, _id: 1 } }, { $limit: TOP_QUERIES_LIMIT }], {
        allowDiskUse: true,
      })
      .toArray();
    const clicks = await db
      .collection(CLICKS)
      .aggregate([{ $match: { ...m, query_normalized: { $in: top.map((t) => t._id) } } }, { $group: { _id: "$query_normalized", n: { $sum: 1 }, rankSum: { $sum: "$rank" } } }])
      .toArray();
    return top.map((t) => ({ ...t, clicks: clicks.find((c) => c._id === t._id)?.n ?? 0 }));
  },
  async GetTimeSeries(db, p) {
    const m = windowMatch(p);
    const bucket = { $dateTrunc: { date: "$timestamp", unit: p.granularity === "hour" ? "hour" : "day", timezone: "UTC" } };
    const [imps, clicks] = await Promise.all([
      db
        .collection(IMPRESSIONS)
        .aggregate([{ $match: m }, { $group: { _id: bucket, n: { $sum: 1 }, clicked: { $sum: isClicked }, values: { $push: "$response_time_ms" } } }, { $sort: { _id: 1 } }], { allowDiskUse: true })
        .toArray(),
      db.collection(CLICKS).aggregate([{ $match: m }, { $group: { _id: bucket, n: { $sum: 1 }, rankSum: { $sum: "$rank" } } }]).toArray(),
    ]);
    return imps.map((d) => ({ start: d._id, impressions: d.n, clicks: clicks.find((c) => +c._id === +d._id)?.n ?? 0, p95: percentile((d.values as number[]).map(Number).sort((a, b) => a - b), 0.95) }));
  },
  GetInterleavingResult: rawInterleaving,
};
