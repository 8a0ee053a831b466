/**
 * A TCP proxy in front of the engine, for faults a killed or stopped process cannot make: a path
 * that accepts connections and then answers nothing on them (a middlebox that lost its state, an
 * engine that took a connection and never served it).
 */
import net from "node:net";

export interface TcpProxy {
  port: number;
  /**
   * From now on: connections open are closed (as when the engine dies), and new ones are accepted
   * but their bytes dropped and nothing answered, for good: restore() does not revive them.
   */
  blackhole(): void;
  /** New connections reach the engine again. */
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number, targetHost = "127.0.0.1"): Promise<TcpProxy> {
  let silent = false;
  const forwarded = new Set<net.Socket>();
  const all = new Set<net.Socket>();
  const server = net.createServer({ noDelay: true }, (client) => {
    all.add(client);
    client.on("error", () => undefined).on("close", () => all.delete(client));
    if (silent) {
      client.resume(); // read and drop
      return;
    }
    const upstream = net.connect(targetPort, targetHost);
    all.add(upstream);
    forwarded.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
    };
    upstream.on("error", drop).on("close", () => (all.delete(upstream), forwarded.delete(upstream), drop()));
    client.on("close", () => (forwarded.delete(client), drop()));
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    blackhole() {
      silent = true;
      for (const socket of forwarded) socket.destroy();
    },
    restore() {
      silent = false;
    },
    async close() {
      for (const socket of all) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
