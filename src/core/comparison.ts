/**
 * The A/B decision: each treatment against the control on search CTR (searches with a click /
 * searches), CTR (clicks / searches), no-results rate, MRR of the first click and abandonment
 * rate (over searches with results, see first-click.ts), at the unit of randomisation (the
 * user, through hashed user buckets); a sample-ratio check on users; a latency guardrail with
 * uncertainty; Holm-adjusted decisions over several treatments; and a recommendation that says
 * why when it has none.
 *
 * Methods (each file says why and cites its sources):
 * - delta-method.ts: ratio estimates and variances over the 256 user buckets, CUPED;
 * - inference.ts: one normal model per metric for estimate, interval, p-value and Fieller's
 *   relative interval, fixed horizon (default) or always-valid sequential (mixture SPRT), Holm,
 *   the minimum detectable effect at 80% power;
 * - latency-guardrail.ts: order-statistic intervals for p95.
 *
 * Sample ratio: Pearson's chi-square of exact distinct users per arm against the expected
 * split, every expected arm included (an expected arm without users is a mismatch), at
 * SRM_ALPHA. Users, not searches: users are what is randomised, and a heavy user moves an arm's
 * searches by hundreds. Users seen in several arms (an assignment leak) are reported with their
 * share of distinct users (sum of arm users minus the leaked ones, exact when each leaked user is
 * in two arms).
 *
 * Users, exactly (since issue 21): when every arm comes with its per-user totals (user-totals.ts:
 * the storage keeps them per hour and day, store/user-rollups.ts), the units are the users
 * themselves, not the 256 buckets: heavy users are capped (winsorized) at a pooled percentile and,
 * when asked, bots are left out before any test (user-totals.ts says how and why), CUPED pairs
 * each user with their own pre-period, and the latency guardrail's interval is taken over users.
 * Without per-user totals (a caller that has only buckets), the buckets are the units, uncapped,
 * as before; the answer says which (`capping.applied`).
 *
 * Few users: with per-user totals, an arm pair whose smaller arm has at most PERMUTATION_MAX_USERS
 * users is tested by a studentized permutation test over users (permutation.ts; exact up to 5,000
 * splits), valid at any size; above it, Student's t on (the smaller arm's users - 1) degrees of
 * freedom, which is the normal at these sizes. With buckets only, each arm's variance is rescaled
 * to the k buckets with data and fixed-horizon tests use Student's t on (the smaller arm's k - 1)
 * degrees of freedom. Below minUsers distinct users per arm (default DEFAULT_MIN_USERS, chosen by
 * calibration) nothing is recommended.
 *
 * Recommendation: the treatment with the largest significant (Holm-adjusted) positive search-CTR
 * lift whose guardrail is "ok"; the control when every treatment is significantly (adjusted)
 * worse; else none, with the reason. Nothing is recommended on an SRM or when none can be
 * computed, with too few impressions (minImpressions) or users (minUsers) per compared variant,
 * or when the guardrail is anything but "ok".
 */
import { InvalidArgumentError } from "./errors.js";
import { differenceTest, holmAdjust, type DifferenceInput, type Design } from "./inference.js";
import { latencyGuardrail } from "./latency-guardrail.js";
import { ratioSums } from "./delta-method.js";
import { sampleRatioTest, type Interval } from "./statistics.js";
import { PERMUTATION_MAX_USERS, permutationTests, type PermutationMetric } from "./permutation.js";
import { capIndexes, capInPlace, keptUsers, pooledCap, unionSize, type UserTotals, type UserValues } from "./user-totals.js";
import { METRIC_FIELDS, METRICS, SRM_ALPHA, type Capping, type Comparison, type ComparisonSettings, type CupedStatus, type MetricCapping, type MetricComparison, type MetricName, type NoRecommendation, type SampleRatio, type VariantData, type VariantVsControl } from "./comparison-model.js";
import { armEstimate, design, differenceInput, hasPrePeriod, intervalOf, userVariance, type UserArm } from "./arm-estimates.js";

/**
 * Per-user preparation of every arm (see the file comment): the bot rule, then each metric's
 * numerator and denominator totals capped at their percentile over the kept users of all arms
 * pooled. undefined unless every arm has per-user totals.
 */
