/**
 * `click-analytics experiments list|show|create|start|stop|conclude`: experiments as objects
 * (CreateExperiment, GetExperiment, ListExperiments, UpdateExperiment, ConcludeExperiment), and
 * the scorecard lines `report --experiment` prints under the comparison.
 */
import { toJsonString } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  ExperimentMetric,
  ExperimentSchema,
  ExperimentStatus,
  GuardrailState,
  Inference,
  ListExperimentsResponseSchema,
  type Experiment,
  type ExperimentScorecard,
} from "../../client/index.js";
import { integer, percent, table, type Style } from "../format.js";
import {
  COLOR_HELP,
  COLOR_OPTIONS,
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  connectionFrom,
  intFlag,
  numberFlag,
  parseFlags,
  splitFlag,
  stringFlag,
  styleFor,
  timeFlag,
  UsageError,
  withClient,
  type Command,
  type FlagValues,
  type Io,
} from "./common.js";
import type { ReportRequest } from "./report-data.js";

export const EXPERIMENTS_USAGE = `usage: click-analytics experiments <list|show|create|start|stop|conclude> [KEY] [flags]

Experiments defined once on the server: their arms and split, period, primary metric, guardrails
and decision settings; \`report --experiment KEY\` reads the scorecard with them.

  list                    every experiment: key, status, title, arms, start, owner
    --status STATUS       only DRAFT, RUNNING, STOPPED or CONCLUDED ones
  show KEY                one experiment with its settings and its history of changes
  create KEY              define one (DRAFT)
    --name TEXT           its title (required)
    --arms SPEC           variants and weights, e.g. search_v1=1,search_v2=1 (required)
    --control VARIANT     the baseline (default: the first arm)
    --coverage X          share of users in the experiment, in (0, 1] (default 1)
    --hypothesis TEXT     what it should show
    --owner TEXT          who is responsible
    --start TIME          start of its period (default: when it is started)
    --metric METRIC       primary metric: search_ctr (default), ctr, mrr, abandonment_rate,
                          no_results_rate
    --guardrails SPEC     metric=threshold pairs, e.g. p95_latency=0.1,no_results_rate=0.01
    --confidence X        confidence level in [0.5, 0.9999] (default 0.95)
    --mde X               smallest relative lift worth detecting (default 0.05)
    --min-users N         users per arm before the sample counts as enough (default 100)
    --sequential          always-valid inference (safe to look at while it runs)
  start KEY               DRAFT -> RUNNING (its period starts now unless --start was given)
  stop KEY                RUNNING -> STOPPED (its period ends now)
  conclude KEY            STOPPED -> CONCLUDED
    --ship VARIANT        the arm shipped (required)
    --note TEXT           why

  --json                  print the experiment(s) as JSON (proto3 JSON mapping)
${COLOR_HELP}
  -h, --help              this help

${CONNECTION_HELP}`;

const STATUS_WORDS = ["DRAFT", "RUNNING", "STOPPED", "CONCLUDED"] as const;
const METRICS: Record<string, ExperimentMetric> = {
  search_ctr: ExperimentMetric.SEARCH_CTR,
  ctr: ExperimentMetric.CTR,
  no_results_rate: ExperimentMetric.NO_RESULTS_RATE,
  mrr: ExperimentMetric.MRR,
  abandonment_rate: ExperimentMetric.ABANDONMENT_RATE,
  p95_latency: ExperimentMetric.P95_LATENCY,
};

export const metricLabel = (m: ExperimentMetric) => (ExperimentMetric[m] ?? String(m)).toLowerCase();
export const statusLabel = (s: ExperimentStatus) => ExperimentStatus[s] ?? String(s);
const dateLabel = (t: Experiment["startTime"]) => (t ? timestampDate(t).toISOString().replace(/\.000Z$/, "Z") : "-");
const armsLabel = (e: Experiment) => e.arms.map((a) => `${a.variant}${a.variant === e.control ? "*" : ""}=${a.weight}`).join(", ");

/** A list of experiments as a table (the control marked with *). */
export function renderExperimentList(experiments: readonly Experiment[], style: Style): string {
  if (experiments.length === 0) return "No experiments.";
  return table(
    [{ header: "key" }, { header: "status" }, { header: "title" }, { header: "arms (* control)" }, { header: "coverage", align: "right" }, { header: "start" }, { header: "owner" }],
    experiments.map((e) => [e.key, statusLabel(e.status), e.displayName, armsLabel(e), percent(e.coverage ?? 1, 0), dateLabel(e.startTime), e.owner]),
    style,
  );
}

