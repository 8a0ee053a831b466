/**
 * A realistic, deterministic synthetic dataset of searches (impressions) and clicks, generated
 * lazily in batches, and a loader that streams it into a ClickAnalytics server through
 * StreamEvents. Shipped as `click-analytics load`; `npm run bench` (bench/) loads its data with it.
 *
 * The shape of the data:
 * - users `user_0` .. `user_{N-1}` with Pareto-distributed activity (a few heavy users, a long
 *   tail), each in one variant by a hash of the id (search_v1 / search_v2, 50/50 by users);
 * - queries from a vocabulary (default 20,000) drawn with a Zipf law (a few head queries, a long
 *   tail), occasionally typed with other case or spacing;
 * - ~3% of searches return no results; ~20% of searches get a click, some of them 2 or more;
 * - clicked ranks roughly geometric (most at 0-2), later clicks further down the page;
 * - log-normal latencies (median ~60 ms; search_v2 a little faster at the median, with a longer
 *   tail); clicks carry the latency of their search;
 * - timestamps over the last `days` days in time order (as live traffic or a replayed log), with
 *   a daily cycle (busiest in the evening, UTC), never in the future; clicks a few seconds after
 *   their search, linked by impression_id;
 * - every event has an event_id, derived from the seed and its position: loading the same
 *   dataset twice is recognised as duplicates;
 * - ~10% of the searches that return results are interleaving experiments between two rankers,
 *   `ranker_a` and `ranker_b` (INTERLEAVED_RANKERS): the page (the first 20 positions at most)
 *   is a team-draft interleaving of the two rankers' lists, built by the typed client's
 *   `teamDraftInterleave` seeded with the search's id, and logged with its `teams`. Clicks land
 *   by position as on any search, except for a small planted preference: a click that would
 *   land on ranker_b's result goes, with probability 0.1, to ranker_a's result next to it (the
 *   other position of the same draft round), so GetInterleavingResult finds ranker_a preferred
 *   (Δ ≈ +0.05). These draws come from a random stream of their own: every other search, and
 *   every count of events and clicks, is what it was without interleaving.
 *
 * Nothing is materialised: `generateEvents` is a generator and holds only the vocabulary and the
 * users' activity weights.
 *
 * Its parts: traffic-random.ts (seeded randomness), traffic-population.ts (users, variants,
 * queries), this module (the events and their stream form), traffic-loader.ts (loading).
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ClickSource, teamDraftInterleave, type EventSchema, type StreamBatch } from "../client/index.js";
import { fnv1a, Rng, WeightedSampler, zipfSampler } from "./traffic-random.js";
import { buildVocabulary, shuffle, surfaceForm, userActivityWeights, userClickPropensity, userIdOf, VARIANTS, variantOf } from "./traffic-population.js";

export const DAY_MS = 24 * 60 * 60 * 1000;
export const DEFAULT_BATCH_SIZE = 1_000;
export const DEFAULT_QUERIES = 20_000;
/** The two rankers of the dataset's interleaved searches (team names in `teams`); ranker_a is preferred. */
export const INTERLEAVED_RANKERS = ["ranker_a", "ranker_b"] as const;

export interface DatasetOptions {
  /** Total number of events (impressions + clicks), exactly. */
  events: number;
  /** Timestamps fall in [now - days, now). */
  days: number;
  users: number;
  seed: number;
  /** Vocabulary size (default 20,000). */
  queries?: number;
  /** Events per batch (default 1,000, the server's limit). */
  batchSize?: number;
  /** End of the window, in ms or as a Date (default: Date.now() when generation starts). */
  now?: number | Date;
  /** Prefix of event and impression ids (default `s<seed>-`). */
  idPrefix?: string;
}

export type ClickSourceName = "SEARCH_RESULTS" | "RECOMMENDATIONS" | "AUTOCOMPLETE" | "RELATED_PRODUCTS" | "SPONSORED";

export interface ImpressionRecord {
  kind: "impression";
  eventId: string;
  impressionId: string;
  userId: string;
  sessionId: string;
  query: string;
  variant: string;
  resultsCount: number;
  responseTimeMs: number;
  timestampMs: number;
  /** Interleaved searches only: the ranker of each shown position (LogImpression's `teams`). */
  teams?: string[];
}

export interface ClickRecord {
  kind: "click";
  eventId: string;
  /** The impression (search) this click came from; always present in this dataset. */
  impressionId: string;
  userId: string;
  sessionId: string;
  productId: string;
  rank: number;
  searchQuery: string;
  variant: string;
  responseTimeMs: number;
  source: ClickSourceName;
  timestampMs: number;
}

