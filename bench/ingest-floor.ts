/**
 * The engine's floor for the benchmark's StreamEvents ingest: the least engine CPU per event the
 * same counting needs, sent straight to the engine without the service, next to a plain
 * insertMany and the service's own write path, on the same events.
 *
 *   node dist/bench/ingest-floor.js [--events 200000] [--writers 4] [--batch 1000] [--json PATH]
 *
 * Starts its own embedded engine on a fresh temp dir (removed at exit) and generates the
 * benchmark's dataset (generateEvents: 30 days, 10,000 users, seed 1), in time order, cut into
 * batches of `--batch` that `--writers` concurrent writers take in turn (as the benchmark's
 * StreamEvents streams do; most clicks land in their search's batch). Each measurement writes
 * into a fresh database with the service's indexes (ensureIndexes), every write with the
 * server's write concern (w: "majority", j: true):
 *
 * - raw: insertMany of the events' documents (raw-documents.ts, the benchmark's raw insert), one
 *   per collection and batch.
 * - statements: the least the same counting needs, one command per kind and batch:
 *   - the clicks inserted, and the impressions, those with a click in the same batch stored
 *     already `clicked: true` (as writeEvents does);
 *   - one update setting `clicked: true` by impression_id on each search first clicked in a
 *     later batch (the dataset tells which; the service has to find out);
 *   - one update of plain `$inc`s by _id, upserted, one statement per rollup document the batch
 *     moves: per (hour, variant) of its events and of the searches it flags, the hour's and the
 *     day's document and the hour's query table, each incremented once with the batch's totals
 *     (searches, clicks, searches with clicks; in the query table one counter of each query row
 *     the batch moves, under the service's own field names).
 *   Why it is a floor: whatever keeps these event documents with these indexes and these rollup
 *   documents has at least these writes to make per batch (every event inserted, every clicked
 *   search marked, every rollup document and query row the batch moves changed once), and here
 *   each kind is one command and each document one plain statement with a few counters. Left
 *   out, though the service needs them to count exactly, completely and once: the once-only
 *   guard (the `ap` marker filter and $push), the pending-batch record, user numbering
 *   (user_ids), user bitmaps and per-user buckets, the version bump (`ver`, which the rollups'
 *   index holds), histograms, latency sketches, min/max and first-click fields (the service's
 *   statements carry hundreds of fields, these a few), every read (the service reads the stored
 *   clicks of every search of the batch, its claims and the interleaved searches) and the
 *   interleaving versions. It is the floor of this schema, not of another one (fewer indexes or
 *   rollup documents would have a lower one).
 * - documents: the service's event documents alone (batchDocuments: as writeEvents stores them,
 *   with the batch marker, normalised queries and in-batch linking), one insert per collection
 *   and batch, like raw: what storing the events as the service keeps them costs, before any
 *   rollup.
 * - fields: the statements' commands, but with what the service writes in them: its event
 *   documents (batchDocuments) and, per rollup document, exactly the increments of its own update
 *   (RollupDelta: per-user buckets, user bitmap words, histograms, sketches, first-click fields),
 *   without the once-only guard; user numbers handed out in memory. What the service's documents
 *   and fields cost the engine with no other statement and no read.
 * - service: writeEvents (the service's write path: src/store/write/event-writer.ts) with the
 *   events validated as src/server/ingest.ts does, on a database opened as ClickStore.open does
 *   before its first write (ensureIndexes, markQueryTables, upgradeRollups; no lease, no
 *   watchdog, no group commit: a batch of 250 or more skips its queue anyway), split by command
 *   (with several commands in flight, an estimate: see CommandCpuSplit).
 * - ping: engine CPU per no-op command, the engine's cost per round trip.
 *
 * Engine CPU is the engine process's own (/proc/<pid>/stat, engine-cpu.ts), per event. Each write
 * phase starts after a checkpoint (fsync, not counted) and ends with one (counted, and shown on
 * its own): what a phase leaves in the cache to write out is its cost too, and a periodic
 * checkpoint would otherwise land in one phase and not another.
 */
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseCommandLine, runTool, UsageError } from "./command-line.js";
import { MongoClient, type Db, type Document } from "mongodb";
import { chunks, generateEvents, type ClickRecord, type DatasetEvent, type ImpressionRecord } from "../src/cli/traffic-generator.js";
import type { WriteItem } from "../src/core/batch.js";
import { normalizeQuery, validateClick, validateImpression } from "../src/core/events.js";
import { startEmbeddedMongo } from "../src/store/engine/embedded-engine.js";
import { collections, type ClickDocument, type ImpressionDocument } from "../src/store/schema/documents.js";
import { ensureIndexes, keyIs } from "../src/store/schema/indexes.js";
import { queryField } from "../src/store/schema/query-table-fields.js";
import { DAY_MS, floorTo, HOUR_MS, rollupId, ROLLUPS } from "../src/store/schema/rollup-documents.js";
import { markQueryTables } from "../src/store/read/query-table-meta.js";
import { upgradeRollups } from "../src/store/rollups/rollup-upgrade.js";
import { batchDocuments, writeEvents } from "../src/store/write/event-writer.js";
import { RollupDelta } from "../src/store/rollups/rollup-delta.js";
import { CommandCpuSplit, engineCpu, formatSplit, type CommandCpu } from "./engine-cpu.js";
import { toDocument } from "./raw-documents.js";

