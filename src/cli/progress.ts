/**
 * A tiny progress bar on stderr, without dependencies. On a terminal it redraws one line in
 * place (at most ten times a second); elsewhere (a pipe, a CI log) it prints a plain line at
 * every tenth, and at least every 30 seconds, so that logs stay readable.
 */

export interface ProgressOptions {
  label: string;
  total: number;
  /** What is being counted, for the rate ("events" gives "12,345 events/s"). */
  unit?: string;
  stream?: NodeJS.WriteStream;
  /** Bar width in characters (default 24). */
  width?: number;
}

export interface Progress {
  /** Sets the amount done so far. */
  update(done: number): void;
  /** Draws the final state and ends the line. Idempotent. */
  finish(): void;
}

const REDRAW_MS = 100;
const PLAIN_LINE_MS = 30_000;

export function formatInteger(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  return m < 60 ? `${m}m${String(s).padStart(2, "0")}s` : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

export function createProgress(options: ProgressOptions): Progress {
  const stream = options.stream ?? process.stderr;
  const tty = stream.isTTY === true;
  const width = options.width ?? 24;
  const unit = options.unit ?? "items";
  const total = Math.max(0, options.total);
  const started = performance.now();
  let done = 0;
  let lastDraw = 0;
  let lastTenth = 0;
  let lastLine = started;
  let finished = false;

  const line = (barWidth = width): string => {
    const fraction = total === 0 ? 1 : Math.min(1, done / total);
    const seconds = (performance.now() - started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    const eta = rate > 0 ? (total - done) / rate : Number.NaN;
    const filled = Math.round(fraction * barWidth);
    const bar = "#".repeat(filled) + "-".repeat(barWidth - filled);
    const pct = `${(fraction * 100).toFixed(1).padStart(5)}%`;
    const tail = finished ? `in ${formatDuration(seconds)}` : `ETA ${formatDuration(eta)}`;
    return `${options.label} [${bar}] ${pct} ${formatInteger(done)}/${formatInteger(total)} ${formatInteger(rate)} ${unit}/s ${tail}`;
  };

  const draw = (force: boolean): void => {
    if (tty) {
      const now = performance.now();
      if (!force && now - lastDraw < REDRAW_MS) return;
      lastDraw = now;
      // A narrower bar on a narrow terminal, so that the figures stay on the line.
      const columns = stream.columns ?? 120;
      let text = line();
      if (text.length >= columns) text = line(Math.max(4, width - (text.length - columns + 1)));
      stream.write(`\r${text.length >= columns ? text.slice(0, columns - 1) : text}\x1b[K`);
    } else {
      // Tenths 1..9 while running (or a while without one); the final line comes from finish().
      const tenth = total === 0 ? 0 : Math.min(9, Math.floor((Math.min(done, total) / total) * 10));
      const now = performance.now();
      if (!force && tenth <= lastTenth && now - lastLine < PLAIN_LINE_MS) return;
      lastTenth = Math.max(lastTenth, tenth);
      lastLine = now;
      stream.write(`${line()}\n`);
    }
  };

  return {
    update(n: number) {
      if (finished) return;
      done = n;
      draw(false);
    },
    finish() {
      if (finished) return;
      finished = true;
      draw(true);
      if (tty) stream.write("\n");
    },
  };
}
