/**
 * The engine's floor for the benchmark's unary LogClick work: what the embedded engine's own CPU
 * is for the same writes, sent straight to it without the service. Run against a database the
 * benchmark loaded and kept (`--data-dir`), with the server stopped:
 *
 *   node dist/bench/bench.js --events 200000 --skip-unary --data-dir /tmp/floor-data ...
 *   node dist/bench/unary-floor.js --data-dir /tmp/floor-data [--batch 16] [--batches 100]
 *
 * The unary run logs clicks on searches drawn at random from the whole dataset (30 days), as the
 * benchmark's LogClick callers do. Three measurements, each in the engine's CPU per click:
 *
 * - service: the service's own write path (writeEvents) for batches of `--batch` such clicks,
 *   also split by command (each /proc tick shared among the commands in flight);
 * - statements: the least the same counting needs from the engine, one command per kind and
 *   batch: the clicks inserted (with the collection's indexes), each search's click flag set by
 *   impression_id, and plain $inc updates by _id of the rollup documents a newly clicked search
 *   moves (its hour's, day's and hour's query table: three per click);
 * - ping: a command that does nothing, the engine's cost per round trip.
 *
 * Each measurement writes into the database (it is a copy to throw away).
 */
import { parseArgs } from "node:util";
import { MongoClient, type Db, type Document } from "mongodb";
import { validateClick } from "../src/core/events.js";
import { startEmbeddedMongo } from "../src/store/engine/embedded-engine.js";
import { collections } from "../src/store/schema/documents.js";
import { writeEvents } from "../src/store/write/event-writer.js";
import { keyIs } from "../src/store/schema/indexes.js";
import { rollupId } from "../src/store/schema/rollup-documents.js";
import { CommandCpuSplit, engineCpu, formatSplit } from "./engine-cpu.js";

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { "data-dir": { type: "string" }, batch: { type: "string", default: "16" }, batches: { type: "string", default: "100" } }, strict: true });
  if (!values["data-dir"]) throw new Error("--data-dir is required (a database the benchmark loaded, kept with its --data-dir)");
  const batch = Number(values.batch);
  const batches = Number(values.batches);
  const engine = await startEmbeddedMongo({ dbPath: values["data-dir"] });
  const client = new MongoClient(engine.socketUri, { monitorCommands: true, writeConcern: { w: "majority", journal: true } });
  try {
    await client.connect();
    const names = ((await client.db("admin").command({ listDatabases: 1 })).databases as { name: string }[]).map((d) => d.name);
    const dbName = names.find((n) => n.startsWith("bench_") && !n.includes("scratch"));
    if (!dbName) throw new Error(`no bench_* database in ${values["data-dir"]}`);
    const db = client.db(dbName);
    const c = collections(db);
    const searches = await c.impressions.aggregate([{ $sample: { size: 20_000 } }, { $project: { _id: 0, impression_id: 1, user_id: 1, variant: 1, query: 1, query_normalized: 1, results_count: 1, timestamp: 1 } }]).toArray();
    const pick = () => searches[Math.floor(Math.random() * searches.length)]!;
    const measure = async (label: string, clicks: number, run: () => Promise<void>, unit = "click") => {
      const seconds = (await engineCpu(engine.pid, run)).cpuSeconds;
      process.stdout.write(`${label.padEnd(12)} ${((seconds * 1e6) / clicks).toFixed(0).padStart(6)} µs engine CPU per ${unit}\n`);
    };

    // The service's write path, split by command.
    const split = new CommandCpuSplit(client, engine.pid);
    await measure("service", batch * batches, async () => {
      for (let b = 0; b < batches; b++) {
        const items = Array.from({ length: batch }, (_, k) => {
          const s = pick();
          const rank = Math.min(Math.floor(Math.random() * 4), Math.max(0, Number(s.results_count) - 1));
          const event = validateClick({ eventId: `floor-svc-${process.pid}-${b}-${k}`, impressionId: s.impression_id, userId: s.user_id, productId: "p1", rank, searchQuery: s.query, variant: s.variant, responseTimeMs: 50, source: "SEARCH_RESULTS" });
          return { index: k, tracked: { kind: "click" as const, event } };
        });
        await writeEvents(c, items);
      }
    });
    process.stdout.write(formatSplit(split.stop(), batch * batches, "click", batches));

    // The same work's least: one command per kind and batch.
    const wc = { w: "majority", j: true };
    const update = (db: Db, collection: string, updates: Document[]) => db.command({ update: collection, updates, ordered: false, writeConcern: wc });
    await measure("statements", batch * batches, async () => {
      for (let b = 0; b < batches; b++) {
        const picked = Array.from({ length: batch }, pick);
        const docs = picked.map((s, k) => ({ event_id: `floor-min-${process.pid}-${b}-${k}`, impression_id: s.impression_id, user_id: s.user_id, session_id: null, product_id: "p1", rank: 0, search_query: s.query, query_normalized: s.query_normalized, variant: s.variant, response_time_ms: 50, source: "SEARCH_RESULTS", timestamp: new Date() }));
        await db.command({ insert: c.clicks.collectionName, documents: docs, ordered: false, writeConcern: wc });
        await update(db, c.impressions.collectionName, picked.map((s) => ({ q: { impression_id: keyIs(String(s.impression_id)) }, u: { $set: { clicked: true } } })));
        const rollups = picked.flatMap((s) => {
          const t = (s.timestamp as Date).getTime();
          const hour = t - (t % HOUR_MS);
          return [rollupId("h", hour, s.variant), rollupId("d", t - (t % DAY_MS), s.variant), rollupId("qh", hour, s.variant)];
        });
        await update(db, "rollups", rollups.map((id) => ({ q: { _id: id }, u: { $inc: { swc: 1, "fr.0": 1 } } })));
      }
    });
    await measure("ping", 500, async () => {
      for (let i = 0; i < 500; i++) await db.command({ ping: 1 });
    }, "command");
  } finally {
    await client.close();
    await engine.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`unary-floor: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