/** The benchmark's dataset defaults (bench.ts). */
const DATASET = { days: 30, users: 10_000, seed: 1 };
const CLICKS = "click_events";
const IMPRESSIONS = "impressions";
const WRITE_CONCERN = { w: "majority", j: true } as const;
const PINGS = 1_000;

interface Phase {
  microsPerEvent: number;
  /** Of which the closing checkpoint (fsync). */
  checkpointMicrosPerEvent: number;
  /** Wall time of the writes (without the checkpoint). */
  seconds: number;
  eventsPerSecond: number;
  commandsPerBatch: number;
  /** The split by command (engine-cpu.ts), with the CPU while none was in flight. */
  commands: (CommandCpu & { microsPerEvent: number; perBatch: number })[];
}

/** A batch's write, prepared before the clock starts: only the engine's work is timed. */
type Write = () => Promise<unknown>;

const USAGE = `usage: node dist/bench/ingest-floor.js [--events 200000] [--writers 4] [--batch 1000] [--json PATH]
Engine CPU per event of a raw insert, the least statements, the service's documents and fields,
and the service's own write path, on the benchmark's events; --json also writes them to PATH.`;

const OPTIONS = {
  help: { type: "boolean", default: false },
  events: { type: "string", default: "200000" },
  writers: { type: "string", default: "4" },
  batch: { type: "string", default: "1000" },
  json: { type: "string" },
} as const;

