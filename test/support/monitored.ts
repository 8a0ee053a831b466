/** A store's collections through a MongoDB client whose every command is seen, for tests that count round trips. */
import { MongoClient, type CommandStartedEvent } from "mongodb";
import { inject } from "vitest";
import { collections, type Collections } from "../../src/store/schema/documents.js";

export interface Monitored {
  monitored: MongoClient;
  /** `<command> <collection>` of every command sent, in order (clear it to start counting). */
  commands: string[];
  c: Collections;
}

export async function monitoredCollections(dbName: string): Promise<Monitored> {
  const monitored = new MongoClient(inject("mongoUri"), { monitorCommands: true });
  await monitored.connect();
  const commands: string[] = [];
  monitored.on("commandStarted", (e: CommandStartedEvent) => commands.push(`${e.commandName} ${String(e.command[e.commandName])}`));
  return { monitored, commands, c: collections(monitored.db(dbName)) };
}
