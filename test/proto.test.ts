/**
 * The contract: `buf lint` passes, `buf generate` reproduces the committed gen/ exactly, and
 * `buf breaking` finds nothing incompatible with the last released proto.
 */
import { execFile } from "node:child_process";
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { latestRelease } from "../scripts/proto-breaking.mjs";

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

describe("buf breaking against the last released proto", () => {
  it("finds no incompatible change in proto/", { timeout: 60_000 }, async () => {
    const { stdout } = await run(process.execPath, [join(root, "scripts/proto-breaking.mjs")], { cwd: root });
    expect(stdout).toMatch(/^buf breaking: proto\/ is compatible with v\d+\.\d+\.\d+$/m);
  });

  it("fails on a change that would break deployed clients", { timeout: 60_000 }, async () => {
    const against = latestRelease();
    expect(against).toBeDefined();
    const copy = await mkdtemp(join(tmpdir(), "ca-breaking-"));
    try {
      await cp(join(root, "proto"), join(copy, "proto"), { recursive: true });
      await cp(join(root, "buf.yaml"), join(copy, "buf.yaml"));
      const file = join(copy, "proto/clickanalytics/v1/click_analytics.proto");
      const source = await readFile(file, "utf8");
      // Renumbering a field changes its wire meaning for every client built on the release.
      const renumbered = source.replace(/^(\s*string product_id = )(\d+);/m, (_, head: string) => `${head}99;`);
      expect(renumbered).not.toBe(source);
      await writeFile(file, renumbered);
      const failure = await run(join(root, "node_modules/.bin/buf"), ["breaking", "--against", against!], { cwd: copy }).then(
        () => undefined,
        (error: { stdout: string; stderr: string }) => error.stdout + error.stderr,
      );
      expect(failure).toMatch(/product_id/);
      expect(failure).toMatch(/FIELD_SAME_NAME|FIELD_NO_DELETE|changed name|deleted/);
    } finally {
      await rm(copy, { recursive: true, force: true });
    }
  });
});
