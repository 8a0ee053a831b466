/**
 * The shape of src/ holds: no import cycle, no file over MAX_LINES lines, and every import
 * within the rules the store's folder READMEs write ("May import: ..."), plus the rules of the
 * other layers (core/ is pure; the client never loads the server's side; the server enters the
 * store through click-store.ts only). Reads the files and their relative imports; runs in well
 * under a second.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = resolve(import.meta.dirname, "..");
const SRC = join(ROOT, "src");
const MAX_LINES = 500;
const STORE_FOLDERS = ["engine", "schema", "rollups", "write", "read"];

interface SourceFile {
  /** Path from the repository root, e.g. "src/store/read/rollup-reader.ts". */
  path: string;
  lines: number;
  /** Relative imports, resolved to source paths from the repository root. */
  imports: string[];
  /** Package imports ("mongodb", "node:fs", "@grpc/grpc-js"...). */
  packages: string[];
}

// `import ... from "x"`, `import "x"`, `export ... from "x"` (type-only ones too), at the start of a
// line as statements are; and `import("x")` anywhere.
const STATIC_IMPORT = /^\s*(?:import|export)\s+(?:type\s+)?(?:[\w*${}\s,]+?\s+from\s+)?["']([^"']+)["']/gm;
const DYNAMIC_IMPORT = /\bimport\(\s*["']([^"']+)["']\s*\)/g;

/** The specifiers a module imports; comment lines are left out. */
function importsOf(text: string): string[] {
  const code = text
    .split("\n")
    .filter((line) => !/^\s*(\/\/|\/\*|\*)/.test(line))
    .join("\n");
  return [...[...code.matchAll(STATIC_IMPORT)].map((m) => m[1]!), ...[...code.matchAll(DYNAMIC_IMPORT)].map((m) => m[1]!)];
}

function sourceFiles(): SourceFile[] {
  const out: SourceFile[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const full = join(dir, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (name.endsWith(".ts")) {
        const text = readFileSync(full, "utf8");
        const specifiers = importsOf(text);
        out.push({
          path: relative(ROOT, full),
          lines: text.endsWith("\n") ? text.split("\n").length - 1 : text.split("\n").length,
          imports: specifiers.filter((s) => s.startsWith(".")).map((s) => relative(ROOT, resolve(dirname(full), s)).replace(/\.js$/, ".ts")),
          packages: specifiers.filter((s) => !s.startsWith(".")),
        });
      }
    }
  };
  walk(SRC);
  return out;
}

/** Every cycle's files (strongly connected components of more than one module, or a module importing itself). */
function importCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || graph.get(v)!.includes(v)) cycles.push(component.sort());
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return cycles;
}

/** The folders (from src/, e.g. "core/", "store/schema/") a store folder's README says it may import. */
function mayImport(folder: string): string[] | undefined {
  const readme = join(SRC, "store", folder, "README.md");
  if (!existsSync(readme)) return undefined;
  const line = readFileSync(readme, "utf8")
    .split("\n")
    .find((l) => l.startsWith("May import:"));
  return line === undefined ? undefined : [...line.matchAll(/`([^`]+\/)`/g)].map((m) => m[1]!);
}

/** The first folder of `path` under src/ that a rule is about: "store/read/", "core/", "server/"... */
function layerOf(path: string): string {
  const parts = relative("src", path).split("/");
  if (parts[0] === "store" && parts.length > 2) return `store/${parts[1]}/`;
  return parts.length > 1 ? `${parts[0]}/` : "";
}

/** Every import that breaks a rule, as "from -> to (rule)". */
function layeringViolations(files: readonly SourceFile[]): string[] {
  const out: string[] = [];
  const allowed = new Map(STORE_FOLDERS.map((f) => [`store/${f}/`, mayImport(f) ?? []]));
  for (const file of files) {
    const from = layerOf(file.path);
    for (const target of file.imports) {
      const to = layerOf(target);
      if (to === from) continue;
      const rule = allowed.get(from);
      if (rule !== undefined && !rule.includes(to)) out.push(`${file.path} -> ${target} (${from}README.md: May import ${rule.join(", ")})`);
      if (from === "core/") out.push(`${file.path} -> ${target} (core/ imports only core/)`);
      if (from === "client/" && !target.startsWith("gen/")) out.push(`${file.path} -> ${target} (client/ imports only client/ and gen/)`);
      if (from === "server/" && to.startsWith("store/") && target !== "src/store/click-store.ts") out.push(`${file.path} -> ${target} (server/ enters the store through store/click-store.ts)`);
      if (from === "server/" && to === "cli/") out.push(`${file.path} -> ${target} (server/ never imports cli/)`);
    }
    if (from === "core/") for (const p of file.packages) if (!p.startsWith("node:")) out.push(`${file.path} -> ${p} (core/ imports no package)`);
    if (from === "client/") for (const p of file.packages) if (p === "mongodb" || p.startsWith("@0q/")) out.push(`${file.path} -> ${p} (the client never loads the storage's packages)`);
  }
  return out;
}