/** One experiment: its settings, then its history. */
export function renderExperiment(e: Experiment, style: Style): string {
  const out = [style.bold(`${e.name}: ${e.displayName} (${statusLabel(e.status)}, ${e.etag})`), ""];
  const row = (k: string, v: string) => out.push(`  ${`${k}:`.padEnd(20)}${v}`);
  if (e.hypothesis) row("hypothesis", e.hypothesis);
  if (e.owner) row("owner", e.owner);
  row("arms", `${armsLabel(e)} (* control)`);
  row("coverage", percent(e.coverage ?? 1, 0));
  row("period", `${dateLabel(e.startTime)} .. ${e.endTime ? dateLabel(e.endTime) : "open"}`);
  row("primary metric", metricLabel(e.primaryMetric === ExperimentMetric.UNSPECIFIED ? ExperimentMetric.SEARCH_CTR : e.primaryMetric));
  row("guardrails", e.guardrails.length === 0 ? "none" : e.guardrails.map((g) => `${metricLabel(g.metric)} <= ${g.threshold}`).join(", "));
  row("confidence", `${(e.confidence ?? 0.95) * 100}%, ${e.sequential ? "sequential" : "fixed-horizon"}${e.cuped ? ", CUPED" : ""}`);
  row("target MDE", `${percent(e.minimumDetectableEffect ?? 0.05, 1)} relative, at least ${integer(e.minUsers ?? 100n)} users per arm`);
  if (e.conclusion) row("conclusion", `shipped ${e.conclusion.shippedVariant} (${e.conclusion.concludedBy}, ${dateLabel(e.conclusion.concludeTime)})${e.conclusion.note ? `: ${e.conclusion.note}` : ""}`);
  out.push("", style.bold("History"));
  out.push(table([{ header: "version", align: "right" }, { header: "time" }, { header: "who" }, { header: "change" }], e.history.map((h) => [String(h.version), dateLabel(h.time), h.actor, h.summary]), style));
  return out.join("\n");
}

const GUARDRAIL_WORD: Record<number, string> = {
  [GuardrailState.OK]: "ok",
  [GuardrailState.VIOLATED]: "VIOLATED",
  [GuardrailState.INCONCLUSIVE]: "inconclusive",
  [GuardrailState.INSUFFICIENT_DATA]: "insufficient data",
};

function duration(s: ExperimentScorecard["runTime"]): string {
  const total = Number(s?.seconds ?? 0n);
  const d = Math.floor(total / 86_400);
  const h = Math.floor((total % 86_400) / 3600);
  const m = Math.floor((total % 3600) / 60);
  return d > 0 ? `${d}d ${h}h` : h > 0 ? `${h}h ${m}m` : `${m}m`;
}

/** The scorecard lines under a comparison: run time, users against the need, health. */
export function renderScorecard(s: ExperimentScorecard, style: Style): string {
  const health = s.health;
  const out = [style.bold(`Experiment ${s.name} (${statusLabel(s.status)}): running ${duration(s.runTime)}`)];
  const need = s.usersNeeded === undefined ? "not yet estimable" : `${integer(s.usersNeeded)} needed for a ${percent(s.minimumDetectableEffect, 1)} relative MDE on ${metricLabel(s.primaryMetric)}`;
  out.push(`Users:        ${integer(s.users)} so far (${need}); smallest arm ${integer(s.minArmUsers)}${s.enoughUsers ? "" : " (below the minimum)"}`);
  const split = Object.entries(s.expectedSplit).map(([v, w]) => `${v}=${w}`).join(", ");
  out.push(`Settings:     split ${split}, latency threshold ${percent(s.latencyThreshold, 0)}, min impressions ${integer(s.minImpressions)}`);
  for (const g of health?.guardrails ?? []) {
    const word = GUARDRAIL_WORD[g.state] ?? "unknown";
    const size = (x: number) => (g.metric === ExperimentMetric.P95_LATENCY ? percent(x, 1) : `${(x * 100).toFixed(2)} points`);
    const worse = g.worsening === undefined ? "" : g.worsening > 0 ? `, worse by ${size(g.worsening)}` : g.worsening < 0 ? `, better by ${size(-g.worsening)}` : ", unchanged";
    out.push(`Guardrail:    ${metricLabel(g.metric)} on ${g.variant} (threshold ${g.threshold}): ${g.state === GuardrailState.VIOLATED ? style.red(word) : word}${worse}`);
  }
  out.push(`Health:       ${health?.healthy ? style.green("healthy") : style.red(`UNHEALTHY: ${health?.problems.join(", ")}`)}`);
  return out.join("\n");
}

