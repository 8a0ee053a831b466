/**
 * The engine's own count of the commands it ran (serverStatus `metrics.commands`): read before and
 * after a phase, the difference is what that phase asked of the engine, counted where the work is
 * done and at no cost to the server. Only the commands that carry the service's work are counted
 * (writes, queries, cursors); the bench's own polls (count, serverStatus), pings, handshakes and
 * the like are not. With an external MongoDB shared with others, their commands count too.
 */
import type { Db } from "mongodb";

/** The commands the service's reads and writes are made of. */
export const DATA_COMMANDS = ["insert", "update", "delete", "find", "aggregate", "getMore", "findAndModify", "distinct"] as const;

export type CommandCounts = Record<string, number>;

/** The engine's totals so far, per data command. */
export async function engineCommands(db: Db): Promise<CommandCounts> {
  const status = await db.admin().command({ serverStatus: 1, metrics: 1, opcounters: 0, repl: 0, locks: 0, wiredTiger: 0, tcmalloc: 0 });
  const commands = (status.metrics?.commands ?? {}) as Record<string, { total?: unknown }>;
  return Object.fromEntries(DATA_COMMANDS.map((name) => [name, Number(commands[name]?.total ?? 0)]));
}

/** after - before, per command, without the zeros. */
export function commandsBetween(before: CommandCounts, after: CommandCounts): CommandCounts {
  const out: CommandCounts = {};
  for (const name of DATA_COMMANDS) {
    const n = (after[name] ?? 0) - (before[name] ?? 0);
    if (n !== 0) out[name] = n;
  }
  return out;
}

export const totalCommands = (counts: CommandCounts): number => Object.values(counts).reduce((a, b) => a + b, 0);