export type DatasetEvent = ImpressionRecord | ClickRecord;

export interface VariantStats {
  impressions: number;
  clicks: number;
  clickedSearches: number;
}

/** Running totals of what was generated (filled in as the generator advances). */
export interface DatasetStats {
  events: number;
  impressions: number;
  clicks: number;
  /** Searches with at least one click. */
  clickedSearches: number;
  /** Searches with two or more clicks. */
  multiClickSearches: number;
  noResultsSearches: number;
  /** Searches shown as an interleaving of INTERLEAVED_RANKERS (impressions with `teams`). */
  interleavedSearches: number;
  /** Of those, the ones that showed both rankers (a page of one result shows one): what GetInterleavingResult counts. */
  interleavedPairSearches: number;
  /** Distinct users with at least one event. */
  activeUsers: number;
  variants: Record<string, VariantStats>;
  windowStartMs: number;
  windowEndMs: number;
}

export function createDatasetStats(): DatasetStats {
  return {
    events: 0,
    impressions: 0,
    clicks: 0,
    clickedSearches: 0,
    multiClickSearches: 0,
    noResultsSearches: 0,
    interleavedSearches: 0,
    interleavedPairSearches: 0,
    activeUsers: 0,
    variants: Object.fromEntries(VARIANTS.map((v) => [v, { impressions: 0, clicks: 0, clickedSearches: 0 }])),
    windowStartMs: 0,
    windowEndMs: 0,
  };
}


// ---------------------------------------------------------------------------------------------
// The generator

interface VariantModel {
  latencyMedianMs: number;
  latencySigma: number;
  /** P(at least one click | the search returned results). */
  clickProbability: number;
}

const VARIANT_MODELS: Record<string, VariantModel> = {
  search_v1: { latencyMedianMs: 60, latencySigma: 0.45, clickProbability: 0.2 },
  search_v2: { latencyMedianMs: 56, latencySigma: 0.55, clickProbability: 0.212 },
};
const NO_RESULTS_PROBABILITY = 0.03;
/** After a click, the chance of another one on the same search. */
const ANOTHER_CLICK_PROBABILITY = 0.28;
/** Geometric parameter of the first clicked rank: P(rank 0) = 0.5, P(rank <= 2) = 0.875. */
const FIRST_RANK_P = 0.5;
const SESSION_MS = 30 * 60 * 1000;
/** Events per search on average: the search itself plus ~20% clicked, some more than once. */
const EVENTS_PER_SEARCH = 1.27;

/** Share of the searches with results shown as an interleaving of INTERLEAVED_RANKERS. */
const INTERLEAVED_SHARE = 0.1;
/** Positions an interleaved page shows at most (a longer result list shows its first page). */
const INTERLEAVED_PAGE = 20;
/** The planted preference: P(a click meant for ranker_b's result goes to ranker_a's beside it). */
const INTERLEAVED_PREFERENCE = 0.1;

/** The product the ordinary ranking shows at `rank` for a query (the same for every user). */
function productAt(query: string, rank: number): string {
  return `prod_${(fnv1a(query.toLowerCase().trim()) + rank * 7_919) % 100_000}`;
}

/**
 * An interleaved page for a search: ranker_a ranks the query's products as the ordinary ranking
 * does, ranker_b reorders the same page (a shuffle seeded by the query, so the same for every
 * user); team-draft interleaving (the typed client's helper, seeded by the search's id) mixes them.
 */
function interleavedPage(query: string, length: number, searchId: string): { results: string[]; teams: string[] } {
  const rankingA = Array.from({ length }, (_, rank) => productAt(query, rank));
  const rankingB = shuffle([...rankingA], new Rng(fnv1a(query.toLowerCase().trim()), 6));
  return teamDraftInterleave(rankingA, rankingB, { seed: searchId, teamA: INTERLEAVED_RANKERS[0], teamB: INTERLEAVED_RANKERS[1], length });
}

/** Searches stop a minute before `now`, so that their clicks also fall before it. */
const END_MARGIN_MS = 60_000;

/** Relative traffic by UTC hour of day: lowest around 04:00, highest around 19:00. */
function diurnalWeight(timestampMs: number): number {
  const hour = (timestampMs % DAY_MS) / 3_600_000;
  return 0.3 + 0.7 * ((1 + Math.cos((2 * Math.PI * (hour - 19)) / 24)) / 2);
}

const SOURCES: readonly [ClickSourceName, number][] = [
  ["SEARCH_RESULTS", 0.92],
  ["SPONSORED", 0.05],
  ["AUTOCOMPLETE", 0.03],
];

