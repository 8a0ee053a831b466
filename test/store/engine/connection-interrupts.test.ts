/**
 * A write command still being written when the driver interrupts its connection must end. The
 * driver's monitor interrupts the connections in use when its check times out (here: the engine
 * SIGSTOPped past connectTimeoutMS); a command larger than the socket buffers then waits for a
 * `drain` its destroyed socket never emits, for ever, even once the engine answers again
 * (driver 7.0.0). Through ConnectionInterrupts' signal it ends with a network error instead,
 * which the write path takes as UNAVAILABLE and settles. An engine of its own, as it is stopped.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { MongoClient } from "mongodb";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ConnectionInterrupts } from "../../../src/store/engine/connection-interrupts.js";
import { startEmbeddedMongo, type EmbeddedMongo } from "../../../src/store/engine/embedded-engine.js";
import { isStorageUnreachable } from "../../../src/store/engine/storage-errors.js";
import { collections, writeCommand, type Collections } from "../../../src/store/schema/documents.js";

let dir: string;
let engine: EmbeddedMongo;
let client: MongoClient;
let interrupts: ConnectionInterrupts;
let c: Collections;
let stopped = false;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "interrupts-"));
  engine = await startEmbeddedMongo({ dbPath: dir });
  // The monitor checks every 0.5 s and gives a check 1 s (connectTimeoutMS), as the service bounds it by its watchdog.
  client = new MongoClient(engine.uri, { connectTimeoutMS: 1_000, heartbeatFrequencyMS: 500, serverSelectionTimeoutMS: 10_000, writeConcern: { w: "majority", journal: true } });
  interrupts = new ConnectionInterrupts(client);
  await client.connect();
  c = collections(client.db("interrupts"), interrupts);
  await writeCommand(c, { insert: "big", documents: [{ warm: true }] });
}, 120_000);

afterAll(async () => {
  if (stopped) process.kill(engine.pid, "SIGCONT");
  await client?.close(true);
  await engine?.stop();
  await rm(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise<"still waiting">((r) => setTimeout(() => r("still waiting"), ms));

it("a write command being written when the driver interrupts its connection ends with a network error (UNAVAILABLE), not never", { timeout: 60_000 }, async () => {
  // ~6.5 MB: more than the loopback socket buffers take while the engine reads nothing.
  const documents = Array.from({ length: 20_000 }, (_, i) => ({ i, pad: "x".repeat(300) }));
  process.kill(engine.pid, "SIGSTOP");
  stopped = true;
  let outcome: unknown;
  try {
    const write = writeCommand(c, { insert: "big", documents, ordered: false }).then(
      () => "written",
      (error: unknown) => error,
    );
    for (const until = Date.now() + 20_000; interrupts.interrupts === 0 && Date.now() < until; ) await sleep(50);
    expect(interrupts.interrupts, "the driver's monitor timed out and interrupted the connections in use").toBeGreaterThan(0);
    outcome = await Promise.race([write, sleep(5_000)]);
  } finally {
    process.kill(engine.pid, "SIGCONT");
    stopped = false;
  }
  expect(outcome, "the write ended").not.toBe("still waiting");
  expect(outcome).toBeInstanceOf(Error);
  expect((outcome as Error).message).toMatch(/interrupted the connections in use/);
  expect(isStorageUnreachable(outcome), "judged an outage: UNAVAILABLE, and the batch settled as failed").toBe(true);

  // Operations after the interruption get a fresh signal: the engine answers them again.
  const after = await writeCommand(c, { insert: "big", documents: [{ after: true }] });
  expect(after.n).toBe(1);
});