function prepareUsers(arms: readonly (readonly [string, VariantData])[], s: ComparisonSettings): { users: Map<string, UserArm>; capping: Capping } | undefined {
  if (arms.length === 0 || arms.some(([, d]) => d.perUser === undefined)) return undefined;
  const users = new Map<string, UserArm>();
  const bots = new Map<string, number>();
  for (const [name, d] of arms) {
    const { kept, bots: left } = keptUsers(d.perUser!, s.botSearchesPerDay);
    users.set(name, { totals: d.perUser!, kept, bots: left, metrics: new Map() });
    bots.set(name, left);
  }
  // The pre-period (CUPED): the same kept users, found by id; a user without pre-period events counts as 0.
  const preValues = new Map<string, { totals: UserTotals; index: Uint32Array; present: Uint8Array }>();
  if (s.cuped) {
    for (const [name, d] of arms) {
      if (d.prePerUser === undefined) continue;
      const at = new Map<number, number>();
      for (let i = 0; i < d.prePerUser.ids.length; i++) at.set(d.prePerUser.ids[i]!, i);
      const u = users.get(name)!;
      const index = new Uint32Array(u.kept.length);
      const present = new Uint8Array(u.kept.length);
      for (let j = 0; j < u.kept.length; j++) {
        const i = at.get(d.perUser!.ids[u.kept[j]!]!);
        if (i !== undefined) {
          index[j] = i;
          present[j] = 1;
        }
      }
      preValues.set(name, { totals: d.prePerUser, index, present });
    }
  }
  // Each distinct per-user column (searches serve three metrics) is extracted and capped once.
  const cappedColumns = new Map<UserValues, { values: Float64Array[]; above: Uint32Array[]; cap: number | undefined }>();
  const capped = (values: UserValues) => {
    let c = cappedColumns.get(values);
    if (c === undefined) {
      const perArm = arms.map(([name]) => values(users.get(name)!.totals, users.get(name)!.kept));
      const cap = pooledCap(perArm, s.capPercentile);
      cappedColumns.set(values, (c = { values: perArm, above: perArm.map((a) => capIndexes(a, cap)), cap }));
    }
    return c;
  };
  const metrics = new Map<MetricName, MetricCapping>();
  for (const metric of METRICS) {
    const { userNumerator, userDenominator } = METRIC_FIELDS[metric];
    const num = capped(userNumerator);
    const den = capped(userDenominator);
    const cappedUsers = new Map<string, number>();
    const values = new Map<string, number | undefined>();
    arms.forEach(([name], k) => {
      // Users with either total above its cap (indexes of each, ascending).
      cappedUsers.set(name, unionSize(num.above[k]!, den.above[k]!));
      users.get(name)!.metrics.set(metric, { num: num.values[k]!, den: den.values[k]! });
      const sums = ratioSums(num.values[k]!, den.values[k]!);
      values.set(name, sums.denominator > 0 ? sums.numerator / sums.denominator : undefined);
    });
    metrics.set(metric, { numeratorCap: num.cap, denominatorCap: den.cap, cappedUsers, values });
    // The pre-period's totals of the same users, capped at the pre-period's own pooled percentile.
    const withPre = arms.filter(([name]) => preValues.has(name));
    if (withPre.length > 0) {
      const pre = withPre.map(([name]) => {
        const p = preValues.get(name)!;
        const num = userNumerator(p.totals, p.index);
        const den = userDenominator(p.totals, p.index);
        for (let j = 0; j < p.present.length; j++) if (!p.present[j]) num[j] = den[j] = 0;
        return { name, num, den };
      });
      const preNumCap = pooledCap(pre.map((x) => x.num), s.capPercentile);
      const preDenCap = pooledCap(pre.map((x) => x.den), s.capPercentile);
      for (const x of pre) {
        capInPlace(x.num, preNumCap);
        capInPlace(x.den, preDenCap);
        const u = users.get(x.name)!;
        (u.pre ??= new Map()).set(metric, { num: x.num, den: x.den });
      }
    }
  }
  return { users, capping: { percentile: s.capPercentile, applied: true, botSearchesPerDay: s.botSearchesPerDay, bots, metrics } };
}

/**
 * The permutation tests of one comparison (every metric on the same splits), or undefined when
 * they do not apply: sequential, CUPED, buckets only, or more than PERMUTATION_MAX_USERS users in
 * the smaller arm.
 */
function smallSampleTests(tu: UserArm | undefined, cu: UserArm | undefined, s: ComparisonSettings, cupedApplied: boolean): Map<MetricName, { pValue: number; critical: number }> | undefined {
  if (tu === undefined || cu === undefined || s.sequential || cupedApplied) return undefined;
  if (Math.min(tu.kept.length, cu.kept.length) > PERMUTATION_MAX_USERS) return undefined;
  const metrics: MetricName[] = [];
  const inputs: PermutationMetric[] = [];
  for (const metric of METRICS) {
    const t = tu.metrics.get(metric)!;
    const c = cu.metrics.get(metric)!;
    metrics.push(metric);
    inputs.push({ treatment: t, control: c, variance: userVariance(METRIC_FIELDS[metric].kind) });
  }
  const results = permutationTests(inputs, 1 - s.confidence);
  const out = new Map<MetricName, { pValue: number; critical: number }>();
  results.forEach((r, k) => {
    if (r !== undefined) out.set(metrics[k]!, { pValue: r.pValue, critical: r.critical });
  });
  return out;
}