function clickSource(rng: Rng): ClickSourceName {
  let x = rng.next();
  for (const [name, p] of SOURCES) if ((x -= p) < 0) return name;
  return "SEARCH_RESULTS";
}

export function validateDatasetOptions(o: DatasetOptions): void {
  const positiveInt = (name: string, v: number, max = Number.MAX_SAFE_INTEGER) => {
    if (!Number.isInteger(v) || v < 1 || v > max) throw new RangeError(`${name} must be an integer between 1 and ${max}, got ${v}`);
  };
  if (!Number.isInteger(o.events) || o.events < 0) throw new RangeError(`events must be a non-negative integer, got ${o.events}`);
  positiveInt("days", o.days, 365);
  positiveInt("users", o.users);
  positiveInt("queries", o.queries ?? DEFAULT_QUERIES);
  positiveInt("batchSize", o.batchSize ?? DEFAULT_BATCH_SIZE, 1_000);
  if (!Number.isFinite(o.seed)) throw new RangeError(`seed must be a number, got ${o.seed}`);
}

/**
 * Exactly `options.events` events, an impression first and then its clicks (the last search may
 * lose clicks to the count). `stats` is updated as events are produced.
 */
export function* generateEvents(options: DatasetOptions, stats: DatasetStats = createDatasetStats()): Generator<DatasetEvent, DatasetStats, undefined> {
  validateDatasetOptions(options);
  const endMs = options.now === undefined ? Date.now() : typeof options.now === "number" ? options.now : options.now.getTime();
  const startMs = endMs - options.days * DAY_MS;
  const prefix = options.idPrefix ?? `s${options.seed}-`;
  stats.windowStartMs = startMs;
  stats.windowEndMs = endMs;

  const vocabulary = buildVocabulary(options.queries ?? DEFAULT_QUERIES, options.seed);
  const querySampler = zipfSampler(vocabulary.length, 0.9);
  const userSampler = new WeightedSampler(userActivityWeights(options.users, options.seed));
  const userSeen = new Uint8Array(options.users);
  const propensity = userClickPropensity(options.users, options.seed);
  const rng = new Rng(options.seed, 3);
  // Interleaving draws come from their own stream, so that `rng` (and so every other search) is
  // unchanged by them.
  const interleaving = new Rng(options.seed, 5);
  const span = Math.max(1, endMs - END_MARGIN_MS - startMs);

  // Searches arrive in time order, as live traffic (and a replayed log) does: a Poisson process
  // whose rate follows the daily cycle. Each step is an exponential gap, shortened where the
  // cycle is busy; the mean gap spreads the expected number of searches over the window.
  const expectedSearches = Math.max(1, options.events / EVENTS_PER_SEARCH);
  const meanWeight = Array.from({ length: 288 }, (_, i) => diurnalWeight(i * 300_000)).reduce((a, b) => a + b, 0) / 288;
  const meanGapMs = (span / expectedSearches) * meanWeight;
  let clockMs = startMs;

  let produced = 0;
  let search = 0;
  const emit = (variant: string, userIndex: number, kind: "impression" | "click") => {
    produced++;
    stats.events++;
    const v = (stats.variants[variant] ??= { impressions: 0, clicks: 0, clickedSearches: 0 });
    if (kind === "impression") (stats.impressions++, v.impressions++);
    else (stats.clicks++, v.clicks++);
    if (userSeen[userIndex] === 0) (userSeen[userIndex] = 1, stats.activeUsers++);
  };

  while (produced < options.events) {
    const s = search++;
    const userIndex = userSampler.sample(rng);
    const userId = userIdOf(userIndex);
    const variant = variantOf(userId);
    const model = VARIANT_MODELS[variant]!;
    clockMs += (-Math.log(1 - rng.next()) * meanGapMs) / Math.max(0.05, diurnalWeight(clockMs));
    const timestampMs = Math.min(startMs + span - 1, Math.floor(clockMs));
    const query = surfaceForm(vocabulary[querySampler.sample(rng)]!, rng);
    const noResults = rng.next() < NO_RESULTS_PROBABILITY;
    const resultsCount = noResults ? 0 : Math.min(10_000, Math.max(1, Math.round(rng.logNormal(48, 1))));
    const latency = rng.logNormal(model.latencyMedianMs, model.latencySigma) * (noResults ? 0.7 : 1);
    const responseTimeMs = Math.round(Math.min(3_600_000, latency) * 100) / 100;
    const sessionId = `${userId}.${Math.floor(timestampMs / SESSION_MS)}`;
    const impressionId = `${prefix}q${s}`;
    const page = interleaving.next() < INTERLEAVED_SHARE && !noResults ? interleavedPage(query, Math.min(resultsCount, INTERLEAVED_PAGE), impressionId) : undefined;

    emit(variant, userIndex, "impression");
    if (noResults) stats.noResultsSearches++;
    if (page) stats.interleavedSearches++;
    if (page && INTERLEAVED_RANKERS.every((r) => page.teams.includes(r))) stats.interleavedPairSearches++;
    const impression: ImpressionRecord = { kind: "impression", eventId: `${prefix}e${produced - 1}`, impressionId, userId, sessionId, query, variant, resultsCount, responseTimeMs, timestampMs };
    if (page) impression.teams = page.teams;
    yield impression;

    if (noResults || rng.next() >= Math.min(0.9, model.clickProbability * propensity[userIndex]!)) continue;
    let rank = rng.geometric(FIRST_RANK_P) % resultsCount;
    let clickMs = timestampMs;
    let clicks = 0;
    for (;;) {
      if (produced >= options.events) break;
      clickMs = Math.min(endMs - 1, clickMs + Math.round(rng.logNormal(5_000, 0.9)));
      if (page) {
        // Each draft round fills positions 2k and 2k + 1, one from each ranker.
        const partner = rank ^ 1;
        if (page.teams[rank] === INTERLEAVED_RANKERS[1] && page.teams[partner] === INTERLEAVED_RANKERS[0] && interleaving.next() < INTERLEAVED_PREFERENCE) rank = partner;
      }
      const productId = page?.results[rank] ?? productAt(query, rank);
      emit(variant, userIndex, "click");
      clicks++;
      yield {
        kind: "click",
        eventId: `${prefix}e${produced - 1}`,
        impressionId,
        userId,
        sessionId,
        productId,
        rank,
        searchQuery: query,
        variant,
        responseTimeMs,
        source: clickSource(rng),
        timestampMs: clickMs,
      };
      if (rng.next() >= ANOTHER_CLICK_PROBABILITY) break;
      rank += 1 + rng.geometric(0.5);
      if (rank >= resultsCount) break;
    }
    if (clicks > 0) {
      stats.clickedSearches++;
      stats.variants[variant]!.clickedSearches++;
    }
    if (clicks > 1) stats.multiClickSearches++;
  }
  return stats;
}