/**
 * `report --experiment KEY`: the experiment fills what the flags leave unset. Only flags given
 * explicitly are sent (the window, control, confidence, split, --sequential, --cuped).
 */
export function experimentRequest(values: FlagValues, request: ReportRequest, experiment: string) {
  const explicitWindow = values.days !== undefined || values.start !== undefined;
  return {
    experiment,
    days: explicitWindow ? request.window.days : 0,
    startTime: explicitWindow && request.window.startTime ? timestampFromDate(request.window.startTime) : undefined,
    endTime: explicitWindow && request.window.endTime ? timestampFromDate(request.window.endTime) : undefined,
    control: request.control ?? "",
    ...(request.confidence === undefined ? {} : { confidence: request.confidence }),
    inference: request.sequential ? Inference.SEQUENTIAL : Inference.UNSPECIFIED,
    cuped: request.cuped === true,
    expectedSplit: request.expectedSplit ?? {},
  };
}

function guardrailsFlag(values: FlagValues, usage: string) {
  const raw = stringFlag(values, "guardrails");
  if (raw === undefined) return [];
  return raw.split(",").map((part) => {
    const [name, threshold] = part.split("=");
    const metric = METRICS[(name ?? "").trim().toLowerCase()];
    const t = Number(threshold);
    if (metric === undefined || threshold === undefined || !Number.isFinite(t)) {
      throw new UsageError(`--guardrails must be metric=threshold pairs (metrics: ${Object.keys(METRICS).join(", ")}), got "${raw}"`, usage);
    }
    return { metric, threshold: t };
  });
}

function keyArgument(argv: string[], sub: string, usage: string): [string, string[]] {
  const key = argv[0];
  if (key === undefined || key.startsWith("-")) throw new UsageError(`experiments ${sub} needs the experiment's KEY`, usage);
  return [key, argv.slice(1)];
}

