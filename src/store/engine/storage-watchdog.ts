/**
 * Notices an engine that stopped answering. A killed MongoDB refuses connections at once, but a
 * paused, hung or partitioned one keeps its sockets open and answers nothing: the driver's own
 * monitor notices only at its next heartbeat (every 10 s), which then waits connectTimeoutMS (30 s
 * by default, ClickStore sets this timeout), and until then every write waited for its deadline instead of going to the spool and every read hung. The watchdog
 * pings on a connection of its own (so a busy pool does not delay it) every `intervalMs`; a ping
 * unanswered for `timeoutMs` (or failing) marks the engine unresponsive at once, and the first
 * answered ping marks it responsive again.
 */
import { EventEmitter } from "node:events";
import { MongoClient } from "mongodb";
import { StorageUnresponsiveError } from "./storage-errors.js";

export interface WatchdogOptions {
  /** Time between pings (default 1 s). */
  intervalMs?: number;
  /** A ping unanswered this long marks the engine unresponsive (default 2.5 s). */
  timeoutMs?: number;
}

export const DEFAULT_PING_INTERVAL_MS = 1_000;
export const DEFAULT_PING_TIMEOUT_MS = 2_500;

export class StorageWatchdog {
  private ok = true;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<boolean> | undefined;
  private readonly changes = new EventEmitter();
  readonly intervalMs: number;
  readonly timeoutMs: number;

  constructor(
    /** One ping; resolves when the engine answered, rejects when it refused or failed. */
    private readonly probe: () => Promise<unknown>,
    options: WatchdogOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? DEFAULT_PING_INTERVAL_MS;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_PING_TIMEOUT_MS;
    this.changes.setMaxListeners(0);
  }

  /** A watchdog on its own one-connection client for `uri`, whose sockets give up after the ping timeout too. */
  static forUri(uri: string, options: WatchdogOptions = {}): { watchdog: StorageWatchdog; close: () => Promise<void> } {
    const timeoutMs = options.timeoutMs ?? DEFAULT_PING_TIMEOUT_MS;
    const client = new MongoClient(uri, { appName: "click-analytics-watchdog", maxPoolSize: 1, serverSelectionTimeoutMS: timeoutMs, connectTimeoutMS: timeoutMs, socketTimeoutMS: timeoutMs });
    const watchdog = new StorageWatchdog(() => client.db("admin").command({ ping: 1 }), options);
    return {
      watchdog,
      close: async () => {
        watchdog.stop();
        await client.close().catch(() => undefined);
      },
    };
  }

  /** True unless the last ping failed or has gone unanswered for the timeout. */
  get responsive(): boolean {
    return this.ok;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.ping(), this.intervalMs);
    this.timer.unref();
    void this.ping();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Listens for changes (true: answering again; false: not answering). Returns the remover. */
  onChange(listener: (responsive: boolean) => void): () => void {
    this.changes.on("change", listener);
    return () => this.changes.off("change", listener);
  }

  /**
   * Pings now (or joins the ping in flight); resolves with the outcome once the engine answered,
   * failed or the timeout passed: never later than `timeoutMs`.
   */
  ping(): Promise<boolean> {
    if (this.inFlight) return this.bounded(this.inFlight);
    const attempt = this.probe().then(
      () => true,
      () => false,
    );
    this.inFlight = attempt;
    void attempt.then((answered) => {
      if (this.inFlight === attempt) this.inFlight = undefined;
      this.set(answered);
    });
    return this.bounded(attempt);
  }

  private bounded(attempt: Promise<boolean>): Promise<boolean> {
    return new Promise((resolve) => {
      let answered: boolean | undefined;
      const timer = setTimeout(() => {
        // Timers run before I/O in Node's loop: after a blocked loop, an answer that already
        // arrived is read first (setImmediate runs after the poll phase), not taken for silence.
        setImmediate(() => {
          if (answered !== undefined) return;
          // Still unanswered: the engine is not responding, whatever the ping says later.
          this.set(false);
          resolve(false);
        });
      }, this.timeoutMs);
      timer.unref();
      void attempt.then((outcome) => {
        answered = outcome;
        clearTimeout(timer);
        resolve(outcome);
      });
    });
  }

  private set(responsive: boolean): void {
    if (responsive === this.ok) return;
    this.ok = responsive;
    this.changes.emit("change", responsive);
  }

  /**
   * `work`, or a StorageUnresponsiveError as soon as the engine is marked unresponsive while it
   * runs: a caller without a deadline is answered within the ping timeout instead of waiting on a
   * hung socket. When the engine is unresponsive already, the work gets one ping timeout to finish
   * (a bad request is still refused for what it is; anything waiting on the engine is not). The
   * work itself goes on; its outcome is ignored.
   */
  race<T>(work: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const giveUp = () => {
        off();
        clearTimeout(timer);
        reject(new StorageUnresponsiveError(this.timeoutMs));
      };
      const off = this.onChange((responsive) => {
        if (!responsive) giveUp();
      });
      const timer = this.ok ? undefined : setTimeout(giveUp, this.timeoutMs);
      work.then(
        (value) => {
          off();
          clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          off();
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }
}
