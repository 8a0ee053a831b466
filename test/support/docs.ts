/**
 * The project's documentation as the tests read it: README.md and the topic guides in docs/.
 * Examples are found by what they are (a fenced block after `<!-- name -->`, a command line), not
 * by line numbers, so text can move between the files and the tests follow it.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname, "../..");

/** README.md, then every docs/*.md, as paths relative to the repository. */
export function docFiles(): string[] {
  const guides = readdirSync(join(ROOT, "docs"))
    .filter((name) => name.endsWith(".md"))
    .sort()
    .map((name) => `docs/${name}`);
  return ["README.md", ...guides];
}

export function readDoc(file: string): string {
  return readFileSync(join(ROOT, file), "utf8");
}

/** The fenced block after `<!-- name -->` in `file`, or undefined. */
export function fencedBlock(file: string, name: string, lang = "ts"): string | undefined {
  return new RegExp(`<!-- ${name} -->\\s*\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``).exec(readDoc(file))?.[1];
}

/** The lines of `text` outside fenced code blocks, with their 1-based line numbers. */
export function proseLines(text: string): { line: string; at: number }[] {
  const out: { line: string; at: number }[] = [];
  let fenced = false;
  text.split("\n").forEach((line, i) => {
    if (line.startsWith("```")) fenced = !fenced;
    else if (!fenced) out.push({ line, at: i + 1 });
  });
  return out;
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
export function headingSlug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, "")
    .replace(/ /g, "-");
}

/** Every anchor a file defines: its headings (repeats numbered as GitHub does) and `<a id>`s. */
export function anchorsOf(text: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const { line } of proseLines(text)) {
    const heading = /^#{1,6} (.*)$/.exec(line);
    if (heading) {
      const slug = headingSlug(heading[1]!);
      const n = seen.get(slug) ?? 0;
      seen.set(slug, n + 1);
      anchors.add(n === 0 ? slug : `${slug}-${n}`);
    }
    for (const id of line.matchAll(/<a id="([^"]+)"><\/a>/g)) anchors.add(id[1]!);
  }
  return anchors;
}

/** Markdown links `[text](target)` outside code blocks and inline code. */
export function linksOf(text: string): { target: string; at: number }[] {
  const out: { target: string; at: number }[] = [];
  for (const { line, at } of proseLines(text)) {
    for (const m of line.replace(/`[^`]*`/g, "").matchAll(/\]\(([^)\s]+)\)/g)) out.push({ target: m[1]!, at });
  }
  return out;
}