async function main(): Promise<void> {
  const { values } = parseCommandLine(OPTIONS, USAGE);
  if (values.help) return void process.stdout.write(`${USAGE}\n`);
  const positive = (name: string, raw: string) => {
    const n = Number(raw.replace(/[_,]/g, ""));
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} must be a positive integer, got "${raw}"\n${USAGE}`);
    return n;
  };
  const o = { events: positive("events", values.events), writers: positive("writers", values.writers), batch: positive("batch", values.batch) };

  const dir = await mkdtemp(path.join(os.tmpdir(), "ingest-floor-"));
  const engine = await startEmbeddedMongo({ dbPath: dir });
  const client = new MongoClient(engine.socketUri, { monitorCommands: true, writeConcern: { w: "majority", journal: true } });
  let cleaning: Promise<void> | undefined;
  const cleanUp = () => (cleaning ??= client.close().catch(() => undefined).then(() => engine.stop()).then(() => rm(dir, { recursive: true, force: true })));
  process.once("SIGINT", () => void cleanUp().finally(() => process.exit(130)));
  try {
    await client.connect();
    const admin = client.db("admin");
    const events = [...generateEvents({ events: o.events, ...DATASET })];
    const batches = [...chunks(events, o.batch)];
    const { plans, dataset } = planStatements(batches);
    log(`${o.events} events (${dataset.clicks} clicks, ${dataset.impressions} searches) in ${batches.length} batches of ${o.batch}, ${o.writers} writers; ${pct(dataset.clicksInTheirSearchBatch)} of clicks in their search's batch, ${dataset.laterFlagsPerBatch.toFixed(1)} searches flagged later and ${dataset.rollupDocumentsPerBatch.toFixed(1)} rollup documents per batch`);

    /** One fresh database per phase: writes `prepare` returns for each batch, timed with the closing checkpoint. */
    const phase = async (name: string, prepare: (db: Db) => Promise<Write[]>): Promise<Phase> => {
      const db = client.db(`floor_${name}`);
      await db.dropDatabase();
      const writes = await prepare(db);
      await admin.command({ fsync: 1 });
      const split = new CommandCpuSplit(client, engine.pid);
      let seconds = 0;
      const { cpuSeconds } = await engineCpu(engine.pid, async () => {
        const started = performance.now();
        await inTurn(writes, o.writers);
        seconds = (performance.now() - started) / 1000;
        await admin.command({ fsync: 1 });
      });
      const rows = split.stop();
      await db.dropDatabase();
      return figures(rows, cpuSeconds, seconds, o.events, batches.length);
    };

    // Warm-up (not measured): so that the raw phase, measured first, does not also carry whatever
    // the engine's first writes after its start cost.
    await phase("warmup", async (db) => {
      await ensureIndexes(collections(db));
      return rawWrites(db, batches.slice(0, 20));
    });

    const raw = await phase("raw", async (db) => {
      await ensureIndexes(collections(db));
      return rawWrites(db, batches);
    });
    report("raw", raw, o.events, batches.length);

    const statements = await phase("statements", async (db) => {
      await ensureIndexes(collections(db));
      return plans.map((p) => () => statementWrite(db, p));
    });
    report("statements", statements, o.events, batches.length, raw);

    const documents = await phase("documents", async (db) => {
      await ensureIndexes(collections(db));
      return batches.map((batch, b) => {
        const plan = servicePlan(batch, b, []);
        return () => statementWrite(db, plan);
      });
    });
    report("documents", documents, o.events, batches.length, raw);

    const fields = await phase("fields", async (db) => {
      await ensureIndexes(collections(db));
      return fieldsWrites(db, batches, plans, events);
    });
    report("fields", fields, o.events, batches.length, raw);

    const service = await phase("service", async (db) => {
      const c = collections(db);
      await ensureIndexes(c);
      await markQueryTables(c);
      await upgradeRollups(c);
      return batches.map((batch) => {
        const items = batch.map(toWriteItem);
        return () => writeEvents(c, items, undefined, "ingest-floor");
      });
    });
    report("service", service, o.events, batches.length, raw);

    const ping = await engineCpu(engine.pid, async () => {
      for (let i = 0; i < PINGS; i++) await admin.command({ ping: 1 });
    });
    const pingMicros = (ping.cpuSeconds * 1e6) / PINGS;
    process.stdout.write(`${"ping".padEnd(12)} ${pingMicros.toFixed(0).padStart(7)} µs engine CPU per command\n`);

    if (values.json) {
      const ratios = { statementsToRaw: statements.microsPerEvent / raw.microsPerEvent, documentsToRaw: documents.microsPerEvent / raw.microsPerEvent, fieldsToRaw: fields.microsPerEvent / raw.microsPerEvent, serviceToRaw: service.microsPerEvent / raw.microsPerEvent };
      const out = { ...o, dataset: { ...DATASET, ...dataset }, writeConcern: WRITE_CONCERN, raw, statements, documents, fields, service, ping: { microsPerCommand: pingMicros }, ratios };
      await mkdir(path.dirname(path.resolve(values.json)), { recursive: true });
      await writeFile(values.json, JSON.stringify(out, null, 2) + "\n");
    }
  } finally {
    await cleanUp();
  }
}

const log = (message: string) => process.stderr.write(`ingest-floor: ${message}\n`);
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

/** Runs the writes in order, `writers` at a time: each writer takes the next one when it is done. */
async function inTurn(writes: readonly Write[], writers: number): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: writers }, async () => {
    for (let i = next++; i < writes.length; i = next++) await writes[i]!();
  }));
}

function figures(rows: CommandCpu[], cpuSeconds: number, seconds: number, events: number, batches: number): Phase {
  const perEvent = (s: number) => (s * 1e6) / events;
  const attributed = rows.reduce((sum, r) => sum + r.cpuSeconds, 0);
  // The engine's CPU while none of these commands was in flight (background work, the settle time).
  const commands = [...rows, { name: "(none in flight)", cpuSeconds: Math.max(0, cpuSeconds - attributed), count: 0 }];
  return {
    microsPerEvent: perEvent(cpuSeconds),
    checkpointMicrosPerEvent: perEvent(rows.find((r) => r.name === "fsync")?.cpuSeconds ?? 0),
    seconds,
    eventsPerSecond: events / seconds,
    commandsPerBatch: rows.filter((r) => r.name !== "fsync").reduce((sum, r) => sum + r.count, 0) / batches,
    commands: commands.map((r) => ({ ...r, microsPerEvent: perEvent(r.cpuSeconds), perBatch: r.count / batches })),
  };
}

