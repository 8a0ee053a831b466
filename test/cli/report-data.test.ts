/**
 * The intervals the report draws per day: the CTR band (a Poisson rate's score interval,
 * poissonRateInterval) and the search-CTR band (Wilson, from the day's searches with clicks and
 * searches). Reference values are computed by hand from the closed forms, not by the code under test:
 *   Poisson: (x + z²/2 ± z √(x + z²/4)) / n        Wilson: (p + z²/2n ± z √(p(1−p)/n + z²/4n²)) / (1 + z²/n)
 * with z = 1.9599639845400536 (95%) and 2.5758293035489 (99%).
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { poissonRateInterval, fetchReportData, type DayPoint } from "../../src/cli/commands/report-data.js";
import type { EventSchema } from "../../src/client/index.js";
import { startHarness, type Harness } from "../support/harness.js";

const Z2_95 = 3.8414588206941236;
const Z2_99 = 6.634896601021211;

describe("poissonRateInterval", () => {
  it("at x = 0 is [0, z²/n]", () => {
    expect(poissonRateInterval(0, 1, 0.95)).toEqual({ low: 0, high: expect.closeTo(Z2_95, 12) });
    expect(poissonRateInterval(0, 1, 0.99)).toEqual({ low: 0, high: expect.closeTo(Z2_99, 12) });
    expect(poissonRateInterval(0, 10, 0.99)).toEqual({ low: 0, high: expect.closeTo(Z2_99 / 10, 12) });
  });

  it("matches (x + z²/2 ± z √(x + z²/4)) / n", () => {
    const cases: [number, number, number, number, number][] = [
      // x, n, confidence, low, high
      [10, 100, 0.95, 0.054319861056143635, 0.18409472715079758],
      [10, 100, 0.99, 0.045223116195503364, 0.22112584981470873],
      [4, 10, 0.95, 0.1555521883716894, 1.028593693697723],
      [4, 10, 0.99, 0.11900467606533108, 1.34448498403679],
      // A rate above 1 (several clicks per search): no clamping at 1.
      [15, 10, 0.95, 0.9090589962151772, 2.475086885854235],
    ];
    for (const [x, n, confidence, low, high] of cases) {
      const i = poissonRateInterval(x, n, confidence)!;
      expect([i.low, i.high], `x=${x} n=${n} at ${confidence}`).toEqual([expect.closeTo(low, 12), expect.closeTo(high, 12)]);
    }
  });

  it("is undefined without exposure", () => {
    expect(poissonRateInterval(0, 0, 0.95)).toBeUndefined();
    expect(poissonRateInterval(3, 0, 0.95)).toBeUndefined();
  });
});

describe("the report's daily bands, from a live server", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
    // One day: variant a has 10 searches, 3 of them clicked, one of those twice (4 clicks); variant b 10 searches, none clicked.
    const at = timestampFromMs(Date.now() - 60_000);
    const events: MessageInitShape<typeof EventSchema>[] = [];
    for (const variant of ["a", "b"]) {
      for (let i = 0; i < 10; i++) {
        const id = `${variant}-${i}`;
        events.push({ kind: { case: "impression", value: { eventId: id, userId: `u${i}-${variant}`, query: "q", variant, resultsCount: 10, responseTimeMs: 20, timestamp: at } } });
        if (variant === "a" && i < 3) {
          events.push({ kind: { case: "click", value: { eventId: `${id}-c`, impressionId: id, userId: `u${i}-${variant}`, productId: "p", rank: 0, searchQuery: "q", variant, responseTimeMs: 20, timestamp: at } } });
          if (i === 0) events.push({ kind: { case: "click", value: { eventId: `${id}-c2`, impressionId: id, userId: `u${i}-${variant}`, productId: "p2", rank: 1, searchQuery: "q", variant, responseTimeMs: 20, timestamp: at } } });
        }
      }
    }
    const r = await h.client.logEvents({ events });
    expect([r.accepted, r.rejected]).toEqual([24n, 0n]);
  });
  afterAll(() => h?.close());

  const theDay = (days: DayPoint[]): DayPoint => {
    const withData = days.filter((d) => d.impressions > 0);
    expect(withData.length).toBe(1);
    return withData[0]!;
  };

  it("draws the CTR band from clicks and searches, the search-CTR band (Wilson) from clicked searches and searches, at the report's confidence", async () => {
    for (const [confidence, a, b] of [
      // [CTR low, high], [search CTR low, high] for 4 clicks and 3 clicked of 10 searches; b: 0 of 10.
      [0.95, [0.1555521883716894, 1.028593693697723, 0.10779126740630102, 0.6032218525388546], [0, Z2_95 / 10, 0, Z2_95 / (10 + Z2_95)]],
      [0.99, [0.11900467606533108, 1.34448498403679, 0.07956631652306578, 0.6799753207988973], [0, Z2_99 / 10, 0, 0.398854093304908]],
    ] as const) {
      const data = await fetchReportData(h.client, h.server.address, { window: { days: 7 }, control: "a", confidence });
      expect(data.variants.map((v) => v.variant)).toEqual(["a", "b"]);
      const dayA = theDay(data.variants[0]!.days);
      expect([dayA.impressions, dayA.clicks, dayA.searchesWithClicks, dayA.ctr, dayA.searchCtr]).toEqual([10, 4, 3, 0.4, 0.3]);
      expect([dayA.ctrInterval?.low, dayA.ctrInterval?.high, dayA.searchCtrInterval?.low, dayA.searchCtrInterval?.high], `variant a at ${confidence}`).toEqual(a.map((v) => expect.closeTo(v, 12)));
      const dayB = theDay(data.variants[1]!.days);
      expect([dayB.impressions, dayB.clicks, dayB.searchesWithClicks]).toEqual([10, 0, 0]);
      expect([dayB.ctrInterval?.low, dayB.ctrInterval?.high, dayB.searchCtrInterval?.low, dayB.searchCtrInterval?.high], `variant b at ${confidence}`).toEqual(b.map((v) => expect.closeTo(v, 12)));
    }
  });
});