/** A permutation design for `input`, its critical value nudged off |t| so that the interval and the p-value can never disagree by rounding. */
function permutationDesign(input: DifferenceInput, r: { pValue: number; critical: number }, alpha: number): Design {
  const se = Math.sqrt(input.variance);
  const t = Math.abs(input.difference) / se;
  let critical = r.critical;
  if (r.pValue >= alpha && critical * se <= Math.abs(input.difference)) critical = t * (1 + 1e-9);
  if (r.pValue < alpha && critical * se >= Math.abs(input.difference)) critical = t * (1 - 1e-9);
  return { sequential: false, permutation: { pValue: r.pValue, critical } };
}

/** Compares every treatment with data against the control and recommends one, or says why not. */
export function compareVariants(data: ReadonlyMap<string, VariantData>, settings: ComparisonSettings, usersInSeveralArms?: number): Comparison {
  const s = settings;
  const alpha = 1 - s.confidence;
  const withData = [...data].filter(([, d]) => d.impressions > 0 || d.users > 0).sort(([a], [b]) => a.localeCompare(b));
  const missing = withData.filter(([name]) => s.expectedSplit.size > 0 && !s.expectedSplit.has(name)).map(([name]) => name);
  if (missing.length > 0) throw new InvalidArgumentError("expected_split", `must give a weight for every variant with impressions (missing: ${missing.join(", ")})`);

  // Sample ratio on users, every expected arm included.
  const splitNames = s.expectedSplit.size > 0 ? [...s.expectedSplit.keys()].sort() : withData.map(([name]) => name);
  const users = new Map(splitNames.map((name) => [name, data.get(name)?.users ?? 0]));
  const srm = sampleRatioTest(
    splitNames.map((name) => users.get(name)!),
    splitNames.map((name) => s.expectedSplit.get(name) ?? 1),
  );
  const srmDetected = srm !== undefined && srm.pValue < SRM_ALPHA;
  const totalUsers = [...data.values()].reduce((sum, d) => sum + d.users, 0);
  const distinctUsers = usersInSeveralArms !== undefined ? totalUsers - usersInSeveralArms : undefined;
  const sampleRatio: SampleRatio = {
    pValue: srm?.pValue,
    detected: srmDetected,
    users,
    usersInSeveralArms,
    usersInSeveralArmsShare: distinctUsers !== undefined && distinctUsers > 0 ? usersInSeveralArms! / distinctUsers : undefined,
  };

  // Per-user preparation (bots, caps) over every arm with data; else the buckets.
  const prepared = prepareUsers(withData, s);
  const userArm = (name: string) => prepared?.users.get(name);
  const capping: Capping = prepared?.capping ?? { percentile: s.capPercentile, applied: false, botSearchesPerDay: s.botSearchesPerDay, bots: new Map(), metrics: new Map() };

  // Per-variant intervals of every metric, in the same mode as the comparisons, about the rates
  // the variants report: over all their users, uncapped (an interval of the capped metric beside
  // the uncapped rate need not contain it). The comparisons below are of the capped metrics.
  const reported = prepared !== undefined && (s.capPercentile < 1 || s.botSearchesPerDay > 0) ? prepareUsers(withData, { ...s, capPercentile: 1, botSearchesPerDay: 0 }) : prepared;
  const intervals = new Map<string, Partial<Record<MetricName, Interval>>>();
  for (const [name, d] of data) {
    const row: Partial<Record<MetricName, Interval>> = {};
    for (const metric of METRICS) {
      const m = armEstimate(d, metric, reported?.users.get(name));
      if (m !== undefined) row[metric] = intervalOf(m, metric, s, d.users);
    }
    intervals.set(name, row);
  }
  const searchCtrIntervals = new Map([...data].map(([name]) => [name, intervals.get(name)!.searchCtr]));

  const control = data.get(s.control);
  const treatments = control && control.impressions > 0 ? withData.filter(([name, d]) => name !== s.control && d.impressions > 0) : [];
  const cupedPossible = (d: VariantData) => s.cuped && control !== undefined && hasPrePeriod(d) && hasPrePeriod(control);

  // Raw tests per metric and treatment, then Holm over the treatments of each metric.
  const tests = treatments.map(([name, d]) => {
    const perMetric = new Map<MetricName, { test: ReturnType<typeof differenceTest>; varianceReduction?: number | undefined }>();
    const prepared = new Map<MetricName, NonNullable<ReturnType<typeof differenceInput>>>();
    for (const metric of METRICS) {
      const p = differenceInput(d, control!, metric, cupedPossible(d), userArm(name), userArm(s.control));
      if (p !== undefined) prepared.set(metric, p);
    }
    const cupedApplied = [...prepared.values()].some((p) => p.varianceReduction !== undefined);
    const small = smallSampleTests(userArm(name), userArm(s.control), s, cupedApplied);
    for (const [metric, p] of prepared) {
      const permutation = small?.get(metric);
      const de = permutation !== undefined ? permutationDesign(p.input, permutation, alpha) : design(s, p.input.variance, d.users + control!.users, p.df);
      perMetric.set(metric, { test: differenceTest(p.input, s.confidence, de), varianceReduction: p.varianceReduction });
    }
    return { name, d, perMetric };
  });
  const adjusted = new Map<MetricName, Map<string, number>>();
  for (const metric of METRICS) {
    const rows = tests.filter((t) => t.perMetric.has(metric));
    const ps = holmAdjust(rows.map((t) => t.perMetric.get(metric)!.test.pValue));
    adjusted.set(metric, new Map(rows.map((t, i) => [t.name, ps[i]!])));
  }

  // The latency guardrail over users when per-user latencies are known (every user, bots included: their searches were served).
  const latencyOf = (d: VariantData): VariantData["latency"] =>
    d.latency !== undefined && d.perUser?.latencyBelow !== undefined ? { ...d.latency, users: { searches: d.perUser.impressions, below: d.perUser.latencyBelow } } : d.latency;

  const comparisons: VariantVsControl[] = tests.map(({ name, d, perMetric }) => {
    const metricResult = (metric: MetricName): MetricComparison | undefined => {
      const r = perMetric.get(metric);
      if (r === undefined) return undefined;
      const adjustedPValue = adjusted.get(metric)!.get(name)!;
      return {
        lift: r.test.difference,
        relativeLift: r.test.relative,
        pValue: r.test.pValue,
        adjustedPValue,
        significant: r.test.significant,
        significantAdjusted: adjustedPValue < alpha,
        mde: r.test.mde.absolute,
        relativeMde: r.test.mde.relative,
        cupedVarianceReduction: r.varianceReduction,
      };
    };
    const cuped: CupedStatus = !s.cuped ? "not requested" : cupedPossible(d) && [...perMetric.values()].some((r) => r.varianceReduction !== undefined) ? "applied" : "no pre-period data";
    return {
      variant: name,
      enoughData: d.impressions >= s.minImpressions && control!.impressions >= s.minImpressions && d.users >= s.minUsers && control!.users >= s.minUsers,
      searchCtr: metricResult("searchCtr"),
      ctr: metricResult("ctr"),
      noResultsRate: metricResult("noResultsRate"),
      mrr: metricResult("mrr"),
      abandonmentRate: metricResult("abandonmentRate"),
      cuped,
      latency: latencyGuardrail(latencyOf(d), latencyOf(control!), s.confidence, s.latencyThreshold),
    };
  });

  const trustworthy = srm !== undefined && !srmDetected;
  const result = { mode: s.sequential ? ("sequential" as const) : ("fixed horizon" as const), comparisons, searchCtrIntervals, intervals, capping, sampleRatio, srmPValue: srm?.pValue, srmDetected, trustworthy };
  const none = (reason: NoRecommendation): Comparison => ({ ...result, recommendation: "", reason });
  if (!control || control.impressions < s.minImpressions || control.users < s.minUsers || comparisons.length === 0) return none("insufficient data");
  const eligible = comparisons.filter((x) => x.enoughData && x.searchCtr !== undefined);
  if (eligible.length === 0) return none("insufficient data");
  if (!trustworthy) return none("srm");
  const better = eligible.filter((x) => x.searchCtr!.significantAdjusted && x.searchCtr!.lift.value > 0);
  const shippable = better.filter((x) => x.latency.status === "ok");
  if (shippable.length > 0) {
    const best = shippable.reduce((a, b) => (b.searchCtr!.lift.value > a.searchCtr!.lift.value ? b : a));
    return { ...result, recommendation: best.variant, reason: "significant lift" };
  }
  if (better.some((x) => x.latency.status === "regression")) return none("latency regression");
  if (better.some((x) => x.latency.status === "inconclusive")) return none("latency inconclusive");
  if (better.length > 0) return none("latency insufficient data");
  if (eligible.length === comparisons.length && comparisons.every((x) => x.searchCtr!.significantAdjusted && x.searchCtr!.lift.value < 0)) {
    return { ...result, recommendation: s.control, reason: "control is better" };
  }
  return none("not significant");
}