function report(label: string, p: Phase, events: number, batches: number, raw?: Phase): void {
  const ratio = raw ? `  ${(p.microsPerEvent / raw.microsPerEvent).toFixed(2)}x raw` : "";
  process.stdout.write(
    `${label.padEnd(12)} ${p.microsPerEvent.toFixed(1).padStart(7)} µs engine CPU per event${ratio}  (closing checkpoint ${p.checkpointMicrosPerEvent.toFixed(1)}; ` +
      `${p.commandsPerBatch.toFixed(1)} commands per batch; ${Math.round(p.eventsPerSecond)} events/s)\n`,
  );
  process.stdout.write(formatSplit(p.commands, events, "event", batches));
}

// ---------------------------------------------------------------------------------------------
// raw

function rawWrites(db: Db, batches: readonly DatasetEvent[][]): Write[] {
  return batches.map((batch) => {
    const clicks = batch.filter((e) => e.kind === "click").map(toDocument);
    const impressions = batch.filter((e) => e.kind === "impression").map(toDocument);
    return () =>
      Promise.all([
        clicks.length > 0 ? db.collection(CLICKS).insertMany(clicks, { ordered: false }) : undefined,
        impressions.length > 0 ? db.collection(IMPRESSIONS).insertMany(impressions, { ordered: false }) : undefined,
      ]);
  });
}

// ---------------------------------------------------------------------------------------------
// statements

interface StatementPlan {
  clicks: Document[];
  impressions: Document[];
  /** Searches of earlier batches this batch's clicks flag first. */
  flags: string[];
  /** Rollup document id -> its increments. */
  rollups: Map<string, Record<string, number>>;
}

/** What each batch sends in the statements phase, and what the dataset looks like batch by batch. */
function planStatements(batches: readonly DatasetEvent[][]) {
  const searches = new Map<string, ImpressionRecord>();
  const flagged = new Set<string>();
  let clicks = 0;
  let clicksHere = 0;
  let flags = 0;
  let documents = 0;
  const plans = batches.map((batch): StatementPlan => {
    const here = new Set<string>();
    for (const e of batch) if (e.kind === "impression") (searches.set(e.impressionId, e), here.add(e.impressionId));
    const batchClicks = batch.filter((e): e is ClickRecord => e.kind === "click");
    const clickedHere = new Set(batchClicks.filter((k) => here.has(k.impressionId)).map((k) => k.impressionId));
    const later = [...new Set(batchClicks.filter((k) => !here.has(k.impressionId) && !flagged.has(k.impressionId)).map((k) => k.impressionId))];
    for (const id of [...clickedHere, ...later]) flagged.add(id);

    const rollups = new Map<string, Record<string, number>>();
    const inc = (id: string, field: string) => {
      let doc = rollups.get(id);
      if (!doc) rollups.set(id, (doc = {}));
      doc[field] = (doc[field] ?? 0) + 1;
    };
    /** The hour's and day's documents of `t` and the hour's query table of `search`. */
    const count = (t: number, search: ImpressionRecord, field: string, queryCounter: "i" | "c" | "s") => {
      inc(rollupId("h", floorTo(t, HOUR_MS), search.variant), field);
      inc(rollupId("d", floorTo(t, DAY_MS), search.variant), field);
      inc(rollupId("qh", floorTo(search.timestampMs, HOUR_MS), search.variant), queryField(normalizeQuery(search.query), queryCounter));
    };
    for (const e of batch) {
      if (e.kind === "impression") {
        count(e.timestampMs, e, "imp", "i");
        if (clickedHere.has(e.impressionId)) count(e.timestampMs, e, "swc", "s");
      } else {
        count(e.timestampMs, searches.get(e.impressionId)!, "clk", "c");
      }
    }
    for (const id of later) count(searches.get(id)!.timestampMs, searches.get(id)!, "swc", "s");

    clicks += batchClicks.length;
    clicksHere += batchClicks.filter((k) => here.has(k.impressionId)).length;
    flags += later.length;
    documents += rollups.size;
    return {
      clicks: batchClicks.map(toDocument),
      impressions: batch.filter((e) => e.kind === "impression").map((e) => (clickedHere.has(e.impressionId) ? { ...toDocument(e), clicked: true } : toDocument(e))),
      flags: later,
      rollups,
    };
  });
  const events = batches.reduce((n, b) => n + b.length, 0);
  const dataset = {
    clicks,
    impressions: events - clicks,
    clicksInTheirSearchBatch: clicks > 0 ? clicksHere / clicks : 0,
    laterFlagsPerBatch: flags / batches.length,
    rollupDocumentsPerBatch: documents / batches.length,
  };
  return { plans, dataset };
}

