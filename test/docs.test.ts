/**
 * The documentation holds together: a README a newcomer reads in minutes, every topic guide
 * reachable from it, and every relative link (file and anchor) pointing somewhere real.
 */
import { existsSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import { describe, expect, it } from "vitest";
import { anchorsOf, docFiles, headingSlug, linksOf, readDoc, ROOT } from "./support/docs.js";

describe("the documentation", () => {
  const files = docFiles();

  it("has a README of at most 300 lines that links every topic guide", () => {
    const readme = readDoc("README.md");
    expect(readme.split("\n").length).toBeLessThanOrEqual(300);
    const linked = new Set(linksOf(readme).map((l) => l.target.split("#")[0]));
    const guides = files.filter((f) => f.startsWith("docs/"));
    expect(guides.length).toBeGreaterThanOrEqual(6);
    for (const guide of guides) expect(linked, `README links ${guide}`).toContain(guide);
  });

  it("opens every topic guide with a title and what the reader will find there", () => {
    for (const file of files.filter((f) => f.startsWith("docs/"))) {
      const [title, blank, intro] = readDoc(file).split("\n");
      expect(title, file).toMatch(/^# \S/);
      expect(blank, file).toBe("");
      expect(intro, file).toMatch(/^What you will find here: /);
    }
  });

  it("has no broken relative link: every file exists and every anchor is a heading or <a id> there", () => {
    const broken: string[] = [];
    let checked = 0;
    for (const file of files) {
      for (const { target, at } of linksOf(readDoc(file))) {
        if (/^[a-z]+:/i.test(target)) continue; // https:, mailto:: not ours to check offline
        checked++;
        const [path, anchor] = target.split("#") as [string, string | undefined];
        const resolved = path === "" ? file : normalize(join(dirname(file), path));
        if (!existsSync(join(ROOT, resolved))) {
          broken.push(`${file}:${at}: ${target} (no ${resolved})`);
          continue;
        }
        if (anchor !== undefined && resolved.endsWith(".md") && !anchorsOf(readDoc(resolved)).has(anchor)) {
          broken.push(`${file}:${at}: ${target} (no #${anchor} in ${resolved})`);
        }
      }
    }
    expect(checked).toBeGreaterThan(50);
    expect(broken).toEqual([]);
  });

  it("computes anchors as GitHub does (the checker's own rule, against known headings)", () => {
    expect(headingSlug("Is variant B really better? How the comparison works")).toBe("is-variant-b-really-better-how-the-comparison-works");
    expect(headingSlug("Live metrics (`WatchMetrics`) with many watchers")).toBe("live-metrics-watchmetrics-with-many-watchers");
    expect(headingSlug("Search quality: MRR, abandonment and time to first click")).toBe("search-quality-mrr-abandonment-and-time-to-first-click");
    expect([...anchorsOf("# A\n\n## A\n```\n# not a heading\n```\n<a id=\"x\"></a>")]).toEqual(["a", "a-1", "x"]);
  });
});