export const experimentsCommand: Command = {
  name: "experiments",
  summary: "define, list, show, start, stop and conclude experiments",
  usage: EXPERIMENTS_USAGE,
  async run(argv: string[], io: Io): Promise<number> {
    const [sub, ...rest] = argv;
    const usage = EXPERIMENTS_USAGE;
    if (sub === "--help" || sub === "-h") {
      io.stdout.write(`${usage}\n`);
      return 0;
    }
    const common = { ...CONNECTION_OPTIONS, ...COLOR_OPTIONS, json: { type: "boolean" } } as const;
    const print = (e: Experiment | undefined, values: FlagValues) => {
      if (e === undefined) return;
      io.stdout.write(values.json === true ? `${toJsonString(ExperimentSchema, e, { prettySpaces: 2 })}\n` : `${renderExperiment(e, styleFor(values, io))}\n`);
    };
    switch (sub) {
      case "list": {
        const values = parseFlags(rest, { ...common, status: { type: "string" }, "page-size": { type: "string" } }, usage, io);
        if (values === undefined) return 0;
        const raw = stringFlag(values, "status")?.toUpperCase();
        if (raw !== undefined && !(STATUS_WORDS as readonly string[]).includes(raw)) throw new UsageError(`--status must be one of ${STATUS_WORDS.join(", ")}, got "${raw}"`, usage);
        const status = raw === undefined ? ExperimentStatus.UNSPECIFIED : ExperimentStatus[raw as (typeof STATUS_WORDS)[number]];
        const pageSize = intFlag(values, "page-size", 100, 1, 1000, usage);
        const conn = connectionFrom(values, usage, io.env);
        const all = await withClient(conn, async (client) => {
          const found: Experiment[] = [];
          let pageToken = "";
          do {
            const page = await client.listExperiments({ status, pageSize, pageToken });
            found.push(...page.experiments);
            pageToken = page.nextPageToken;
          } while (pageToken !== "");
          return found;
        });
        io.stdout.write(values.json === true ? `${toJsonString(ListExperimentsResponseSchema, { $typeName: "clickanalytics.v1.ListExperimentsResponse", experiments: all, nextPageToken: "" }, { prettySpaces: 2 })}\n` : `${renderExperimentList(all, styleFor(values, io))}\n`);
        return 0;
      }
      case "show": {
        const [key, flags] = keyArgument(rest, sub, usage);
        const values = parseFlags(flags, common, usage, io);
        if (values === undefined) return 0;
        const conn = connectionFrom(values, usage, io.env);
        print((await withClient(conn, (client) => client.getExperiment({ name: key }))).experiment, values);
        return 0;
      }
      case "create": {
        const [key, flags] = keyArgument(rest, sub, usage);
        const values = parseFlags(
          flags,
          {
            ...common,
            name: { type: "string" },
            arms: { type: "string" },
            control: { type: "string" },
            coverage: { type: "string" },
            hypothesis: { type: "string" },
            owner: { type: "string" },
            start: { type: "string" },
            metric: { type: "string" },
            guardrails: { type: "string" },
            confidence: { type: "string" },
            mde: { type: "string" },
            "min-users": { type: "string" },
            sequential: { type: "boolean" },
          },
          usage,
          io,
        );
        if (values === undefined) return 0;
        const name = stringFlag(values, "name");
        if (name === undefined) throw new UsageError("experiments create needs --name", usage);
        const arms = splitFlag(values, "arms", usage);
        if (arms === undefined) throw new UsageError("experiments create needs --arms, e.g. search_v1=1,search_v2=1", usage);
        const metricWord = (stringFlag(values, "metric") ?? "search_ctr").toLowerCase();
        const primaryMetric = METRICS[metricWord];
        if (primaryMetric === undefined || primaryMetric === ExperimentMetric.P95_LATENCY) throw new UsageError(`--metric must be one of search_ctr, ctr, mrr, abandonment_rate, no_results_rate; got "${metricWord}"`, usage);
        const start = timeFlag(values, "start", usage);
        const minUsers = values["min-users"] === undefined ? undefined : BigInt(intFlag(values, "min-users", 100, 1, 1_000_000_000, usage));
        const conn = connectionFrom(values, usage, io.env);
        const created = await withClient(conn, (client) =>
          client.createExperiment({
            experimentId: key,
            experiment: {
              displayName: name,
              arms: Object.entries(arms).map(([variant, weight]) => ({ variant, weight })),
              control: stringFlag(values, "control") ?? "",
              coverage: numberFlag(values, "coverage", undefined, 0, 1, usage),
              hypothesis: stringFlag(values, "hypothesis") ?? "",
              owner: stringFlag(values, "owner") ?? "",
              startTime: start && timestampFromDate(start),
              primaryMetric,
              guardrails: guardrailsFlag(values, usage),
              confidence: numberFlag(values, "confidence", undefined, 0, 1, usage, true),
              minimumDetectableEffect: numberFlag(values, "mde", undefined, 0, 10, usage, true),
              minUsers,
              sequential: values.sequential === true,
            },
          }),
        );
        print(created.experiment, values);
        return 0;
      }
      case "start":
      case "stop": {
        const [key, flags] = keyArgument(rest, sub, usage);
        const values = parseFlags(flags, common, usage, io);
        if (values === undefined) return 0;
        const conn = connectionFrom(values, usage, io.env);
        const status = sub === "start" ? ExperimentStatus.RUNNING : ExperimentStatus.STOPPED;
        const updated = await withClient(conn, (client) => client.updateExperiment({ experiment: { name: `experiments/${key.replace(/^experiments\//, "")}`, status }, updateMask: { paths: ["status"] } }));
        print(updated.experiment, values);
        return 0;
      }
      case "conclude": {
        const [key, flags] = keyArgument(rest, sub, usage);
        const values = parseFlags(flags, { ...common, ship: { type: "string" }, note: { type: "string" } }, usage, io);
        if (values === undefined) return 0;
        const ship = stringFlag(values, "ship");
        if (ship === undefined) throw new UsageError("experiments conclude needs --ship VARIANT (the arm shipped; the control when nothing is)", usage);
        const conn = connectionFrom(values, usage, io.env);
        const done = await withClient(conn, (client) => client.concludeExperiment({ name: key, shippedVariant: ship, note: stringFlag(values, "note") ?? "" }));
        print(done.experiment, values);
        return 0;
      }
      default:
        throw new UsageError(sub === undefined ? "experiments needs a subcommand" : `unknown subcommand "${sub}"`, usage);
    }
  },
};