/** `rollupUpdates`: the rollup statements to send instead of the plan's plain $incs. */
async function statementWrite(db: Db, p: StatementPlan, rollupUpdates?: Document[]): Promise<void> {
  const command = (name: "insert" | "update", collection: string, key: "documents" | "updates", list: Document[]) =>
    list.length === 0 ? undefined : db.command({ [name]: collection, [key]: list, ordered: false, writeConcern: WRITE_CONCERN });
  await Promise.all([command("insert", CLICKS, "documents", p.clicks), command("insert", IMPRESSIONS, "documents", p.impressions)]);
  await Promise.all([
    command("update", IMPRESSIONS, "updates", p.flags.map((id) => ({ q: { impression_id: keyIs(id) }, u: { $set: { clicked: true } } }))),
    command("update", ROLLUPS, "updates", rollupUpdates ?? [...p.rollups].map(([id, $inc]) => ({ q: { _id: id }, u: { $inc }, upsert: true }))),
  ]);
}

// ---------------------------------------------------------------------------------------------
// fields

/**
 * The statements' writes with the service's own documents and fields: the events as writeEvents
 * stores them (batchDocuments: the batch marker, normalised queries, a search clicked in its own
 * batch stored clicked with its linked and first clicks), and each rollup document the batch
 * moves incremented once with exactly the increments the service's update carries (RollupDelta:
 * per-user buckets, user bitmap words, histograms, sketches, first-click fields, min/max, the
 * version bump), unguarded (no marker filter or `ap`). User numbers are handed out in memory.
 */
function fieldsWrites(db: Db, batches: readonly DatasetEvent[][], plans: readonly StatementPlan[], events: readonly DatasetEvent[]): Write[] {
  const numbers = new Map<string, number>();
  const number = (user: string) => numbers.get(user) ?? (numbers.set(user, numbers.size), numbers.size - 1);
  const searches = new Map<string, ImpressionRecord>();
  for (const e of events) if (e.kind === "impression") searches.set(e.impressionId, e);
  return batches.map((batch, b) => {
    const plan = servicePlan(batch, b, plans[b]!.flags);
    const delta = new RollupDelta();
    for (const doc of plan.clicks as ClickDocument[]) delta.addClick(doc, number(doc.user_id));
    for (const doc of plan.impressions as ImpressionDocument[]) delta.addImpression(doc, number(doc.user_id));
    for (const id of plan.flags) {
      const s = searches.get(id)!;
      delta.clicked({ timestamp: new Date(s.timestampMs), variant: s.variant, query_normalized: normalizeQuery(s.query), user_id: s.userId });
    }
    const updates = delta.unguardedUpdates();
    return () => statementWrite(db, plan, updates);
  });
}

/** Batch `b`'s events as the service's own documents (batchDocuments), with the searches it flags; no rollup increments of its own. */
function servicePlan(batch: readonly DatasetEvent[], b: number, flags: string[]): StatementPlan {
  const { clicks, impressions } = batchDocuments(batch.map(toWriteItem), `floor:${b}`);
  return { clicks: clicks.map((x) => x.doc), impressions: impressions.map((x) => x.doc), flags, rollups: new Map() };
}

// ---------------------------------------------------------------------------------------------
// service

/** The event as src/server/ingest.ts validates it (from its StreamEvents form). */
function toWriteItem(e: DatasetEvent, index: number): WriteItem {
  const timestamp = new Date(e.timestampMs);
  if (e.kind === "click") {
    const { eventId, impressionId, userId, sessionId, productId, rank, searchQuery, variant, responseTimeMs, source } = e;
    return { index, tracked: { kind: "click", event: validateClick({ eventId, impressionId, userId, sessionId, productId, rank, searchQuery, variant, responseTimeMs, source, timestamp }) } };
  }
  const { eventId, impressionId, userId, sessionId, query, variant, resultsCount, responseTimeMs, teams } = e;
  return { index, tracked: { kind: "impression", event: validateImpression({ eventId, impressionId, userId, sessionId, query, variant, resultsCount, responseTimeMs, timestamp, teams }) } };
}

runTool("ingest-floor", main);