describe("the architecture of src/", () => {
  const files = sourceFiles();
  const graph = new Map(files.map((f) => [f.path, f.imports]));

  it("reads the whole tree and its imports (so the checks below are about the real code)", () => {
    expect(files.length).toBeGreaterThan(90);
    expect(graph.get("src/store/click-store.ts")).toContain("src/store/write/durable-writer.ts");
    expect(graph.get("src/server/server.ts")).toContain("src/store/click-store.ts");
    // Every relative import names a file that exists (a parse that dropped or garbled paths would not).
    const missing = files.flatMap((f) => f.imports.filter((i) => !i.startsWith("gen/") && !graph.has(i)).map((i) => `${f.path} -> ${i}`));
    expect(missing).toEqual([]);
  });

  it("parses every form of import, and finds cycles", () => {
    expect(importsOf('import { a } from "./a.js";\nimport type { B } from "../b.js";\nexport { c } from "./c.js";\nexport * from "./d.js";\nconst e = await import("./e.js");\nimport "./f.js";\n// import { g } from "./g.js";\n/* import("./h.js") */')).toEqual(["./a.js", "../b.js", "./c.js", "./d.js", "./f.js", "./e.js"]);
    expect(importsOf('import {\n  a,\n  type B,\n} from "./multi.js";')).toEqual(["./multi.js"]);
    const g = new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]], ["d", ["a"]], ["e", ["e"]]]);
    expect(importCycles(g)).toEqual([["a", "b", "c"], ["e"]]);
    expect(importCycles(new Map([["a", ["b"]], ["b", []]]))).toEqual([]);
  });

  it("has no import cycle: no two modules import each other, directly or around a loop", () => {
    expect(importCycles(graph).map((cycle) => cycle.join(" <-> "))).toEqual([]);
  });

  it(`has no file over ${MAX_LINES} lines (gen/ is generated and not in src/)`, () => {
    expect(files.filter((f) => f.lines > MAX_LINES).map((f) => `${f.path}: ${f.lines} lines`)).toEqual([]);
  });

  it("gives every store folder a README that says what it owns and what it may import", () => {
    for (const folder of STORE_FOLDERS) {
      const rule = mayImport(folder);
      expect(rule, `src/store/${folder}/README.md with a "May import:" line`).toBeDefined();
      expect(rule).toContain("core/");
      for (const layer of rule!) expect(existsSync(join(SRC, layer)), `${folder}/README.md names ${layer}`).toBe(true);
    }
    // The read side and the write side never need each other.
    expect(mayImport("read")).not.toContain("store/write/");
    expect(mayImport("read")).not.toContain("store/rollups/");
    expect(mayImport("rollups")).not.toContain("store/read/");
    expect(mayImport("schema")).toEqual(["core/", "store/engine/"]);
  });

  it("keeps every import within the layering rules", () => {
    expect(layeringViolations(files)).toEqual([]);
  });
});
