/**
 * The watchdog's verdicts, driven by a probe the test controls (answering, failing, or hanging as a
 * SIGSTOPped engine's socket does); the end-to-end stall with a real engine is in
 * test/e2e/stalled-engine.test.ts.
 */
import { afterEach, expect, it } from "vitest";
import { StorageUnresponsiveError } from "../../../src/store/engine/storage-errors.js";
import { StorageWatchdog } from "../../../src/store/engine/storage-watchdog.js";

/** A probe whose pings are answered, refused or left hanging as the test says. */
class Engine {
  mode: "answer" | "refuse" | "hang" = "answer";
  pings = 0;
  private hung: (() => void)[] = [];
  probe = (): Promise<unknown> => {
    this.pings++;
    if (this.mode === "answer") return Promise.resolve({ ok: 1 });
    if (this.mode === "refuse") return Promise.reject(new Error("connect ECONNREFUSED"));
    return new Promise<void>((resolve) => this.hung.push(resolve));
  };
  /** SIGCONT: every hung ping is answered. */
  resume(): void {
    this.mode = "answer";
    this.hung.splice(0).forEach((r) => r());
  }
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
let watchdog: StorageWatchdog | undefined;
afterEach(() => watchdog?.stop());

it("marks a hanging engine unresponsive after the ping timeout, and responsive at the first answer", async () => {
  const engine = new Engine();
  watchdog = new StorageWatchdog(engine.probe, { intervalMs: 50, timeoutMs: 200 });
  const changes: boolean[] = [];
  watchdog.onChange((r) => changes.push(r));
  watchdog.start();
  await pause(120);
  expect(watchdog.responsive).toBe(true);
  engine.mode = "hang";
  const hungAt = Date.now();
  while (watchdog.responsive && Date.now() - hungAt < 2_000) await pause(10);
  const noticed = Date.now() - hungAt;
  expect(watchdog.responsive).toBe(false);
  // Within one interval (the ping in flight when the engine hung may have been answered) plus the timeout.
  expect(noticed).toBeGreaterThanOrEqual(150);
  expect(noticed).toBeLessThan(50 + 200 + 300);
  engine.resume();
  await pause(20);
  expect(watchdog.responsive).toBe(true);
  expect(changes).toEqual([false, true]);
});

it("marks a refusing engine unresponsive at the first failed ping", async () => {
  const engine = new Engine();
  engine.mode = "refuse";
  watchdog = new StorageWatchdog(engine.probe, { intervalMs: 1_000, timeoutMs: 5_000 });
  expect(await watchdog.ping()).toBe(false);
  expect(watchdog.responsive).toBe(false);
  engine.mode = "answer";
  expect(await watchdog.ping()).toBe(true);
  expect(watchdog.responsive).toBe(true);
});

it("ping() never waits past the timeout, and pings in flight are shared", async () => {
  const engine = new Engine();
  engine.mode = "hang";
  watchdog = new StorageWatchdog(engine.probe, { intervalMs: 1_000, timeoutMs: 150 });
  const started = Date.now();
  const [a, b] = await Promise.all([watchdog.ping(), watchdog.ping()]);
  expect([a, b]).toEqual([false, false]);
  expect(Date.now() - started).toBeLessThan(1_000);
  expect(engine.pings).toBe(1);
});

it("race: work in flight is given up with StorageUnresponsiveError when the engine stops answering; finished work is untouched", async () => {
  const engine = new Engine();
  watchdog = new StorageWatchdog(engine.probe, { intervalMs: 30, timeoutMs: 100 });
  watchdog.start();
  expect(await watchdog.race(Promise.resolve(7))).toBe(7);
  await expect(watchdog.race(Promise.reject(new Error("own failure")))).rejects.toThrow("own failure");
  const hanging = new Promise<number>(() => undefined);
  const raced = watchdog.race(hanging);
  engine.mode = "hang";
  const started = Date.now();
  await expect(raced).rejects.toBeInstanceOf(StorageUnresponsiveError);
  expect(Date.now() - started).toBeLessThan(30 + 100 + 300);
});

it("race while unresponsive already: quick work (a bad request refused) still answers for itself; work that waits on the engine gets the timeout", async () => {
  const engine = new Engine();
  engine.mode = "refuse";
  watchdog = new StorageWatchdog(engine.probe, { intervalMs: 1_000, timeoutMs: 150 });
  await watchdog.ping();
  expect(watchdog.responsive).toBe(false);
  await expect(watchdog.race(Promise.reject(new Error("days: must be 1..365")))).rejects.toThrow("days: must be 1..365");
  const started = Date.now();
  await expect(watchdog.race(new Promise(() => undefined))).rejects.toBeInstanceOf(StorageUnresponsiveError);
  const waited = Date.now() - started;
  expect(waited).toBeGreaterThanOrEqual(140);
  expect(waited).toBeLessThan(1_000);
});
