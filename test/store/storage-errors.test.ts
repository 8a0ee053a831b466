/** Which MongoDB failures the service treats as "retry later" (UNAVAILABLE) rather than a fault. */
import { MongoBulkWriteError, MongoNetworkError, MongoServerError } from "mongodb";
import { expect, it } from "vitest";
import { isStorageUnreachable } from "../../src/store/storage-errors.js";

const server = (code?: number) => new MongoServerError({ message: "x", ...(code === undefined ? {} : { code }) });

it("counts outages, shutdowns and write conflicts (a click claim other writers keep) as transient, and nothing else", () => {
  expect(isStorageUnreachable(new MongoNetworkError("connection reset"))).toBe(true);
  for (const code of [91, 11600, 10107, 112]) expect(isStorageUnreachable(server(code)), `code ${code}`).toBe(true);
  for (const code of [11000, 2, undefined]) expect(isStorageUnreachable(server(code)), `code ${code}`).toBe(false);
  expect(isStorageUnreachable(new Error("boom"))).toBe(false);
});

// The driver wraps whatever a bulk write's command threw in a MongoBulkWriteError, exactly so
// (mongodb/lib/bulk/common.js, executeCommands): "Error is a driver related error not a bulk op
// error". A killed mongod during insertMany/bulkWrite reaches us this way, not as a network error.
it("sees through a bulk write that lost its connection, but not through a bulk write the server refused", () => {
  const result = {} as ConstructorParameters<typeof MongoBulkWriteError>[1];
  const lostConnection = new MongoBulkWriteError(new MongoNetworkError("connection 51 to 127.0.0.1:33097 closed"), result);
  expect(isStorageUnreachable(lostConnection)).toBe(true);
  const duplicateKey = new MongoBulkWriteError({ message: "E11000 duplicate key", code: 11000, writeErrors: [] }, result);
  expect(isStorageUnreachable(duplicateKey)).toBe(false);
  const refusedByServer = new MongoBulkWriteError(server(2), result);
  expect(isStorageUnreachable(refusedByServer)).toBe(false);
});
