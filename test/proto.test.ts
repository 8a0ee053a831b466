/** The contract: `buf lint` passes and `buf generate` reproduces the committed gen/ exactly. */
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { promisify } from "node:util";
import { expect, it } from "vitest";

const run = promisify(execFile);
const root = resolve(import.meta.dirname, "..");
const buf = join(root, "node_modules/.bin/buf");

async function tree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    out.set(relative(dir, path), await readFile(path, "utf8"));
  }
  return out;
}

it("buf lint passes", { timeout: 60_000 }, async () => {
  await expect(run(buf, ["lint"], { cwd: root })).resolves.toBeDefined();
});

it("buf generate reproduces gen/ with no difference", { timeout: 60_000 }, async () => {
  const out = await mkdtemp(join(tmpdir(), "ca-gen-"));
  try {
    await run(buf, ["generate", "--output", out], { cwd: root });
    const fresh = await tree(join(out, "gen"));
    const committed = await tree(join(root, "gen"));
    expect([...fresh.keys()].sort()).toEqual([...committed.keys()].sort());
    for (const [path, text] of fresh) expect(committed.get(path), path).toBe(text);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
