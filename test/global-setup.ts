// One MongoDB for the whole test run, shared by every test file through inject('mongoUri');
// each file uses its own database name.
//
// By default that MongoDB is bin/mongod-embedded (the embedded engine behind a mongod-style
// launcher), run by mongodb-memory-server as its "system binary". With a system binary set,
// mongodb-memory-server never downloads: it uses that path or fails. Setting
// MONGOMS_SYSTEM_BINARY=/path/to/mongod runs the suite against a real mongod instead.
import { fileURLToPath } from 'node:url';
import { MongoMemoryServer } from 'mongodb-memory-server';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    mongoUri: string;
  }
}

const EMBEDDED_MONGOD = fileURLToPath(new URL('../bin/mongod-embedded', import.meta.url));
// The version bin/mongod-embedded --version reports ("db version v9.0.0-alpha0"), so that
// mongodb-memory-server's version check passes without a "Possible version conflict" warning.
const EMBEDDED_MONGOD_VERSION = '9.0.0';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // MONGOMS_SYSTEM_BINARY wins over the option anyway; leaving the version unset then lets
  // MONGOMS_VERSION (or the default) describe the user's mongod.
  const useEmbedded = !process.env.MONGOMS_SYSTEM_BINARY;
  const server = await MongoMemoryServer.create({
    binary: useEmbedded ? { systemBinary: EMBEDDED_MONGOD, version: EMBEDDED_MONGOD_VERSION } : {},
    instance: { launchTimeout: 60_000 },
    // Run the launcher on this same node binary, whatever PATH says.
    spawn: { env: { ...process.env, MONGOD_EMBEDDED_NODE: process.execPath } },
  });
  project.provide('mongoUri', server.getUri());
  return async () => {
    await server.stop();
  };
}
