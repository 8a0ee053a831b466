/**
 * Terminal output for the `click-analytics` command: colours (only where the terminal takes
 * them), aligned tables, and the number formats every command shares.
 */

/** ANSI styles; every one is the identity when colour is off. */
export interface Style {
  readonly enabled: boolean;
  bold(text: string): string;
  dim(text: string): string;
  red(text: string): string;
  green(text: string): string;
  yellow(text: string): string;
  cyan(text: string): string;
}

export interface ColorChoice {
  /** --color: colour even when not a terminal. */
  color?: boolean | undefined;
  /** --no-color: never colour. */
  noColor?: boolean | undefined;
}

/**
 * Colour when the stream is a terminal (and TERM is not "dumb"), unless NO_COLOR is set to
 * anything non-empty (https://no-color.org) or --no-color is given; FORCE_COLOR (not "0") or
 * --color turns it on for pipes too. Flags win over the environment.
 */
export function wantsColor(stream: { isTTY?: boolean }, choice: ColorChoice = {}, env: NodeJS.ProcessEnv = process.env): boolean {
  if (choice.noColor) return false;
  if (choice.color) return true;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== "" && env.FORCE_COLOR !== "0") return true;
  return stream.isTTY === true && env.TERM !== "dumb";
}

export function createStyle(enabled: boolean): Style {
  const sgr = (open: number, close: number) => (text: string) => (enabled && text !== "" ? `\x1b[${open}m${text}\x1b[${close}m` : text);
  return { enabled, bold: sgr(1, 22), dim: sgr(2, 22), red: sgr(31, 39), green: sgr(32, 39), yellow: sgr(33, 39), cyan: sgr(36, 39) };
}

const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;

export function stripAnsi(text: string): string {
  return text.replace(ANSI, "");
}

/** Printed width: ANSI codes take none; every code point one column (good enough for our text). */
export function visibleWidth(text: string): number {
  return Array.from(stripAnsi(text)).length;
}

export interface Column {
  header: string;
  /** Numbers read best right-aligned. */
  align?: "left" | "right";
}

/** Rows under a header, columns separated by two spaces; cells may carry colour. */
export function table(columns: readonly Column[], rows: readonly (readonly string[])[], style: Style = createStyle(false)): string {
  const widths = columns.map((c, i) => Math.max(visibleWidth(c.header), ...rows.map((r) => visibleWidth(r[i] ?? ""))));
  const pad = (text: string, i: number) => {
    const gap = " ".repeat(Math.max(0, widths[i]! - visibleWidth(text)));
    return columns[i]!.align === "right" ? gap + text : text + gap;
  };
  const line = (cells: readonly string[]) =>
    columns
      .map((_, i) => pad(cells[i] ?? "", i))
      .join("  ")
      .trimEnd();
  return [style.bold(line(columns.map((c) => c.header))), ...rows.map(line)].join("\n");
}

/** What an unset ratio, mean or percentile ("no data") prints as. */
export const NO_DATA = "n/a";

export function integer(n: number | bigint): string {
  return (typeof n === "bigint" ? n : Math.round(n)).toLocaleString("en-US");
}

/** 0.2345 -> "23.45%" (digits after the point). */
export function percent(x: number | undefined, digits = 2): string {
  return x === undefined || !Number.isFinite(x) ? NO_DATA : `${(x * 100).toFixed(digits)}%`;
}

/** A signed difference of two proportions in percentage points: 0.0123 -> "+1.23 pp". */
export function points(x: number | undefined, digits = 2): string {
  if (x === undefined || !Number.isFinite(x)) return NO_DATA;
  const v = x * 100;
  return `${v >= 0 ? "+" : ""}${v.toFixed(digits)} pp`;
}

/** A signed relative change: 0.051 -> "+5.1%". */
export function signedPercent(x: number | undefined, digits = 1): string {
  if (x === undefined || !Number.isFinite(x)) return NO_DATA;
  const v = x * 100;
  return `${v >= 0 ? "+" : ""}${v.toFixed(digits)}%`;
}

/** An interval of proportions: "[19.80%, 21.10%]". */
export function percentInterval(low: number | undefined, high: number | undefined, digits = 2): string {
  return low === undefined || high === undefined ? "" : `[${percent(low, digits)}, ${percent(high, digits)}]`;
}

/** An interval of differences in percentage points: "[-0.40, +2.80] pp". */
export function pointsInterval(low: number | undefined, high: number | undefined, digits = 2): string {
  if (low === undefined || high === undefined) return "";
  const s = (v: number) => `${v >= 0 ? "+" : ""}${(v * 100).toFixed(digits)}`;
  return `[${s(low)}, ${s(high)}] pp`;
}

/** An interval of relative changes: "[-2.0%, +14.6%]". */
export function signedPercentInterval(low: number | undefined, high: number | undefined, digits = 1): string {
  return low === undefined || high === undefined ? "" : `[${signedPercent(low, digits)}, ${signedPercent(high, digits)}]`;
}

export function pValue(p: number | undefined): string {
  if (p === undefined || !Number.isFinite(p)) return NO_DATA;
  return p < 0.001 ? "<0.001" : p.toFixed(3);
}

/** "p = 0.482" or "p < 0.001". */
export function pEquals(p: number | undefined): string {
  const text = pValue(p);
  return text.startsWith("<") ? `p ${text.replace("<", "< ")}` : `p = ${text}`;
}

export function ms(x: number | undefined, digits = 1): string {
  return x === undefined || !Number.isFinite(x) ? NO_DATA : `${x.toFixed(digits)} ms`;
}

export function signedMs(x: number | undefined, digits = 1): string {
  if (x === undefined || !Number.isFinite(x)) return NO_DATA;
  return `${x >= 0 ? "+" : ""}${x.toFixed(digits)} ms`;
}

export function decimal(x: number | undefined, digits = 2): string {
  return x === undefined || !Number.isFinite(x) ? NO_DATA : x.toFixed(digits);
}
