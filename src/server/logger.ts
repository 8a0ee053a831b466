/** The small logging surface the server needs; JSON lines on stderr. */
export interface Logger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const;
export type LogLevel = keyof typeof LEVELS;

export function createLogger(level: LogLevel = "info", write: (line: string) => void = (l) => process.stderr.write(l + "\n")): Logger {
  const threshold = LEVELS[level];
  const emit = (lvl: Exclude<LogLevel, "silent" | "debug">) => (fields: Record<string, unknown>, message: string) => {
    if (LEVELS[lvl] < threshold) return;
    write(JSON.stringify({ time: new Date().toISOString(), level: lvl, msg: message, ...fields }));
  };
  return { info: emit("info"), warn: emit("warn"), error: emit("error") };
}
