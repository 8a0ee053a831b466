/**
 * Per-user tables straight from the raw events (read/user-rollups.ts): built by one aggregation
 * per period, or from events already read and kept (a cached edge hour).
 */
import type { Document } from "mongodb";
import { reciprocalRank } from "../../core/first-click.js";
import { coarseLatencyBucket } from "../../core/user-totals.js";
import type { Collections } from "../schema/documents.js";
import { hasFirstClick } from "./first-click-fields.js";
import { timeLimit } from "./metrics-filter.js";
import { userNumbers } from "../schema/user-ids.js";
import { C, F, I, N, R, S, TableBuilder, type Budget, type UserTable } from "./user-tables.js";

/**
 * The raw events of [from, to) (one variant or all) as tables per slice of `sliceMs` from `from`
 * (slice start -> variant -> table). Two aggregations by (slice, variant, user) on the timestamp index.
 */
export async function rawUserTables(
  c: Collections,
  from: number,
  to: number | undefined,
  sliceMs: number,
  variant: string | undefined,
  budget: Budget,
  origin = from,
): Promise<Map<number, Map<string, UserTable>>> {
  const out = new Map<number, Map<string, UserTable>>();
  if (to !== undefined && from >= to) return out;
  const m: Document = { timestamp: to === undefined ? { $gte: new Date(from) } : { $gte: new Date(from), $lt: new Date(to) }, ...(variant === undefined ? {} : { variant }) };
  const slice = { $floor: { $divide: [{ $subtract: ["$timestamp", new Date(origin)] }, sliceMs] } };
  const byTime = { hint: "timestamp_1", allowDiskUse: true, ...timeLimit(budget) };
  const [imps, clks] = await Promise.all([
    c.impressions
      .aggregate<{ _id: { k: number; v: string; u: string }; i: number; s: number; n: number; ranks: number[]; rts: number[] }>(
        [
          { $match: m },
          {
            $group: {
              _id: { k: slice, v: "$variant", u: "$user_id" },
              i: { $sum: 1 },
              s: { $sum: { $cond: [{ $eq: ["$clicked", true] }, 1, 0] } },
              n: { $sum: { $cond: [{ $eq: ["$results_count", 0] }, 1, 0] } },
              ranks: { $push: { $cond: [hasFirstClick, "$fc_r", "$$REMOVE"] } },
              rts: { $push: "$response_time_ms" },
            },
          },
        ],
        byTime,
      )
      .toArray(),
    c.clicks.aggregate<{ _id: { k: number; v: string; u: string }; n: number }>([{ $match: m }, { $group: { _id: { k: slice, v: "$variant", u: "$user_id" }, n: { $sum: 1 } } }], byTime).toArray(),
  ]);
  const numbers = await userNumbers(c).resolve([...imps, ...clks].map((r) => String(r._id.u)), timeLimit(budget).maxTimeMS);
  const { builders, builder } = sliceBuilders();
  for (const r of imps) {
    const u = builder(origin + Number(r._id.k) * sliceMs, String(r._id.v)).user(numbers.get(String(r._id.u))!);
    u.row[I]! += Number(r.i);
    u.row[S]! += Number(r.s);
    u.row[N]! += Number(r.n);
    u.row[F]! += r.ranks.length;
    for (const rank of r.ranks) u.row[R]! += reciprocalRank(Number(rank));
    for (const ms of r.rts) {
      const k = coarseLatencyBucket(Number(ms));
      u.lat.set(k, (u.lat.get(k) ?? 0) + 1);
    }
  }
  for (const r of clks) builder(origin + Number(r._id.k) * sliceMs, String(r._id.v)).user(numbers.get(String(r._id.u))!).row[C]! += Number(r.n);
  for (const [k, slices] of builders) out.set(k, new Map([...slices].map(([v, b]) => [v, b.build()])));
  return out;
}

/**
 * A stretch of raw events in the order the timestamp index gives them (the order rawUserTables'
 * groups see them in), packed in columns (a cached edge hour holds thousands): impressions with
 * the fields a table needs, computed by the engine exactly as rawUserTables' $group computes
 * them, and clicks; variants as indexes into `variants`, users as their numbers.
 */
export interface RawEvents {
  variants: string[];
  imp: { t: Float64Array; v: Uint16Array; u: Uint32Array; s: Uint8Array; n: Uint8Array; f: Uint8Array; r: Float64Array; rt: Float64Array };
  clk: { t: Float64Array; v: Uint16Array; u: Uint32Array };
}

