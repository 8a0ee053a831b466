/**
 * GetInterleavingResult through the typed client and a grpcurl-like reflection client: searches
 * logged with their teams (built by the client's teamDraftInterleave), clicks credited through
 * the linked search, and bad requests refused naming the field.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { EventOutcome, InterleavingTest, Status, teamDraftInterleave, type ServiceError } from "../../src/client/index.js";
import { grpcurl } from "../support/grpcurl.js";
import { startHarness, type Harness } from "../support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());
beforeEach(() => h.server.store.reset());

const search = (id: string, user: string, teams: string[]) => ({ kind: { case: "impression" as const, value: { impressionId: id, userId: user, query: "q", variant: "interleave", resultsCount: teams.length, responseTimeMs: 10, teams } } });
const click = (id: string, user: string, rank: number) => ({ kind: { case: "click" as const, value: { impressionId: id, userId: user, productId: `p${rank}`, rank, searchQuery: "q", variant: "interleave", responseTimeMs: 10 } } });

describe("GetInterleavingResult", () => {
  it("credits clicks to the ranker of the clicked position, per search and per user, with the preference over users", async () => {
    const T = ["bm25", "neural", "bm25", "neural"];
    // u1: neural wins s1 (rank 1), ties s2 (0 and 1); u2: bm25 wins s3 (rank 2); s4 has no click;
    // u3: neural wins s5 (ranks 1 and 3) — its click on s5 arrives before the search itself.
    await h.client.logEvents({ events: [click("s5", "u3", 1), click("s5", "u3", 3)] });
    await h.client.logEvents({
      events: [search("s1", "u1", T), search("s2", "u1", T), search("s3", "u2", T), search("s4", "u2", T), search("s5", "u3", T), search("plain", "u1", []), click("s1", "u1", 1), click("s2", "u1", 0), click("s2", "u1", 1), click("s3", "u2", 2), click("plain", "u1", 0)],
    });
    const r = await h.client.getInterleavingResult({ days: 1, rankerA: "bm25", rankerB: "neural" });
    expect(r).toMatchObject({ rankerA: "bm25", rankerB: "neural", impressions: 5n, winsA: 1n, winsB: 2n, ties: 1n, users: 3n, usersPreferringA: 1n, usersPreferringB: 2n, usersTied: 0n, confidence: 0.95 });
    // (1 + 1/2) / 4 - 1/2
    expect(r.delta!.value).toBeCloseTo(-0.125, 12);
    expect(r.significant).toBe(false);
    expect(r.preferred).toBe("");

    // The same through a reflection client, as grpcurl sends it (proto3 JSON).
    const json = (await grpcurl(h.server.address, ["-plaintext", "-d", '{"days": 1, "rankerA": "neural", "rankerB": "bm25"}', "localhost:50051", "clickanalytics.v1.ClickAnalytics/GetInterleavingResult"])) as Record<string, unknown>;
    expect(json).toMatchObject({ rankerA: "neural", rankerB: "bm25", winsA: "2", winsB: "1", ties: "1", users: "3" });
    expect(json.delta).toMatchObject({ value: 0.125 });

    // ExportEvents gives back each search's teams as logged (none for an ordinary search or a click).
    const exported = new Map<string, string[]>();
    for await (const batch of h.client.exportEvents({ days: 1 })) for (const e of batch.events) exported.set(e.eventId, e.teams);
    for (const id of ["s1", "s2", "s3", "s4", "s5"]) expect(exported.get(id), id).toEqual(T);
    expect(exported.get("plain")).toEqual([]);
    expect([...exported.values()].filter((teams) => teams.length === 0)).toHaveLength(1 + 7); // "plain" and the seven clicks
  });

  it("finds the better ranker when users keep choosing it, on lists the typed client interleaved", async () => {
    const events = [];
    for (let u = 0; u < 40; u++) {
      for (let s = 0; s < 3; s++) {
        const id = `u${u}-s${s}`;
        const { results, teams } = teamDraftInterleave(["x1", "x2", "x3"], ["y1", "y2", "y3"], { seed: id, teamA: "old", teamB: "new" });
        events.push(search(id, `u${u}`, teams));
        // Users click the best "new" result, except one search in six.
        const target = (u + s) % 6 === 0 ? results.indexOf("x1") : results.indexOf("y1");
        events.push(click(id, `u${u}`, target));
      }
    }
    await h.client.logEvents({ events });
    const r = await h.client.getInterleavingResult({ days: 1, rankerA: "old", rankerB: "new", confidence: 0.99 });
    expect(r.confidence).toBe(0.99);
    expect(r.winsA + r.winsB).toBe(120n);
    expect(r.delta!.value).toBeLessThan(0);
    expect(r.delta!.high).toBeLessThan(0);
    expect(r.significant).toBe(true);
    expect(r.preferred).toBe("new");
  });

  it("counts a search for (A, B) only when both were shown, each clicked position once, and clicks past the list for no one", async () => {
    // Issue 22's reproductions. Teams [C, A, C], 2 users clicking A's position: not an A-vs-B
    // search (was wins_a 2, p 0.021, significant, preferred ranker_a).
    // Teams [A, B], clicks at rank 0 twice and rank 1 once: a tie (was a win for A).
    // Teams [A, B] with a click at rank 5: uncredited, counted.
    await h.client.logEvents({
      events: [
        search("ca1", "u1", ["ranker_c", "ranker_a", "ranker_c"]),
        search("ca2", "u2", ["ranker_c", "ranker_a", "ranker_c"]),
        click("ca1", "u1", 1),
        click("ca2", "u2", 1),
        { kind: { case: "impression" as const, value: { impressionId: "ab", userId: "u3", query: "q", variant: "interleave", resultsCount: 6, responseTimeMs: 10, teams: ["ranker_a", "ranker_b"] } } },
        click("ab", "u3", 0),
        click("ab", "u3", 0),
        click("ab", "u3", 1),
        click("ab", "u3", 5),
      ],
    });
    const r = await h.client.getInterleavingResult({ days: 1, rankerA: "ranker_a", rankerB: "ranker_b" });
    expect(r).toMatchObject({ impressions: 1n, winsA: 0n, winsB: 0n, ties: 1n, uncreditedClicks: 1n, users: 1n, usersTied: 1n, significant: false, preferred: "" });
    // The matrix has both pairs, each in byte order; C-vs-A is where the first two searches count.
    expect(r.pairs.map((p) => [p.rankerA, p.rankerB, p.impressions, p.winsA, p.winsB, p.ties, p.uncreditedClicks])).toEqual([
      ["ranker_a", "ranker_b", 1n, 0n, 0n, 1n, 1n],
      ["ranker_a", "ranker_c", 2n, 2n, 0n, 0n, 0n],
    ]);
    // Both rankers empty: only the matrix.
    const m = await h.client.getInterleavingResult({ days: 1 });
    expect(m).toMatchObject({ rankerA: "", rankerB: "", impressions: 0n });
    expect(m.pairs).toHaveLength(2);
  });

  it("cannot make a winner of three users (issue 21): p = 0.25, interval within delta's range", async () => {
    const events = [];
    for (const u of ["u1", "u2", "u3"]) events.push(search(`s-${u}`, u, ["ranker_a", "ranker_b"]), click(`s-${u}`, u, 0));
    await h.client.logEvents({ events });
    const r = await h.client.getInterleavingResult({ days: 1, rankerA: "ranker_a", rankerB: "ranker_b" });
    // Was p = 0.0052, significant, interval [0.149, 0.851].
    expect(r).toMatchObject({ winsA: 3n, users: 3n, pValue: 0.25, significant: false, preferred: "", test: InterleavingTest.EXACT });
    expect(r.delta).toMatchObject({ value: 0.5, low: -0.5, high: 0.5 });
  });

  it("refuses bad requests and bad teams, naming the field", async () => {
    const invalid = async (p: Promise<unknown>, detail: RegExp) => {
      const e = (await p.catch((x: unknown) => x)) as ServiceError;
      expect(e.code).toBe(Status.INVALID_ARGUMENT);
      expect(e.details).toMatch(detail);
    };
    await invalid(h.client.getInterleavingResult({ rankerB: "b" }), /^ranker_a: /);
    await invalid(h.client.getInterleavingResult({ rankerA: "a", rankerB: "a" }), /^ranker_b: must differ from ranker_a/);
    await invalid(h.client.getInterleavingResult({ rankerA: "a", rankerB: "b", confidence: 1 }), /^confidence: /);
    const res = await h.client.logEvents({ events: [search("bad", "u", ["ok", "not ok!"])] });
    expect(res.results[0]).toMatchObject({ field: "events[0].impression.teams[1]" });
    await invalid(h.client.logImpression({ query: "q", variant: "v", resultsCount: 2000, teams: Array.from({ length: 1001 }, () => "a") }), /^teams: must have at most 1000 entries/);
    // The teams describe shown positions: no more of them than results (issue 22: results_count 2
    // with 6 teams and a click at rank 4 was a win for A; results_count 0 with teams, too).
    const six = ["ranker_a", "ranker_b", "ranker_a", "ranker_b", "ranker_a", "ranker_b"];
    await invalid(h.client.logImpression({ query: "q", variant: "v", resultsCount: 2, teams: six }), /^teams: must have at most results_count \(2\) entries/);
    const batch = await h.client.logEvents({
      events: [
        { kind: { case: "impression", value: { impressionId: "short", userId: "u", query: "q", variant: "v", resultsCount: 2, responseTimeMs: 1, teams: six } } },
        { kind: { case: "impression", value: { impressionId: "none", userId: "u", query: "q", variant: "v", resultsCount: 0, responseTimeMs: 1, teams: ["ranker_a"] } } },
        { kind: { case: "impression", value: { impressionId: "fits", userId: "u", query: "q", variant: "v", resultsCount: 6, responseTimeMs: 1, teams: six } } },
      ],
    });
    expect(batch.results.map((x) => [x.outcome, x.field])).toEqual([
      [EventOutcome.REJECTED, "events[0].impression.teams"],
      [EventOutcome.REJECTED, "events[1].impression.teams"],
      [EventOutcome.ACCEPTED, ""],
    ]);
  });

  it("the typed client's teamDraftInterleave takes exactly the team names the server takes", async () => {
    const names = ["a", "A.b-c_9", "x".repeat(64), "", "x".repeat(65), "not ok!", "é", "a/b", " a"];
    for (const name of names) {
      let helper = "accepted";
      try {
        teamDraftInterleave(["p1"], ["p2"], { seed: "s", teamA: name, teamB: "other" });
      } catch (e) {
        helper = (e as Error).message.startsWith("teamA must match [A-Za-z0-9_.-]{1,64}") ? "rejected" : `threw ${(e as Error).message}`;
      }
      const server = await h.client.logImpression({ query: "q", variant: "v", resultsCount: 2, teams: [name, "other"] }).then(
        () => "accepted",
        (e: ServiceError) => (e.code === Status.INVALID_ARGUMENT && e.details.startsWith("teams[0]") ? "rejected" : `failed ${e.details}`),
      );
      expect([name, helper], name).toEqual([name, server]);
    }
    expect(() => teamDraftInterleave(["p1"], ["p2"], { seed: "s", teamA: "ok", teamB: "no!" })).toThrow(/^teamB must match/);
  });
});
