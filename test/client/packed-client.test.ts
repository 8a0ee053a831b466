/**
 * The package as another team gets it: `npm pack` (of dist/ as test/build-setup.ts compiled it), installed from the tarball into a fresh
 * TypeScript project, compiled with `tsc --strict`, and run against a live server.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/harness.js";

const run = promisify(execFile);
const root = resolve(import.meta.dirname, "../..");

const consumer = `
import { createClickAnalyticsClient, ClickSource, Status, type LogClickResponse, type GetCtrResponse } from "click-analytics";

const client = createClickAnalyticsClient(process.argv[2]!, { defaultTimeoutMs: 5_000 });
const click: LogClickResponse = await client.logClick(
  { productId: "p-1", rank: 1, searchQuery: "packed query", variant: "search_v1", responseTimeMs: 5, source: ClickSource.SEARCH_RESULTS },
  { userId: "packed-user", timeoutMs: 3_000 },
);
await client.logImpression({ userId: "packed-user", query: "packed query", variant: "search_v1", resultsCount: 10, responseTimeMs: 5 });
const ctr: GetCtrResponse = await client.getCtr({ userId: "packed-user" });
let refused = -1;
try {
  await client.getCtr({ days: 1000 });
} catch (error) {
  refused = (error as { code: number }).code;
}
console.log(JSON.stringify({ userId: click.userId, ctr: ctr.ctr, clicks: ctr.clicks.toString(), refusedWith: refused === Status.INVALID_ARGUMENT ? "INVALID_ARGUMENT" : refused }));
client.close();
`;

let h: Harness;
let dir: string;
beforeAll(async () => {
  h = await startHarness();
  dir = await mkdtemp(join(tmpdir(), "ca-consumer-"));
});
afterAll(async () => {
  await h.close();
  await rm(dir, { recursive: true, force: true });
});

it("installs from the packed tarball, compiles under tsc --strict and talks to a live server", { timeout: 300_000 }, async () => {
  const { stdout: packed } = await run("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", dir], { cwd: root, maxBuffer: 16 * 1024 * 1024 });
  const [info] = JSON.parse(packed.slice(packed.indexOf("["))) as { filename: string; files: { path: string }[] }[];
  const paths = info!.files.map((f) => f.path);
  expect(paths).toContain("dist/src/client/index.js");
  expect(paths).toContain("dist/src/client/index.d.ts");
  expect(paths.some((p) => p.startsWith("src/") || p.startsWith("test/"))).toBe(false);

  await writeFile(join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  await writeFile(
    join(dir, "tsconfig.json"),
    JSON.stringify({ compilerOptions: { strict: true, target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", types: ["node"], outDir: "out", skipLibCheck: false } }),
  );
  await writeFile(join(dir, "main.ts"), consumer);
  const readme = await readFile(join(root, "README.md"), "utf8");
  const example = (name: string) => {
    const code = new RegExp(`<!-- ${name} -->\\s*\`\`\`ts\\n([\\s\\S]*?)\`\`\``).exec(readme)?.[1];
    expect(code, `README's ${name}`).toBeDefined();
    return code!;
  };
  await writeFile(join(dir, "readme-client.ts"), example("client-example"));
  await writeFile(join(dir, "readme-logger.ts"), example("logger-example"));
  const typescript = JSON.parse(await readFile(join(root, "node_modules/typescript/package.json"), "utf8")) as { version: string };
  const typesNode = JSON.parse(await readFile(join(root, "node_modules/@types/node/package.json"), "utf8")) as { version: string };
  await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", `./${info!.filename}`, `typescript@${typescript.version}`, `@types/node@${typesNode.version}`], {
    cwd: dir,
    maxBuffer: 16 * 1024 * 1024,
  });
  await run(join(dir, "node_modules/.bin/tsc"), ["-p", "."], { cwd: dir });
  const { stdout } = await run(process.execPath, [join(dir, "out/main.js"), h.server.address], { cwd: dir });
  expect(JSON.parse(stdout.trim())).toEqual({ userId: "packed-user", ctr: 1, clicks: "1", refusedWith: "INVALID_ARGUMENT" });
  const env = { ...process.env, CLICK_ANALYTICS_ADDRESS: h.server.address };
  const clientRun = await run(process.execPath, [join(dir, "out/readme-client.js")], { cwd: dir, env });
  expect(clientRun.stdout.trim()).toMatch(/^click [0-9a-f-]{36}: CTR 1 over 1 searches$/);
  const loggerRun = await run(process.execPath, [join(dir, "out/readme-logger.js")], { cwd: dir, env });
  expect(loggerRun.stdout.trim()).toBe("sent 2 events in 1 batch(es)");
  expect(loggerRun.stderr).toBe("");
  const linked = await h.server.store.collections.clicks.findOne({ product_id: "prod_nike_001", impression_id: { $exists: true } });
  expect(await h.server.store.collections.impressions.countDocuments({ impression_id: linked?.impression_id })).toBe(1);
});
