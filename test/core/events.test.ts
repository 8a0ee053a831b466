import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../src/core/errors.js";
import { charLength, validateClick, validateImpression } from "../../src/core/events.js";
import { resolveDays, timeWindow } from "../../src/core/window.js";

const now = new Date("2026-11-28T12:00:00Z");
const click = { productId: "p", rank: 0, searchQuery: "q", variant: "search_v1", responseTimeMs: 1, source: "SEARCH_RESULTS" as const };

function ruleOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidArgumentError);
    return (e as Error).message;
  }
  throw new Error("expected a rule to be broken");
}

describe("validateClick", () => {
  it("fills identity, id, time and folds -0", () => {
    const e = validateClick({ ...click, responseTimeMs: -0 }, now);
    expect(e.userId).toMatch(/^[0-9a-f-]{36}$/);
    expect(e.eventId).not.toBe(e.userId);
    expect(e.sessionId).toBeNull();
    expect(e.timestamp).toBe(now);
    expect(Object.is(e.responseTimeMs, 0)).toBe(true);
  });

  it("names the field and the rule", () => {
    expect(ruleOf(() => validateClick({ ...click, rank: 1.5 }, now))).toMatch(/^rank: must be a non-negative integer/);
    expect(ruleOf(() => validateClick({ ...click, responseTimeMs: 3_600_001 }, now))).toMatch(/^response_time_ms: must be at most 3600000 ms/);
    expect(ruleOf(() => validateClick({ ...click, timestamp: new Date(now.getTime() + 5 * 60_000 + 1) }, now))).toMatch(/^timestamp: must not be more than 5 minutes/);
    expect(ruleOf(() => validateClick({ ...click, timestamp: new Date(NaN) }, now))).toMatch(/^timestamp: must be a valid time/);
    expect(ruleOf(() => validateClick({ ...click, searchQuery: "a\u0000b" }, now))).toMatch(/^search_query: must not contain NUL/);
  });

  it("accepts exactly 5 minutes of clock skew", () => {
    const edge = new Date(now.getTime() + 5 * 60_000);
    expect(validateClick({ ...click, timestamp: edge }, now).timestamp).toBe(edge);
  });
});

describe("validateImpression", () => {
  it("gives each impression an id and keeps counts", () => {
    const e = validateImpression({ query: "shoes", variant: "v.2-b_c", resultsCount: 0, responseTimeMs: 3, userId: "u", sessionId: "s" }, now);
    expect(e).toMatchObject({ userId: "u", sessionId: "s", resultsCount: 0, variant: "v.2-b_c" });
    expect(e.impressionId).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe("windows", () => {
  it("0 means 7; 1..365 allowed", () => {
    expect(resolveDays(0)).toBe(7);
    expect(resolveDays(1)).toBe(1);
    expect(resolveDays(365)).toBe(365);
    expect(ruleOf(() => resolveDays(366))).toMatch(/^days: must be between 1 and 365/);
    expect(ruleOf(() => resolveDays(-7))).toMatch(/^days:/);
  });

  it("starts days x 24h before now", () => {
    expect(timeWindow(7, now).start.toISOString()).toBe("2026-11-21T12:00:00.000Z");
  });

  it("counts Unicode characters", () => {
    expect(charLength("😀a")).toBe(2);
  });
});
