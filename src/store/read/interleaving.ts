/**
 * The interleaved searches of a window with the ranks of their linked clicks, for
 * GetInterleavingResult. Read from the events: impressions carrying `teams` (found through their own
 * partial timestamp index, see indexes.ts), then their clicks through the {impression_id} index, a chunk of ids at a time.
 */
import { MultileaveTally, type InterleavedImpression, type PairTally } from "../../core/interleaving.js";
import type { Filter } from "mongodb";
import type { Collections, ImpressionDocument } from "../schema/documents.js";
import { keyIn } from "../schema/indexes.js";
import { match, timeLimit, type MetricsFilter } from "./metrics-filter.js";

const CHUNK = 5_000;

/**
 * Hands every interleaved search of the window, with its clicked ranks, to `each`, a chunk at a
 * time: memory stays at one chunk however many the window holds.
 */
export async function forEachInterleaved(c: Collections, f: MetricsFilter, each: (impression: InterleavedImpression, timestamp: Date) => void): Promise<void> {
  const searches = c.impressions.find({ ...match(f), teams: { $exists: true } } as Filter<ImpressionDocument>, {
    projection: { _id: 0, impression_id: 1, user_id: 1, teams: 1, results_count: 1, timestamp: 1 },
    hint: "timestamp_interleaved",
    batchSize: CHUNK,
    ...timeLimit(f),
  });
  let chunk: Pick<ImpressionDocument, "impression_id" | "user_id" | "teams" | "results_count" | "timestamp">[] = [];
  const flush = async () => {
    const ranks = new Map<string, number[]>();
    // Clicks count wherever they fall in time: a click on a search in the window belongs to it.
    const clicks = await c.clicks.find({ impression_id: keyIn(chunk.map((s) => s.impression_id)) }, { projection: { _id: 0, impression_id: 1, rank: 1 }, ...timeLimit(f) }).toArray();
    for (const click of clicks) {
      const list = ranks.get(click.impression_id!) ?? [];
      list.push(Number(click.rank));
      ranks.set(click.impression_id!, list);
    }
    for (const s of chunk) each({ userId: s.user_id, teams: s.teams ?? [], clickedRanks: ranks.get(s.impression_id) ?? [], resultsCount: Number(s.results_count) }, s.timestamp);
    chunk = [];
  };
  for await (const s of searches) {
    chunk.push(s);
    if (chunk.length >= CHUNK) await flush();
  }
  if (chunk.length > 0) await flush();
}

/** Every ranker pair's tally over the window's interleaved searches, users keyed by id (pairs keyed by pairKey). */
export async function rawInterleavingPairs(c: Collections, f: MetricsFilter): Promise<Map<string, PairTally<unknown>>> {
  const tally = new MultileaveTally<unknown>();
  await forEachInterleaved(c, f, (imp) => tally.add(imp));
  return tally.pairs;
}
