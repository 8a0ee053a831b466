/**
 * Read caches give way before the heap runs out: a process with a 64 MB heap whose "cache" grows
 * by a megabyte a turn survives when the cache is registered to be dropped under pressure, and
 * dies of it when it is not.
 */
import { spawnSync } from "node:child_process";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { expect, it } from "vitest";
import { oldGenerationLimit, relieveMemoryPressure } from "../../../src/store/read/memory-pressure.js";

/** The compiled module (dist/, built by test/build-setup.ts), for a child process with its own heap limit. */
const COMPILED = pathToFileURL(join(resolve(import.meta.dirname, "../../.."), "dist/src/store/read/memory-pressure.js")).href;

function growCache(register: boolean) {
  const script = `
    const { onMemoryPressure } = await import(${JSON.stringify(COMPILED)});
    let cache = [];
    let shed = 0;
    if (${register}) onMemoryPressure(() => { shed++; cache = []; });
    for (let i = 0; i < 300; i++) {
      cache.push(new Array(1 << 17).fill(i));
      await new Promise((r) => setImmediate(r));
    }
    console.log(JSON.stringify({ shed }));`;
  return spawnSync(process.execPath, ["--max-old-space-size=64", "--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000 });
}

it("drops registered caches after a full collection that leaves the heap near its limit, so the process lives", () => {
  const kept = growCache(true);
  expect(kept.status).toBe(0);
  expect(JSON.parse(kept.stdout.trim()).shed).toBeGreaterThan(0);
  const unkept = growCache(false);
  expect(unkept.status).not.toBe(0);
  expect(unkept.stderr).toContain("heap out of memory");
});

it("reads the old generation's limit from --max-old-space-size, else V8's heap limit less the young generation", () => {
  expect(oldGenerationLimit(["--max-old-space-size=256"], 304 * 2 ** 20)).toBe(256 * 2 ** 20);
  expect(oldGenerationLimit(["--inspect", "--max_old_space_size=96", ""], 1)).toBe(96 * 2 ** 20);
  expect(oldGenerationLimit([], 4144 * 2 ** 20)).toBe(4096 * 2 ** 20);
  // Nothing registered in this process: past the threshold it reports relief, below it none.
  expect(relieveMemoryPressure(100, 1_000)).toBe(false);
  expect(relieveMemoryPressure(900, 1_000)).toBe(true);
});
