/**
 * The client's retry policy against a connection that drops after the server has written the
 * event but before the answer arrives: the worst case for double counting.
 */
import net from "node:net";
import { afterAll, beforeAll, beforeEach, expect, it } from "vitest";
import { createClickAnalyticsClient, EventOutcome, Status, type ClickAnalyticsClient, type ServiceError } from "../../src/client/index.js";
import { startHarness, type Harness } from "../support/harness.js";

/** A TCP proxy that, once armed, swallows the server's replies until one contains `needle`, then cuts the connection. */
class DroppingProxy {
  private readonly server: net.Server;
  private needle: Buffer | undefined;
  drops = 0;
  port = 0;

  constructor(private readonly target: number) {
    this.server = net.createServer((downstream) => {
      const upstream = net.connect(this.target, "127.0.0.1");
      const held: Buffer[] = [];
      const cut = () => {
        downstream.destroy();
        upstream.destroy();
      };
      downstream.on("error", cut).on("close", cut);
      upstream.on("error", cut).on("close", cut);
      downstream.pipe(upstream);
      upstream.on("data", (chunk: Buffer) => {
        if (!this.needle) return void downstream.write(chunk);
        held.push(chunk);
        if (Buffer.concat(held).includes(this.needle)) {
          this.needle = undefined;
          this.drops++;
          cut();
        }
      });
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  arm(needle: string): void {
    this.needle = Buffer.from(needle);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.unref();
    });
  }
}

let h: Harness;
let proxy: DroppingProxy;
let client: ClickAnalyticsClient;
beforeAll(async () => {
  h = await startHarness();
  proxy = new DroppingProxy(h.server.port);
  await proxy.listen();
});
beforeEach(async () => {
  await h.server.store.reset();
  client?.close();
  client = createClickAnalyticsClient(`127.0.0.1:${proxy.port}`, { defaultTimeoutMs: 15_000 });
  // Both of the client's channels are connected before anything is dropped (a held-back
  // handshake would stall the call rather than fail it): plain calls, and keyed writes.
  await client.getCtr({});
  await client.logImpression({ eventId: `warm-up-${Date.now()}`, userId: "u", query: "q", variant: "search_v1", resultsCount: 1, responseTimeMs: 1 });
});
afterAll(async () => {
  client.close();
  await proxy.close();
  await h.close();
});

const click = { userId: "u", rank: 1, searchQuery: "q", variant: "search_v1", responseTimeMs: 3 };

it("retries a LogClick that carries an event_id, and the retry is not counted twice", async () => {
  proxy.arm("retry-me-1");
  const res = await client.logClick({ ...click, productId: "p", eventId: "retry-me-1" });
  expect(proxy.drops).toBe(1);
  expect(res.eventId).toBe("retry-me-1");
  expect(await h.server.store.collections.clicks.countDocuments({ event_id: "retry-me-1" })).toBe(1);
});

it("retries a LogEvents batch whose events all carry ids, counting each event once", async () => {
  const drops = proxy.drops;
  const events = Array.from({ length: 50 }, (_, i) => ({ kind: { case: "click" as const, value: { ...click, productId: `p${i}`, eventId: `batch-${i}` } } }));
  proxy.arm("batch-49");
  const res = await client.logEvents({ events });
  expect(proxy.drops).toBe(drops + 1);
  // the answer is the retry's: the first attempt had already written every event
  expect(res.results.every((r) => r.outcome === EventOutcome.DUPLICATE)).toBe(true);
  expect(await h.server.store.collections.clicks.countDocuments()).toBe(50);
});

it("does not retry a call without an event_id: the caller sees UNAVAILABLE", async () => {
  const drops = proxy.drops;
  proxy.arm("unkeyed-product");
  const error = (await client.logClick({ ...click, productId: "unkeyed-product" }).catch((e: unknown) => e)) as ServiceError;
  expect(proxy.drops).toBe(drops + 1);
  expect(error.code).toBe(Status.UNAVAILABLE);
  // it was written once, and not again: exactly why writes that may be retried need event ids
  expect(await h.server.store.collections.clicks.countDocuments({ product_id: "unkeyed-product" })).toBe(1);
});
