/**
 * Turns for a reader's raw reads: at most `atOnce` run at a time, a finished read handing its turn
 * to the next waiting one. A first read after a bulk load rebuilds every day of its window, and 30
 * days read at once held more than the server's heap (the 3M benchmark's server, capped at 256 MiB,
 * died of it).
 */
export class ReadTurns {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly atOnce: number) {}

  async take<T>(read: () => Promise<T>): Promise<T> {
    if (this.running >= this.atOnce) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    try {
      return await read();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
