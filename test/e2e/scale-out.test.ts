/**
 * Scale-out with real processes: three service instances over one MongoDB (the embedded engine,
 * started once here), writes spread across them (LogEvents and unary calls, all with event ids),
 * one instance SIGKILLed mid-ingest, with a batch half-way, and restarted on its spool directory
 * (so it is the same instance) while the others read — repairs of its batches race. Afterwards
 * every instance answers the same exact numbers, computed here from the events MongoDB stored;
 * and all instances asked for top queries over finished days at the same moment (each compacts
 * the day tables) give identical exact rows.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MongoClient } from "mongodb";
import { afterAll, beforeAll, expect, it } from "vitest";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClickAnalyticsClient, Status, type ClickAnalyticsClient, type ServiceError } from "../../src/client/index.js";
import { startEmbeddedMongo, type EmbeddedMongo } from "../../src/store/engine/embedded-engine.js";
import { freePort, startServerProcess, type ServerProcess } from "../support/server-process.js";

const DB = "scale";
let dir: string;
let uri: string;
let engine: EmbeddedMongo;
let mongo: MongoClient;
const servers: (ServerProcess | undefined)[] = [];
const everyServer: ServerProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ca-scale-"));
  const port = await freePort();
  engine = await startEmbeddedMongo({ dbPath: join(dir, "db"), port });
  uri = `mongodb://127.0.0.1:${port}/?directConnection=true`;
  mongo = new MongoClient(uri);
});
afterAll(async () => {
  for (const s of everyServer) await s.stop("SIGKILL");
  await mongo?.close();
  await engine?.stop();
  await rm(dir, { recursive: true, force: true });
});

const spoolOf = (i: number) => join(dir, `spool-${i}`);
async function start(i: number): Promise<ServerProcess> {
  const s = await startServerProcess({ MONGODB_URI: uri, MONGODB_DB: DB, SPOOL_DIR: spoolOf(i) });
  servers[i] = s;
  everyServer.push(s);
  return s;
}

/** What the test sent: every event by id, to compute the expected answers from the stored ids. */
interface Sent {
  kind: "click" | "impression";
  id: string;
  user: string;
  variant: string;
  query: string;
  impressionId?: string;
  noResults?: boolean;
}
const sent = new Map<string, Sent>();

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** Events from 3 days ago up to now, so finished days have query tables to compact. */
const when = (n: number) => new Date(Date.now() - ((n * 7_919_113) % (3 * DAY)));

/** One search and (for most) a click on it: same user, variant and query. */
function search(prefix: string, n: number) {
  const user = `u${n % 37}`;
  const variant = n % 3 === 0 ? "B" : "A";
  const query = `query ${n % 23}`;
  const at = when(n);
  const imp: Sent = { kind: "impression", id: `${prefix}-i${n}`, user, variant, query, noResults: n % 11 === 0 };
  const clicked = n % 4 !== 0;
  const clk: Sent = { kind: "click", id: `${prefix}-c${n}`, user, variant, query, impressionId: imp.id };
  const impression = { eventId: imp.id, userId: user, query, variant, resultsCount: imp.noResults ? 0 : 10, responseTimeMs: 5 + (n % 50), timestamp: timestampFromDate(at) };
  const click = { eventId: clk.id, impressionId: imp.id, userId: user, productId: `p${n % 9}`, rank: 1 + (n % 5), searchQuery: query, variant, responseTimeMs: 5, timestamp: timestampFromDate(new Date(at.getTime() + 1_000)) };
  return { events: clicked ? [imp, clk] : [imp], impression, click: clicked ? click : undefined };
}

/**
 * A client of instance `i` (re-resolved at every call, so a restarted instance is reached at its
 * new address), sending until stopped: `batch` uses LogEvents (5 searches a call), otherwise
 * unary LogImpression/LogClick. A call that failed is sent again with the same ids until
 * acknowledged, like a real client; what was in flight when the run stopped is `unknown`.
 */
