/**
 * The interleaved searches of a window with the ranks of their linked clicks, for
 * GetInterleavingResult. Read from the events: impressions carrying `teams` (found through their own
 * partial timestamp index, see indexes.ts), then their clicks through the {impression_id} index, a chunk of ids at a time.
 */
import type { InterleavedImpression } from "../core/interleaving.js";
import type { Filter } from "mongodb";
import type { Collections, ImpressionDocument } from "./documents.js";
import { keyIn } from "./indexes.js";
import { match, timeLimit, type MetricsFilter } from "./metrics-queries.js";

const CHUNK = 5_000;

export async function interleavedImpressions(c: Collections, f: MetricsFilter): Promise<InterleavedImpression[]> {
  const searches = await c.impressions
    .find({ ...match(f), teams: { $exists: true } } as Filter<ImpressionDocument>, { projection: { _id: 0, impression_id: 1, user_id: 1, teams: 1 }, hint: "timestamp_interleaved", ...timeLimit(f) })
    .toArray();
  const ranks = new Map<string, number[]>();
  for (let i = 0; i < searches.length; i += CHUNK) {
    const ids = searches.slice(i, i + CHUNK).map((s) => s.impression_id);
    // Clicks count wherever they fall in time: a click on a search in the window belongs to it.
    const clicks = await c.clicks.find({ impression_id: keyIn(ids) }, { projection: { _id: 0, impression_id: 1, rank: 1 }, ...timeLimit(f) }).toArray();
    for (const click of clicks) {
      const list = ranks.get(click.impression_id!) ?? [];
      list.push(Number(click.rank));
      ranks.set(click.impression_id!, list);
    }
  }
  return searches.map((s) => ({ userId: s.user_id, teams: s.teams ?? [], clickedRanks: ranks.get(s.impression_id) ?? [] }));
}
