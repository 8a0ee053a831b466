/**
 * The standard grpc.health.v1 service. Status follows storage: SERVING while MongoDB answers a
 * ping, NOT_SERVING otherwise and during shutdown. A monitor pings in the background so health
 * calls answer at once from the last observation.
 */
import { EventEmitter, on } from "node:events";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { DomainError } from "../core/errors.js";
import type { ServiceImpl } from "./grpc-adapter.js";

export { ServingStatus };

export class HealthMonitor {
  private status = ServingStatus.NOT_SERVING;
  private shuttingDown = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly changes = new EventEmitter();

  constructor(
    /** Names answered besides "" (the whole server). */
    readonly serviceNames: readonly string[],
    private readonly probe: () => Promise<boolean>,
    private readonly intervalMs = 2_000,
  ) {
    this.changes.setMaxListeners(0);
  }

  /** Probes once now, then keeps probing in the background. */
  async start(): Promise<void> {
    await this.check();
    this.timer = setInterval(() => void this.check(), this.intervalMs);
    this.timer.unref();
  }

  async check(): Promise<ServingStatus> {
    const reachable = await this.probe().catch(() => false);
    this.set(reachable && !this.shuttingDown ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
    return this.status;
  }

  /** From now on NOT_SERVING, so balancers stop sending traffic before the server drains. */
  shutdown(): void {
    this.shuttingDown = true;
    clearInterval(this.timer);
    this.set(ServingStatus.NOT_SERVING);
    this.changes.emit("close");
  }

  current(service: string): ServingStatus | undefined {
    if (service !== "" && !this.serviceNames.includes(service)) return undefined;
    return this.status;
  }

  private set(status: ServingStatus): void {
    if (status === this.status) return;
    this.status = status;
    this.changes.emit("change", status);
  }

  service(): ServiceImpl<typeof Health> {
    const monitor = this;
    return {
      check: async (req) => {
        const status = this.current(req.service);
        if (status === undefined) throw new DomainError("not_found", `service ${req.service}: unknown`);
        return { status };
      },
      list: async () => ({
        statuses: Object.fromEntries(["", ...this.serviceNames].map((name) => [name, { status: this.status }])),
      }),
      async *watch(req, ctx) {
        let last = monitor.current(req.service) ?? ServingStatus.SERVICE_UNKNOWN;
        yield { status: last };
        if (monitor.shuttingDown) return;
        const abort = new AbortController();
        ctx.signal.addEventListener("abort", () => abort.abort(), { once: true });
        monitor.changes.once("close", () => abort.abort());
        try {
          for await (const [status] of on(monitor.changes, "change", { signal: abort.signal })) {
            const next = monitor.current(req.service) === undefined ? ServingStatus.SERVICE_UNKNOWN : (status as ServingStatus);
            if (next !== last) yield { status: (last = next) };
          }
        } catch (error) {
          if (!abort.signal.aborted) throw error;
        }
      },
    };
  }
}