function load(i: number, prefix: string, batch: boolean) {
  const acked: string[] = [];
  const unknown: string[] = [];
  const failures: number[] = [];
  const clients = new Map<ServerProcess, ClickAnalyticsClient>();
  const client = () => {
    const s = servers[i];
    if (s === undefined || s.child.exitCode !== null || s.child.signalCode !== null) return undefined;
    let c = clients.get(s);
    if (!c) clients.set(s, (c = createClickAnalyticsClient(s.address)));
    return c;
  };
  let running = true;
  let n = 0;
  const attempt = async (call: (c: ClickAnalyticsClient) => Promise<unknown>): Promise<boolean> => {
    const c = client();
    if (!c) return false;
    try {
      await call(c);
      return true;
    } catch (error) {
      if (typeof (error as Partial<ServiceError>).code !== "number") throw error;
      failures.push((error as ServiceError).code);
      return false;
    }
  };
  const done = (async () => {
    while (running) {
      const searches = Array.from({ length: batch ? 5 : 1 }, () => search(prefix, n++));
      const ids = searches.flatMap((s) => s.events.map((e) => e.id));
      for (const s of searches) for (const e of s.events) sent.set(e.id, e);
      let ok = false;
      while (!ok && running) {
        if (batch) {
          const events = searches.flatMap((s) => [{ kind: { case: "impression" as const, value: s.impression } }, ...(s.click ? [{ kind: { case: "click" as const, value: s.click } }] : [])]);
          ok = await attempt(async (c) => {
            const res = await c.logEvents({ events }, { timeoutMs: 10_000 });
            expect(res.accepted + res.duplicates).toBe(BigInt(events.length));
          });
        } else {
          const [s] = searches;
          ok = (await attempt((c) => c.logImpression(s!.impression, { timeoutMs: 10_000 }))) && (!s!.click || (await attempt((c) => c.logClick(s!.click!, { timeoutMs: 10_000 }))));
        }
        if (!ok) await new Promise((r) => setTimeout(r, 50));
      }
      (ok ? acked : unknown).push(...ids);
    }
  })();
  return {
    acked,
    unknown,
    failures,
    stop: async () => {
      running = false;
      await done;
      for (const c of clients.values()) c.close();
    },
  };
}

/** The answers every instance must give, from the events MongoDB holds (each must be one the test sent). */
function expected(stored: ReadonlySet<string>) {
  const events = [...stored].map((id) => sent.get(id)!);
  const imps = events.filter((e) => e.kind === "impression");
  const clicks = events.filter((e) => e.kind === "click");
  const clickedSearches = new Set(clicks.map((c) => c.impressionId));
  const totals = (of: (e: Sent) => boolean) => {
    const i = imps.filter(of);
    const c = clicks.filter(of);
    return {
      impressions: i.length,
      clicks: c.length,
      searchesWithClicks: i.filter((e) => clickedSearches.has(e.id)).length,
      noResults: i.filter((e) => e.noResults).length,
      users: new Set([...i, ...c].map((e) => e.user)).size,
    };
  };
  const variantsOf = new Map<string, Set<string>>();
  for (const e of events) variantsOf.set(e.user, (variantsOf.get(e.user) ?? new Set()).add(e.variant));
  const queries = new Map<string, { searches: number; clicks: number; noResults: number }>();
  for (const e of events) {
    let q = queries.get(e.query);
    if (!q) queries.set(e.query, (q = { searches: 0, clicks: 0, noResults: 0 }));
    if (e.kind === "impression") {
      q.searches++;
      if (e.noResults) q.noResults++;
    } else q.clicks++;
  }
  return {
    overall: totals(() => true),
    variants: { A: totals((e) => e.variant === "A"), B: totals((e) => e.variant === "B") },
    usersInSeveralVariants: [...variantsOf.values()].filter((v) => v.size > 1).length,
    queries,
  };
}

const ctrOf = (t: { impressions: bigint; clicks: bigint; searchesWithClicks: bigint; noResultsSearches: bigint; users: bigint }) => ({
  impressions: Number(t.impressions),
  clicks: Number(t.clicks),
  searchesWithClicks: Number(t.searchesWithClicks),
  noResults: Number(t.noResultsSearches),
  users: Number(t.users),
});

