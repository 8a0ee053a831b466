/**
 * Window planning: how a window divides into raw events, hourly rollups and daily rollups, parts
 * that never overlap. Every rollup reader (read/rollup-reader.ts, interleaving and user rollups)
 * plans its windows here.
 */
import { DAY_MS, HOUR_MS } from "../schema/rollup-documents.js";

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
