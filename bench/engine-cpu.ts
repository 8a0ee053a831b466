/**
 * The engine's own CPU, for the floor tools (unary-floor.ts, ingest-floor.ts): read from
 * /proc/<pid>/stat (Linux), for a piece of work as a whole and split among the commands that
 * were in flight when it was used (the driver's command monitoring).
 */
import { readFileSync } from "node:fs";
import type { CommandFailedEvent, CommandStartedEvent, CommandSucceededEvent, MongoClient } from "mongodb";

/** Linux's USER_HZ: /proc/<pid>/stat counts CPU time in these ticks. */
const TICKS_PER_SECOND = 100;
/** How long after a piece of work its CPU is read: ticks land late, and the engine finishes some work after its reply. */
const SETTLE_MS = 300;

/** CPU time (user + system) the process has used so far, in seconds (10 ms steps). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // utime and stime: fields 14 and 15, counted after the command name's closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** The engine CPU seconds `run` cost, and the wall seconds it took. */
export async function engineCpu(pid: number, run: () => Promise<void>): Promise<{ cpuSeconds: number; seconds: number }> {
  const before = cpuSeconds(pid);
  const started = performance.now();
  await run();
  const seconds = (performance.now() - started) / 1000;
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  return { cpuSeconds: cpuSeconds(pid) - before, seconds };
}

export interface CommandCpu {
  /** The command and what it names (its collection; getMore: the cursor's collection). */
  name: string;
  cpuSeconds: number;
  count: number;
}

/**
 * Engine CPU per command (name and collection), from a client created with `monitorCommands`:
 * each CPU step seen at a command's start or end is shared equally among the commands then in
 * flight. With several in flight at once that is an estimate (one waiting on the journal gets a
 * share of another's work); with one at a time it is exact to the tick. CPU used while none is in
 * flight (background work) is left out: the total from engineCpu is the reference.
 */
export class CommandCpuSplit {
  private readonly inFlight = new Map<number, string>();
  private readonly byName = new Map<string, CommandCpu>();
  private last: number;

  private readonly started = (e: CommandStartedEvent) => {
    this.share();
    const target = e.commandName === "getMore" ? e.command.collection : e.command[e.commandName];
    const name = typeof target === "string" ? `${e.commandName} ${target}` : e.commandName;
    this.inFlight.set(e.requestId, name);
    const entry = this.byName.get(name) ?? { name, cpuSeconds: 0, count: 0 };
    entry.count++;
    this.byName.set(name, entry);
  };

  private readonly ended = (e: CommandSucceededEvent | CommandFailedEvent) => {
    this.share();
    this.inFlight.delete(e.requestId);
  };

  constructor(
    private readonly client: MongoClient,
    private readonly pid: number,
  ) {
    this.last = cpuSeconds(pid);
    client.on("commandStarted", this.started);
    client.on("commandSucceeded", this.ended);
    client.on("commandFailed", this.ended);
  }

  private share(): void {
    const now = cpuSeconds(this.pid);
    const step = now - this.last;
    this.last = now;
    if (step > 0) for (const name of this.inFlight.values()) this.byName.get(name)!.cpuSeconds += step / this.inFlight.size;
  }

  /** Stops listening; the commands seen, most CPU first. */
  stop(): CommandCpu[] {
    this.client.off("commandStarted", this.started);
    this.client.off("commandSucceeded", this.ended);
    this.client.off("commandFailed", this.ended);
    return [...this.byName.values()].sort((a, b) => b.cpuSeconds - a.cpuSeconds);
  }
}

/** The split as lines: µs of engine CPU per `unit` (`units` of them in all) and commands per batch. */
export function formatSplit(rows: readonly CommandCpu[], units: number, unit: string, batches: number): string {
  return rows
    .map((r) => `  ${r.name.padEnd(32)} ${((r.cpuSeconds * 1e6) / units).toFixed(1).padStart(8)} µs per ${unit}, ${(r.count / batches).toFixed(2).padStart(6)} commands per batch\n`)
    .join("");
}