export async function rawEvents(c: Collections, from: number, to: number, variant: string | undefined, budget: Budget): Promise<RawEvents> {
  const m: Document = { timestamp: { $gte: new Date(from), $lt: new Date(to) }, ...(variant === undefined ? {} : { variant }) };
  const byTime = { hint: "timestamp_1", ...timeLimit(budget) };
  const [imp, clk] = await Promise.all([
    c.impressions
      .aggregate<{ t: Date; v: string; u: string; s: number; n: number; r?: number; rt: number }>(
        [
          { $match: m },
          {
            $project: {
              _id: 0,
              t: "$timestamp",
              v: "$variant",
              u: "$user_id",
              s: { $cond: [{ $eq: ["$clicked", true] }, 1, 0] },
              n: { $cond: [{ $eq: ["$results_count", 0] }, 1, 0] },
              r: { $cond: [hasFirstClick, "$fc_r", "$$REMOVE"] },
              rt: "$response_time_ms",
            },
          },
        ],
        byTime,
      )
      .toArray(),
    c.clicks.aggregate<{ t: Date; v: string; u: string }>([{ $match: m }, { $project: { _id: 0, t: "$timestamp", v: "$variant", u: "$user_id" } }], byTime).toArray(),
  ]);
  const numbers = await userNumbers(c).resolve([...imp, ...clk].map((e) => String(e.u)), timeLimit(budget).maxTimeMS);
  const variants: string[] = [];
  const variantIndex = new Map<string, number>();
  const vOf = (v: string) => {
    let k = variantIndex.get(v);
    if (k === undefined) variantIndex.set(v, (k = variants.push(v) - 1));
    return k;
  };
  const out: RawEvents = {
    variants,
    imp: { t: new Float64Array(imp.length), v: new Uint16Array(imp.length), u: new Uint32Array(imp.length), s: new Uint8Array(imp.length), n: new Uint8Array(imp.length), f: new Uint8Array(imp.length), r: new Float64Array(imp.length), rt: new Float64Array(imp.length) },
    clk: { t: new Float64Array(clk.length), v: new Uint16Array(clk.length), u: new Uint32Array(clk.length) },
  };
  imp.forEach((e, i) => {
    const x = out.imp;
    x.t[i] = e.t.getTime();
    x.v[i] = vOf(String(e.v));
    x.u[i] = numbers.get(String(e.u))!;
    x.s[i] = Number(e.s);
    x.n[i] = Number(e.n);
    if (e.r !== undefined && e.r !== null) {
      x.f[i] = 1;
      x.r[i] = Number(e.r);
    }
    x.rt[i] = Number(e.rt);
  });
  clk.forEach((e, i) => {
    out.clk.t[i] = e.t.getTime();
    out.clk.v[i] = vOf(String(e.v));
    out.clk.u[i] = numbers.get(String(e.u))!;
  });
  return out;
}

/** Table builders by slice start and variant, made on first use. */
function sliceBuilders(): { builders: Map<number, Map<string, TableBuilder>>; builder: (k: number, v: string) => TableBuilder } {
  const builders = new Map<number, Map<string, TableBuilder>>();
  const builder = (k: number, v: string) => {
    let slices = builders.get(k);
    if (!slices) builders.set(k, (slices = new Map()));
    let b = slices.get(v);
    if (!b) slices.set(v, (b = new TableBuilder()));
    return b;
  };
  return { builders, builder };
}

/**
 * rawUserTables over [from, to) computed from events already read (a superset, in index order):
 * the same tables, value for value — each user's sums add the same numbers in the same order.
 */
export function tablesFromEvents(events: RawEvents, from: number, to: number, sliceMs: number, origin = from): Map<number, Map<string, UserTable>> {
  const out = new Map<number, Map<string, UserTable>>();
  if (from >= to) return out;
  const { builders, builder } = sliceBuilders();
  const sliceOf = (t: number) => origin + Math.floor((t - origin) / sliceMs) * sliceMs;
  const { imp, clk, variants } = events;
  for (let i = 0; i < imp.t.length; i++) {
    const t = imp.t[i]!;
    if (!(t >= from && t < to)) continue;
    const u = builder(sliceOf(t), variants[imp.v[i]!]!).user(imp.u[i]!);
    u.row[I]! += 1;
    u.row[S]! += imp.s[i]!;
    u.row[N]! += imp.n[i]!;
    if (imp.f[i]) {
      u.row[F]! += 1;
      u.row[R]! += reciprocalRank(imp.r[i]!);
    }
    const k = coarseLatencyBucket(imp.rt[i]!);
    u.lat.set(k, (u.lat.get(k) ?? 0) + 1);
  }
  for (let i = 0; i < clk.t.length; i++) {
    const t = clk.t[i]!;
    if (t >= from && t < to) builder(sliceOf(t), variants[clk.v[i]!]!).user(clk.u[i]!).row[C]! += 1;
  }
  for (const [k, slices] of builders) out.set(k, new Map([...slices].map(([v, b]) => [v, b.build()])));
  return out;
}
