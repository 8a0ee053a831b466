/**
 * The flags that say which comparison to compute (window, control, confidence, CUPED, expected
 * split, time zone of the daily charts), shared by `report` and `dashboard`.
 */
import { DAYS_HELP, numberFlag, splitFlag, stringFlag, windowFlags, type FlagValues } from "./common.js";
import { MAX_CONFIDENCE, MIN_CONFIDENCE } from "../../core/comparison-model.js";
import type { ReportRequest } from "./report-data.js";

export const COMPARISON_OPTIONS = {
  days: { type: "string" },
  start: { type: "string" },
  end: { type: "string" },
  control: { type: "string" },
  confidence: { type: "string" },
  cuped: { type: "boolean" },
  "expected-split": { type: "string" },
  "time-zone": { type: "string" },
} as const;

export const WINDOW_HELP = `${DAYS_HELP}
  --start TIME            an experiment period from TIME (ISO 8601, e.g. 2026-11-01 or
                          2026-11-01T09:00:00Z) instead of --days
  --end TIME              end of the period (exclusive; default now); needs --start`;

export const COMPARISON_HELP = `  --control VARIANT       the baseline (default: the server's, search_v1)
  --confidence X          confidence level in [0.5, 0.9999] (default 0.95)`;

export const SPLIT_HELP = `  --cuped                 CUPED variance reduction with the equally long stretch before the window
  --expected-split SPEC   expected users per variant as weights, e.g. search_v1=1,search_v2=1
                          (default: an equal split)`;

/** The request of the comparison flags; `sequential` is each command's own choice. */
export function comparisonFlags(values: FlagValues, usage: string, sequential: boolean): ReportRequest {
  return {
    window: windowFlags(values, usage),
    control: stringFlag(values, "control"),
    confidence: numberFlag(values, "confidence", undefined, MIN_CONFIDENCE, MAX_CONFIDENCE, usage),
    sequential,
    cuped: values.cuped === true,
    expectedSplit: splitFlag(values, "expected-split", usage),
    timeZone: stringFlag(values, "time-zone"),
  };
}
