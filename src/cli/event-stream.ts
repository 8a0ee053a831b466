/**
 * Server-Sent Events (text/event-stream) to any number of browsers. The latest message of each
 * event name is kept and sent to a browser as soon as it connects, so a page opened (or
 * reconnected) between two snapshots shows the current state at once.
 */
import type { IncomingMessage, ServerResponse } from "node:http";

/** A comment line this often keeps proxies and idle timeouts from closing a quiet stream. */
const HEARTBEAT_MS = 15_000;
/** How long a browser waits before reconnecting after the stream drops (the SSE `retry` field). */
const BROWSER_RETRY_MS = 2_000;

function frame(event: string, data: string): string {
  // A data line ends at a newline: JSON without raw newlines keeps each message one line.
  return `event: ${event}\ndata: ${data.replace(/\n/g, "\ndata: ")}\n\n`;
}

export class EventStreamHub {
  private readonly clients = new Set<ServerResponse>();
  private readonly latest = new Map<string, string>();
  private readonly heartbeat = setInterval(() => this.write(": heartbeat\n\n"), HEARTBEAT_MS).unref();

  /** Answers `request` with the event stream, starting with the latest message of each event. */
  attach(request: IncomingMessage, response: ServerResponse): void {
    response.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", connection: "keep-alive", "x-accel-buffering": "no" });
    response.write(`retry: ${BROWSER_RETRY_MS}\n\n`);
    for (const [event, data] of this.latest) response.write(frame(event, data));
    this.clients.add(response);
    request.once("close", () => this.clients.delete(response));
  }

  /** Sends `data` (JSON-encoded) as `event` to every browser and keeps it for those that come later. */
  publish(event: string, data: unknown): void {
    const json = JSON.stringify(data);
    this.latest.set(event, json);
    this.write(frame(event, json));
  }

  get size(): number {
    return this.clients.size;
  }

  /** Ends every stream (browsers see the server go and retry on their own). */
  close(): void {
    clearInterval(this.heartbeat);
    for (const response of this.clients) response.end();
    this.clients.clear();
  }

  private write(text: string): void {
    for (const response of this.clients) response.write(text);
  }
}
