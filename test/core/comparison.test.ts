import { describe, expect, it } from "vitest";
import { compareVariants, comparisonSettings, type VariantData } from "../../src/core/comparison.js";
import { twoProportionZTest, wilsonInterval } from "../../src/core/statistics.js";

const settings = (over: Partial<Parameters<typeof comparisonSettings>[0]> = {}) => comparisonSettings({ control: "", expectedSplit: {}, ...over });
const v = (impressions: number, searchesWithClicks: number, clicks = searchesWithClicks, p95 = 100): VariantData => ({ impressions, searchesWithClicks, clicks, p95ResponseTimeMs: p95 });

describe("compareVariants", () => {
  it("recommends a variant with a significant search-CTR lift and no latency regression", () => {
    const r = compareVariants(new Map([["search_v1", v(2000, 400)], ["search_v2", v(2000, 500)]]), settings());
    expect(r.recommendation).toBe("search_v2");
    expect(r.reason).toBe("significant lift");
    const c = r.comparisons[0]!;
    expect(c.variant).toBe("search_v2");
    expect(c.searchCtrLift!.value).toBeCloseTo(0.05, 12);
    expect(c.searchCtrRelativeLift!.value).toBeCloseTo(0.25, 12);
    expect(c.searchCtrPValue).toBeCloseTo(twoProportionZTest(400, 2000, 500, 2000)!.pValue, 12);
    expect(c.searchCtrSignificant).toBe(true);
    expect(r.srmDetected).toBe(false);
    expect(r.searchCtrIntervals.get("search_v1")).toEqual(wilsonInterval(400, 2000, 0.95));
  });

  it("says 'not significant' when the difference may be noise", () => {
    const r = compareVariants(new Map([["search_v1", v(1000, 200)], ["search_v2", v(1000, 210)]]), settings());
    expect([r.recommendation, r.reason]).toEqual(["", "not significant"]);
    expect(r.comparisons[0]!.searchCtrSignificant).toBe(false);
  });

  it("says 'latency regression' when the better variant is slower than allowed", () => {
    const data = new Map([["search_v1", v(2000, 400, 400, 100)], ["search_v2", v(2000, 500, 500, 111)]]);
    const r = compareVariants(data, settings());
    expect([r.recommendation, r.reason]).toEqual(["", "latency regression"]);
    expect(r.comparisons[0]).toMatchObject({ latencyRegression: true });
    expect(r.comparisons[0]!.p95LatencyDiffMs).toBeCloseTo(11, 10);
    expect(compareVariants(data, settings({ latencyThreshold: 0.2 })).recommendation).toBe("search_v2");
  });

  it("detects sample ratio mismatch and then recommends nothing", () => {
    const r = compareVariants(new Map([["search_v1", v(1000, 200)], ["search_v2", v(800, 300)]]), settings());
    expect(r.srmDetected).toBe(true);
    expect(r.srmPValue!).toBeLessThan(0.001);
    expect([r.recommendation, r.reason]).toEqual(["", "srm"]);
    // the same counts are fine when a 5:4 split was intended
    const planned = compareVariants(new Map([["search_v1", v(1000, 200)], ["search_v2", v(800, 300)]]), settings({ expectedSplit: { search_v1: 5, search_v2: 4 } }));
    expect(planned.srmDetected).toBe(false);
    expect(planned.recommendation).toBe("search_v2");
  });

  it("needs enough impressions in every variant, and a control", () => {
    expect(compareVariants(new Map([["search_v1", v(99, 10)], ["search_v2", v(5000, 4000)]]), settings()).reason).toBe("insufficient data");
    expect(compareVariants(new Map([["search_v2", v(5000, 4000)], ["search_v3", v(5000, 100)]]), settings()).reason).toBe("insufficient data");
    expect(compareVariants(new Map([["search_v1", v(99, 10)], ["search_v2", v(99, 90)]]), settings({ minImpressions: 50 })).recommendation).toBe("search_v2");
  });

  it("recommends keeping the control when every other variant is significantly worse", () => {
    const r = compareVariants(new Map([["base", v(2000, 600)], ["search_v2", v(2000, 400)]]), settings({ control: "base" }));
    expect([r.recommendation, r.reason]).toEqual(["base", "control is better"]);
  });

  it("validates its settings", () => {
    expect(() => settings({ confidence: 1 })).toThrow(/confidence: must be between 0 and 1/);
    expect(() => settings({ latencyThreshold: -0.1 })).toThrow(/latency_threshold/);
    expect(() => settings({ expectedSplit: { a: 0 } })).toThrow(/expected_split\[a\]: must be a positive weight/);
    expect(() => compareVariants(new Map([["search_v1", v(10, 1)], ["x", v(10, 1)]]), settings({ expectedSplit: { search_v1: 1 } }))).toThrow(/expected_split: must give a weight for every variant with impressions \(missing: x\)/);
  });
});
