/**
 * GetInterleavingResult as rows: one per ranker pair (the requested one first), shared by
 * `click-analytics interleaving`, `report` and its HTML page.
 */
import { InterleavingTest, type GetInterleavingResultResponse, type InterleavingPair } from "../client/index.js";
import { integer, pValue } from "./format.js";

const TEST_NAME: Record<number, string> = { [InterleavingTest.EXACT]: "exact", [InterleavingTest.MONTE_CARLO]: "Monte Carlo", [InterleavingTest.NORMAL]: "normal", [InterleavingTest.UNSPECIFIED]: "" };

export const INTERLEAVING_HEADERS = ["ranker A", "ranker B", "searches", "wins A", "wins B", "ties", "uncredited", "users", "Δ (A)", "interval", "p", "test", "preferred"] as const;

const signed = (x: number) => `${x >= 0 ? "+" : "−"}${Math.abs(x).toFixed(3)}`;

export type PairRow = Pick<InterleavingPair, "rankerA" | "rankerB" | "impressions" | "winsA" | "winsB" | "ties" | "uncreditedClicks" | "users" | "delta" | "pValue" | "significant" | "preferred" | "test">;

/** The cells of one pair: Δ and its interval to 3 decimals, p, the test, and the preferred ranker (significant only). */
export function pairCells(p: PairRow): string[] {
  return [
    p.rankerA,
    p.rankerB,
    integer(p.impressions),
    integer(p.winsA),
    integer(p.winsB),
    integer(p.ties),
    integer(p.uncreditedClicks),
    integer(p.users),
    p.delta ? signed(p.delta.value) : "n/a",
    p.delta ? `[${signed(p.delta.low)}, ${signed(p.delta.high)}]` : "",
    p.pValue === undefined ? "" : `${pValue(p.pValue)}${p.significant ? " *" : ""}`,
    TEST_NAME[p.test] ?? "",
    p.preferred,
  ];
}

/** The requested pair (when one was asked for) and then every pair of the matrix that is not it. */
export function interleavingRows(r: GetInterleavingResultResponse): PairRow[] {
  const asked = r.rankerA !== "" ? [r as PairRow] : [];
  const same = (p: PairRow) => asked.some((a) => (a.rankerA === p.rankerA && a.rankerB === p.rankerB) || (a.rankerA === p.rankerB && a.rankerB === p.rankerA));
  return [...asked, ...r.pairs.filter((p) => !same(p))];
}

export const INTERLEAVING_NOTE =
  "Δ = (wins A + ties/2) / (wins A + wins B + ties) − 1/2 (> 0 prefers ranker A). A search counts for a pair when both rankers had shown positions; each clicked shown position credits its ranker once; clicks past the shown list are uncredited. p and interval: a sign-flip test over users (exact with few users), * significant.";
