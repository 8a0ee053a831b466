/**
 * store/engine/ (see its README.md): the MongoDB engine process and what its failures mean:
 * this module (the embedded engine), storage-errors.ts and storage-watchdog.ts. It imports only
 * core/; every other folder of the store may import it.
 */
// Runs bin/mongod-embedded (the embedded MongoDB engine behind a mongod-compatible TCP front) as
// a child process, for `npm start` without MONGODB_URI. A child process rather than in-process
// because the engine allows one open directory per process, may need the glibc shim preloaded
// (see scripts/postinstall.mjs), and must flush on shutdown even if the server crashes.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export interface EmbeddedMongoOptions {
  /** Data directory; created if missing and kept across restarts. */
  dbPath: string;
  /** TCP port; omitted or 0 lets the launcher pick a free one and report it. */
  port?: number;
  /** Address to listen on (default 127.0.0.1). */
  bindIp?: string;
  /** How long to wait for "Waiting for connections" (default 60 s). */
  startTimeoutMs?: number;
  /** WiredTiger cache in GB (mongod's --wiredTigerCacheSizeGB); default mongod's own: half of (RAM - 1 GB). */
  cacheSizeGB?: number;
}

export interface EmbeddedMongo {
  /** mongodb:// URI for the official driver: the engine's TCP front (`bindIp`:port). */
  uri: string;
  /**
   * The engine's own Unix socket, as a mongodb:// URI, for a client on this host (this user's
   * only: its directory is private): the same engine without the TCP front's hop in each
   * direction. Measured on a warm read's one `find`: 0.95–1.08 against 0.97–1.23 ms at p50 and
   * 770–860 against 820–980 µs of the engine process's CPU per call.
   */
  socketUri: string;
  /** SIGTERM (data is flushed), then SIGKILL if it has not exited in time. Idempotent. */
  stop(): Promise<void>;
  pid: number;
}

const STOP_TIMEOUT_MS = 15_000;

/**
 * bin/mongod-embedded, found by walking up from this file: it runs both as src/store/engine/*.ts
 * and compiled as dist/src/store/engine/*.js.
 */
export function embeddedMongodPath(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'bin', 'mongod-embedded');
    if (existsSync(candidate)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`bin/mongod-embedded not found above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

/** Where a client should connect for a given listen address. */
function connectHost(bindIp: string): string {
  if (bindIp === '0.0.0.0') return '127.0.0.1';
  if (bindIp === '::') return '[::1]';
  return bindIp.includes(':') ? `[${bindIp}]` : bindIp;
}

export async function startEmbeddedMongo(options: EmbeddedMongoOptions): Promise<EmbeddedMongo> {
  const dbPath = path.resolve(options.dbPath);
  const bindIp = options.bindIp ?? '127.0.0.1';
  const startTimeoutMs = options.startTimeoutMs ?? 60_000;
  await mkdir(dbPath, { recursive: true });

  // Port 0: the launcher binds an ephemeral port and reports it, so there is no window in which
  // another process could take a port picked in advance.
  const args = ['--dbpath', dbPath, '--port', String(options.port ?? 0), '--bind_ip', bindIp];
  if (options.cacheSizeGB !== undefined) args.push('--wiredTigerCacheSizeGB', String(options.cacheSizeGB));
  const child = spawn(embeddedMongodPath(), args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group: a terminal's Ctrl-C reaches only the server, which drains its calls
    // before it stops the engine. The engine still exits if the server dies without stopping it.
    detached: true,
    // Run the launcher on the same node as this process, whatever PATH says.
    env: { ...process.env, MONGOD_EMBEDDED_NODE: process.execPath, MONGOD_EMBEDDED_EXIT_WITH_PARENT: '1' },
  });

  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  // If this process exits without calling stop(), don't leave the engine running.
  const killOnExit = (): void => {
    child.kill('SIGTERM');
  };
  process.once('exit', killOnExit);

  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  let socketPath: string | undefined;
  const port = await new Promise<number>((resolve, reject) => {
    let settled = false;
    const failStart = (reason: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.removeListener('close', onClose);
      child.kill('SIGKILL');
      process.removeListener('exit', killOnExit);
      const details = stderr.trim() ? `:\n${stderr.trim()}` : '';
      reject(new Error(`mongod-embedded (dbPath ${dbPath}) ${reason}${details}`));
    };
    // 'close' rather than 'exit': by then stderr has been read to the end, for the message.
    const onClose = (code: number | null, signal: NodeJS.Signals | null): void =>
      failStart(`exited before it was ready (code ${code}, signal ${signal})`);
    const timer = setTimeout(() => failStart(`did not start within ${startTimeoutMs} ms`), startTimeoutMs);
    child.on('error', (error) => failStart(`failed: ${error.message}`));
    child.once('close', onClose);
    // Keep reading stdout for the child's whole life: a full pipe would block its log writes.
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (settled || !(line.includes('"Waiting for connections"') || line.includes('"Listening on"'))) return;
      let entry: { msg?: unknown; attr?: { port?: unknown; address?: unknown } };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        return;
      }
      // mongod's line for each address it listens on; the launcher's Unix socket comes before "Waiting for connections".
      if (entry.msg === 'Listening on' && typeof entry.attr?.address === 'string' && entry.attr.address.endsWith('.sock')) socketPath = entry.attr.address;
      if (typeof entry.attr?.port !== 'number') return;
      if (socketPath === undefined) return failStart('reported no Unix socket before "Waiting for connections"');
      settled = true;
      clearTimeout(timer);
      child.removeListener('close', onClose);
      resolve(entry.attr.port);
    });
  });

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      process.removeListener('exit', killOnExit);
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    })();
    return stopping;
  };

  return {
    uri: `mongodb://${connectHost(bindIp)}:${port}/?directConnection=true`,
    socketUri: `mongodb://${encodeURIComponent(socketPath!)}/?directConnection=true`,
    stop,
    pid: child.pid ?? -1,
  };
}