/** Groups any iterable into arrays of `size`. */
export function* chunks<T>(items: Iterable<T>, size: number): Generator<T[]> {
  let chunk: T[] = [];
  for (const item of items) {
    chunk.push(item);
    if (chunk.length === size) {
      yield chunk;
      chunk = [];
    }
  }
  if (chunk.length > 0) yield chunk;
}

export type EventInit = MessageInitShape<typeof EventSchema>;

const SOURCE_ENUM: Record<ClickSourceName, ClickSource> = {
  SEARCH_RESULTS: ClickSource.SEARCH_RESULTS,
  RECOMMENDATIONS: ClickSource.RECOMMENDATIONS,
  AUTOCOMPLETE: ClickSource.AUTOCOMPLETE,
  RELATED_PRODUCTS: ClickSource.RELATED_PRODUCTS,
  SPONSORED: ClickSource.SPONSORED,
};

/** The event as a LogEvents / StreamEvents entry. */
export function toStreamEvent(e: DatasetEvent): EventInit {
  const timestamp = timestampFromMs(e.timestampMs);
  if (e.kind === "impression") {
    return {
      kind: {
        case: "impression",
        value: {
          eventId: e.eventId,
          impressionId: e.impressionId,
          userId: e.userId,
          sessionId: e.sessionId,
          query: e.query,
          variant: e.variant,
          resultsCount: e.resultsCount,
          responseTimeMs: e.responseTimeMs,
          timestamp,
          ...(e.teams === undefined ? {} : { teams: e.teams }),
        },
      },
    };
  }
  return {
    kind: {
      case: "click",
      value: {
        eventId: e.eventId,
        impressionId: e.impressionId,
        userId: e.userId,
        sessionId: e.sessionId,
        productId: e.productId,
        rank: e.rank,
        searchQuery: e.searchQuery,
        variant: e.variant,
        responseTimeMs: e.responseTimeMs,
        source: SOURCE_ENUM[e.source],
        timestamp,
      },
    },
  };
}

/** The dataset as StreamEvents messages of `batchSize` events, produced as they are consumed. */
export async function* generateBatches(options: DatasetOptions, stats: DatasetStats = createDatasetStats()): AsyncGenerator<StreamBatch, void, undefined> {
  for (const batch of chunks(generateEvents(options, stats), options.batchSize ?? DEFAULT_BATCH_SIZE)) {
    yield { events: batch.map(toStreamEvent) };
  }
}
