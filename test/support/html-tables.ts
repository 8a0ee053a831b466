/**
 * Reading the HTML report's tables (also on the live dashboard) back: cells by column header
 * and row label, and shown numbers checked against the server's values to the digits shown.
 */
import { expect } from "vitest";

const unescapeHtml = (text: string) => text.replace(/&(amp|lt|gt|quot|#39);/g, (_, e: string) => ({ amp: "&", lt: "<", gt: ">", quot: '"', "#39": "'" })[e]!);

/**
 * The rows of `<table class="cls">` as maps from column name to cell text. A header ending in
 * "interval" names the column before it ("CTR" then "95% interval" gives "CTR interval"), so
 * repeated headers stay apart; `conf` is that interval header's confidence label.
 */
export function tableRows(page: string, cls: string): { conf: string | undefined; headers: string[]; rows: Record<string, string>[] } {
  const start = page.indexOf(`<table class="${cls}">`);
  expect(start, `table ${cls}`).toBeGreaterThanOrEqual(0);
  const body = page.slice(start, page.indexOf("</table>", start));
  const trs = [...body.matchAll(/<tr\b[^>]*>(.*?)<\/tr>/gs)].map((m) => m[1]!);
  const raw = [...trs[0]!.matchAll(/<th>(.*?)<\/th>/gs)].map((m) => unescapeHtml(m[1]!));
  const confs = new Set(raw.filter((h) => / interval$/.test(h)).map((h) => h.replace(/ interval$/, "")));
  expect(confs.size, `${cls}: one confidence for every interval column (${[...confs].join(", ")})`).toBeLessThanOrEqual(1);
  const headers = raw.map((h, i) => (/ interval$/.test(h) ? `${raw[i - 1]} interval` : h));
  expect(new Set(headers).size, `${cls}: distinct column names ${headers.join(" | ")}`).toBe(headers.length);
  const rows = trs.slice(1).map((tr) => {
    const cells = [...tr.matchAll(/<td\b[^>]*>(.*?)<\/td>/gs)].map((m) => unescapeHtml(m[1]!));
    expect(cells.length, `${cls}: cells of a row`).toBe(headers.length);
    return Object.fromEntries(headers.map((h, i) => [h, cells[i]!]));
  });
  return { conf: [...confs][0], headers, rows };
}

/** A shown number matches `value` to the digits shown: |shown − value| ≤ half a unit of its last digit. */
export function expectShown(what: string, shown: string, value: number | undefined, scale = 1): void {
  expect(value, `${what}: the server's value`).toBeDefined();
  const m = /^[+-]?\d+(?:\.(\d+))?$/.exec(shown.replace(/,/g, ""));
  expect(m, `${what}: "${shown}" is a number`).not.toBeNull();
  const halfUnit = 0.5 * 10 ** -(m![1]?.length ?? 0);
  expect(Math.abs(Number(shown.replace(/,/g, "")) - value! * scale), `${what}: shown "${shown}", the server says ${value! * scale}`).toBeLessThanOrEqual(halfUnit + 1e-9);
}

/** "25.00%" (or "+1.25 pp", "+5.1%") against a proportion. */
export function expectPercent(what: string, cell: string, value: number | undefined, unit: "%" | " pp" = "%"): void {
  expect(cell.endsWith(unit), `${what}: "${cell}" ends in "${unit}"`).toBe(true);
  expectShown(what, cell.slice(0, -unit.length), value, 100);
}

/** "[19.80%, 21.10%]" or "[-0.40, +2.80] pp" against an interval of proportions. */
export function expectPercentInterval(what: string, cell: string, interval: { low: number; high: number } | undefined, unit: "%" | " pp" = "%"): void {
  expect(interval, `${what}: the server's interval`).toBeDefined();
  const m = unit === "%" ? /^\[(\S+)%, (\S+)%\]$/.exec(cell) : /^\[(\S+), (\S+)\] pp$/.exec(cell);
  expect(m, `${what}: "${cell}" is an interval`).not.toBeNull();
  expectShown(`${what} low`, m![1]!, interval!.low, 100);
  expectShown(`${what} high`, m![2]!, interval!.high, 100);
}

/** "0.123", "0.012*" or "<0.001" against a p-value and its significance. */
export function expectP(what: string, cell: string, p: number | undefined, significant: boolean): void {
  expect(p, `${what}: the server's p`).toBeDefined();
  expect(cell.endsWith("*"), `${what}: "${cell}" marked significant`).toBe(significant);
  const text = cell.replace(/\*$/, "");
  if (text === "<0.001") expect(p!, what).toBeLessThan(0.001);
  else expectShown(what, text, p);
}

