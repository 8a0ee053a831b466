/**
 * Team-draft interleaving (Radlinski, Kurup, Joachims, CIKM 2008), for callers who compare two
 * rankers with GetInterleavingResult: the rankers take turns like team captains picking players —
 * the team with fewer picks so far picks next, a coin toss deciding when they have as many — and
 * each pick is the team's highest-ranked result not already shown. The result list is what the
 * user sees; `teams` goes with it into LogImpression, so that each click is credited to the
 * ranker that contributed the clicked position.
 *
 * Deterministic from `seed` (e.g. the search's id): the same search always gets the same list,
 * so a retried request shows what the first one did.
 */

export interface InterleaveOptions {
  /** Any string; the coin tosses follow from it. */
  seed: string;
  /** Team names logged for each ranker (default "a" and "b"); [A-Za-z0-9_.-]{1,64}. */
  teamA?: string;
  teamB?: string;
  /** At most this many results (default: until both lists are used up). */
  length?: number;
}

export interface Interleaved<T> {
  /** What to show, in order. */
  results: T[];
  /** The team of each position: pass as `teams` to LogImpression. */
  teams: string[];
}

/** What the server accepts in LogImpression's `teams` (as a variant name): checked here, so a bad name fails where it is chosen. */
const TEAM_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** 32-bit FNV-1a of the seed, then mulberry32: a small, seeded, portable coin. */
function coin(seed: string): () => boolean {
  let state = 0x811c9dc5;
  for (let i = 0; i < seed.length; i++) state = Math.imul(state ^ seed.charCodeAt(i), 0x01000193);
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) < 0x80000000;
  };
}

/**
 * Interleaves two rankings of the same kind of result. Results are compared with `key`
 * (default: the value itself), so a result both rankers return is shown once, credited to the
 * team that picked it first.
 */
export function teamDraftInterleave<T>(rankingA: readonly T[], rankingB: readonly T[], options: InterleaveOptions, key: (result: T) => unknown = (r) => r): Interleaved<T> {
  const teamA = options.teamA ?? "a";
  const teamB = options.teamB ?? "b";
  for (const [option, name] of [["teamA", teamA], ["teamB", teamB]] as const) {
    if (typeof name !== "string" || !TEAM_NAME.test(name)) throw new RangeError(`${option} must match [A-Za-z0-9_.-]{1,64} (as LogImpression's teams), got ${JSON.stringify(name)}`);
  }
  if (teamA === teamB) throw new RangeError(`teamA and teamB must differ, got "${teamA}" twice`);
  const limit = options.length ?? Infinity;
  const toss = coin(options.seed);
  const shown = new Set<unknown>();
  const results: T[] = [];
  const teams: string[] = [];
  const next = [0, 0];
  const picks = [0, 0];
  const lists = [rankingA, rankingB];
  const names = [teamA, teamB];
  /** The team's best result not shown yet (skipping what the other team already picked). */
  const candidate = (t: number): T | undefined => {
    const list = lists[t]!;
    while (next[t]! < list.length && shown.has(key(list[next[t]!]!))) next[t]!++;
    return next[t]! < list.length ? list[next[t]!] : undefined;
  };
  while (results.length < limit) {
    const a = candidate(0);
    const b = candidate(1);
    if (a === undefined && b === undefined) break;
    // Fewer picks pick first; a toss breaks the tie; a team with nothing left passes.
    let t = picks[0]! < picks[1]! ? 0 : picks[1]! < picks[0]! ? 1 : toss() ? 0 : 1;
    if ((t === 0 ? a : b) === undefined) t = 1 - t;
    const pick = (t === 0 ? a : b)!;
    shown.add(key(pick));
    results.push(pick);
    teams.push(names[t]!);
    picks[t]!++;
    next[t]!++;
  }
  return { results, teams };
}
