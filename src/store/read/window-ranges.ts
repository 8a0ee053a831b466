/**
 * Window planning: how a window divides into raw events, hourly rollups and daily rollups, parts
 * that never overlap. Every rollup reader (read/rollup-reader.ts, interleaving and user rollups)
 * plans its windows here.
 */
import { DAY_MS, floorTo, HOUR_MS } from "../schema/rollup-documents.js";

export type Range = readonly [from: number, to: number];

/**
 * How a window [start, end) divides into raw events (its partial first and last hours), hourly
 * rollups (up to the first and from the last whole UTC day) and daily rollups. Without an end
 * the window is open (late and slightly-future events count) and has no raw tail.
 */
export function windowRanges(start: number, end: number | undefined): { raw: Range[]; hours: Range[]; days: (readonly [number, number | undefined])[] } {
  const hourStart = Math.ceil(start / HOUR_MS) * HOUR_MS;
  const dayStart = Math.ceil(hourStart / DAY_MS) * DAY_MS;
  const nonEmpty = (ranges: Range[]) => ranges.filter(([from, to]) => from < to);
  if (end === undefined) return { raw: nonEmpty([[start, hourStart]]), hours: nonEmpty([[hourStart, dayStart]]), days: [[dayStart, undefined]] };
  const hourEnd = Math.floor(end / HOUR_MS) * HOUR_MS;
  if (hourEnd <= hourStart) return { raw: nonEmpty([[start, end]]), hours: [], days: [] };
  const dayEnd = Math.floor(hourEnd / DAY_MS) * DAY_MS;
  const raw = nonEmpty([[start, hourStart], [hourEnd, end]]);
  if (dayEnd <= dayStart) return { raw, hours: [[hourStart, hourEnd]], days: [] };
  return { raw, hours: nonEmpty([[hourStart, dayStart], [dayEnd, hourEnd]]), days: [[dayStart, dayEnd]] };
}

/**
 * A window's edge hours are cached by the readers once they ended over this long ago: late events
 * are rare by then, and a late one moves the hour's versions, which every cache is checked against.
 */
export const EDGE_SETTLED_MS = HOUR_MS;

/** The UTC hours that the ranges (a window's raw edges) touch, ascending. */
export function hoursOf(ranges: readonly Range[]): number[] {
  const out: number[] = [];
  for (const [from, to] of ranges) for (let hour = floorTo(from, HOUR_MS); hour < to; hour += HOUR_MS) if (out[out.length - 1] !== hour) out.push(hour);
  return out;
}

/** Of the hours the ranges touch, those settled by `now` (see EDGE_SETTLED_MS). */
export function settledHours(ranges: readonly Range[], now: number): Set<number> {
  return new Set(hoursOf(ranges).filter((hour) => hour + HOUR_MS + EDGE_SETTLED_MS <= now));
}

/** The filter on `t` for [from, to), or from `from` on when the window is open. */
export const timeRange = (from: number, to: number | undefined) => (to === undefined ? { $gte: new Date(from) } : { $gte: new Date(from), $lt: new Date(to) });
