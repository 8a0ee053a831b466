/**
 * Interleaving: comparing two rankers on the same searches. Each result list mixes both rankers'
 * results (team-draft interleaving, Radlinski, Kurup, Joachims, CIKM 2008), every position
 * labelled with the ranker ("team") that contributed it; a click on position r is credited to
 * teams[r]. Per impression the ranker credited with more clicks wins (equal and > 0: a tie), and
 * the preference is (Chapelle, Joachims, Radlinski, Yue, TOIS 2012)
 *   delta = (wins_a + ties / 2) / (wins_a + wins_b + ties) - 1/2.
 * Because both rankers face the same user and query at once, interleaving needs far fewer users
 * than an A/B test of the same change (test/core/interleaving.test.ts measures how many fewer).
 *
 * The interval and p-value take users as the unit, as the A/B comparison does: delta + 1/2 is a
 * ratio of per-user sums (wins_a + ties/2 over impressions with a preference), whose variance the
 * delta method gives over users (delta-method.ts), so a prolific user weighs as much as their
 * searches but cannot make the test overconfident.
 */
import { ratioEstimate } from "./delta-method.js";
import { normalCdf, zCritical, type Estimate } from "./statistics.js";

/** One interleaved search: its user, the team of each shown position, and the ranks clicked. */
export interface InterleavedImpression {
  userId: string;
  teams: readonly string[];
  clickedRanks: readonly number[];
}

export type Outcome = "a" | "b" | "tie" | "none";

/** Which ranker an impression's clicks favour. */
export function impressionOutcome(teams: readonly string[], clickedRanks: readonly number[], a: string, b: string): Outcome {
  let creditA = 0;
  let creditB = 0;
  for (const rank of clickedRanks) {
    const team = teams[rank];
    if (team === a) creditA++;
    else if (team === b) creditB++;
  }
  if (creditA === 0 && creditB === 0) return "none";
  return creditA > creditB ? "a" : creditB > creditA ? "b" : "tie";
}

export interface InterleavingResult {
  impressions: number;
  winsA: number;
  winsB: number;
  ties: number;
  users: number;
  usersPreferringA: number;
  usersPreferringB: number;
  usersTied: number;
  /** Preference for ranker a, with its interval; undefined without wins or ties. */
  delta?: Estimate | undefined;
  pValue?: number | undefined;
  significant: boolean;
}

/** The interleaving comparison of rankers `a` and `b` over `impressions` (those showing neither are ignored). */
export function interleavingResult(impressions: Iterable<InterleavedImpression>, a: string, b: string, confidence: number): InterleavingResult {
  const tally = new InterleavingTally(a, b);
  for (const imp of impressions) tally.add(imp);
  return tally.result(confidence);
}

/**
 * interleavingResult one impression at a time: what it keeps is per user, so a caller can stream
 * a window's impressions through it in chunks instead of holding them all (a million events hold
 * ~80,000 interleaved searches).
 */
export class InterleavingTally {
  private readonly perUser = new Map<string, { score: number; decided: number }>();
  private readonly counts = { impressions: 0, winsA: 0, winsB: 0, ties: 0 };

  constructor(
    private readonly a: string,
    private readonly b: string,
  ) {}

  add(imp: InterleavedImpression): void {
    const { a, b, counts } = this;
    if (!imp.teams.includes(a) && !imp.teams.includes(b)) return;
    counts.impressions++;
    const outcome = impressionOutcome(imp.teams, imp.clickedRanks, a, b);
    if (outcome === "none") return;
    if (outcome === "a") counts.winsA++;
    else if (outcome === "b") counts.winsB++;
    else counts.ties++;
    let u = this.perUser.get(imp.userId);
    if (!u) this.perUser.set(imp.userId, (u = { score: 0, decided: 0 }));
    u.score += outcome === "a" ? 1 : outcome === "tie" ? 0.5 : 0;
    u.decided++;
  }

  result(confidence: number): InterleavingResult {
    const perUser = this.perUser;
    const out: InterleavingResult = { ...this.counts, users: 0, usersPreferringA: 0, usersPreferringB: 0, usersTied: 0, significant: false };
    const scores = new Float64Array(perUser.size);
    const decided = new Float64Array(perUser.size);
    let i = 0;
    for (const u of perUser.values()) {
      scores[i] = u.score;
      decided[i++] = u.decided;
      if (u.score * 2 > u.decided) out.usersPreferringA++;
      else if (u.score * 2 < u.decided) out.usersPreferringB++;
      else out.usersTied++;
    }
    out.users = perUser.size;
    // One user is no spread to measure: the floored variance (delta-method.ts) keeps the interval honest.
    const ratio = perUser.size >= 2 ? ratioEstimate(scores, decided, "proportion") : undefined;
    if (ratio === undefined) return out;
    const se = Math.sqrt(ratio.variance);
    const value = ratio.value - 0.5;
    const half = zCritical(confidence) * se;
    out.delta = { value, low: value - half, high: value + half };
    out.pValue = se > 0 ? Math.min(1, 2 * normalCdf(-Math.abs(value) / se)) : undefined;
    out.significant = out.pValue !== undefined && out.pValue < 1 - confidence;
    return out;
  }
}