it("three instances over one MongoDB, one SIGKILLed mid-ingest and restarted: every instance answers the same exact numbers", { timeout: 90_000 }, async () => {
  await Promise.all([0, 1, 2].map(start));
  const loads = [0, 1, 2].flatMap((i) => [load(i, `s${i}-batch`, true), load(i, `s${i}-unary`, false)]);
  await new Promise((r) => setTimeout(r, 2_000));

  // Kill instance 1 with one of its batches half-way (its events stored, not yet counted):
  // frozen first (SIGSTOP), so it cannot finish the batch between our look and the kill.
  const db = mongo.db(DB);
  const instance = (await readFile(join(spoolOf(1), "instance-id"), "utf8")).trim();
  const pending = db.collection<{ _id: string; w?: string }>("pending_batches");
  const halfDone = async () => {
    for (const { _id, w } of await pending.find({}).toArray()) {
      if (!w?.startsWith(`${instance}.`)) continue;
      if ((await db.collection("click_events").countDocuments({ b: _id })) + (await db.collection("impressions").countDocuments({ b: _id })) > 0) return true;
    }
    return false;
  };
  const victim = servers[1]!;
  const leases = db.collection<{ _id: string; instance: string; expires: Date }>("writer_leases");
  const killedRun = (await leases.findOne({ instance }))!._id;
  let left = false;
  for (const until = Date.now() + 20_000; !left && Date.now() < until; ) {
    while (!(await halfDone()) && Date.now() < until);
    victim.child.kill("SIGSTOP");
    await new Promise((r) => setTimeout(r, 150));
    left = await halfDone();
    if (!left) victim.child.kill("SIGCONT");
  }
  expect(await victim.stop("SIGKILL")).toBeNull();
  servers[1] = undefined;
  expect(left, "the kill left a batch of instance 1 half-way").toBe(true);

  // Ingest goes on through the others; then instance 1 restarts (its start finishes its dead
  // run's batches) while instances 0 and 2 read and finish the same batches: they race.
  await new Promise((r) => setTimeout(r, 1_000));
  const readers = [servers[0]!, servers[2]!].map((s) => createClickAnalyticsClient(s.address));
  let restarting = true;
  const racing = readers.map(async (c) => {
    let reads = 0;
    while (restarting) {
      await c.getCtr({ days: 7 });
      reads++;
    }
    return reads;
  });
  await start(1);
  restarting = false;
  expect(Math.min(...(await Promise.all(racing)))).toBeGreaterThan(0);
  readers.forEach((c) => c.close());
  // The same instance (its spool directory's id), in a new run: the killed run's lease is over.
  const live = await leases.find({ instance, $expr: { $gt: ["$expires", "$$NOW"] } }).toArray();
  expect(live.map((l) => l._id)).toHaveLength(1);
  expect(live[0]!._id).not.toBe(killedRun);
  await new Promise((r) => setTimeout(r, 1_500));
  await Promise.all(loads.map((l) => l.stop()));

  // Clients saw only UNAVAILABLE (the killed instance); nothing else.
  expect(loads.flatMap((l) => l.failures).filter((code) => code !== Status.UNAVAILABLE).map((code) => Status[code])).toEqual([]);
  const acked = loads.flatMap((l) => l.acked);
  const unknown = new Set(loads.flatMap((l) => l.unknown));
  expect(acked.length).toBeGreaterThan(500);

  // Stored: every acknowledged event exactly once, nothing the test did not send.
  const stored = new Set<string>();
  for (const name of ["click_events", "impressions"]) {
    const ids = (await db.collection(name).find({}, { projection: { _id: 0, event_id: 1 } }).toArray()).map((d) => String(d.event_id));
    expect(new Set(ids).size, `${name}: an event stored twice`).toBe(ids.length);
    ids.forEach((id) => stored.add(id));
  }
  expect(acked.filter((id) => !stored.has(id))).toEqual([]);
  expect([...stored].filter((id) => !sent.has(id) || (!acked.includes(id) && !unknown.has(id)))).toEqual([]);
  const want = expected(stored);

  const clients = [0, 1, 2].map((i) => createClickAnalyticsClient(servers[i]!.address));
  try {
    // All at the same moment, over finished days: each instance compacts the day tables itself.
    const asked = { days: 7, limit: 100 };
    const tops = await Promise.all(clients.map((c) => c.getTopQueries(asked)));
    expect(await db.collection("rollups").countDocuments({ g: "qd" }), "day tables were compacted").toBeGreaterThan(0);
    const rows = (t: (typeof tops)[number]) => t.queries.map((q) => ({ query: q.query, searches: Number(q.searches), clicks: Number(q.clicks), noResults: Number(q.noResults) }));
    for (const t of tops) expect(rows(t)).toEqual(rows(tops[0]!));
    expect(new Map(rows(tops[0]!).map(({ query, ...n }) => [query, n]))).toEqual(want.queries);
    // Again, now from the stored day tables: the same rows.
    for (const t of await Promise.all(clients.map((c) => c.getTopQueries(asked)))) expect(rows(t)).toEqual(rows(tops[0]!));

    const ctrs = await Promise.all(clients.map((c) => c.getCtr({ days: 7 })));
    for (const ctr of ctrs) {
      expect(ctrOf(ctr)).toEqual(want.overall);
      expect(Object.fromEntries(Object.entries(ctr.variants).map(([v, t]) => [v, ctrOf(t)]))).toEqual(want.variants);
    }
    const comparisons = await Promise.all(clients.map((c) => c.getVariantComparison({ days: 7 })));
    for (const cmp of comparisons) {
      expect(Number(cmp.usersInSeveralVariants)).toBe(want.usersInSeveralVariants);
      expect(Object.fromEntries(Object.entries(cmp.variants).map(([v, t]) => [v, Number(t.users)]))).toEqual({ A: want.variants.A.users, B: want.variants.B.users });
    }
    expect(await pending.countDocuments()).toBe(0);
    console.log(`scale-out: ${acked.length} events acknowledged through 3 instances, ${unknown.size} in flight at the end, ${stored.size} stored`);
  } finally {
    clients.forEach((c) => c.close());
  }
});
