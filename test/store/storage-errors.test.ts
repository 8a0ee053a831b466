/** Which MongoDB failures the service treats as "retry later" (UNAVAILABLE) rather than a fault. */
import { MongoNetworkError, MongoServerError } from "mongodb";
import { expect, it } from "vitest";
import { isStorageUnreachable } from "../../src/store/storage-errors.js";

const server = (code?: number) => new MongoServerError({ message: "x", ...(code === undefined ? {} : { code }) });

it("counts outages, shutdowns and write conflicts (a click claim other writers keep) as transient, and nothing else", () => {
  expect(isStorageUnreachable(new MongoNetworkError("connection reset"))).toBe(true);
  for (const code of [91, 11600, 10107, 112]) expect(isStorageUnreachable(server(code)), `code ${code}`).toBe(true);
  for (const code of [11000, 2, undefined]) expect(isStorageUnreachable(server(code)), `code ${code}`).toBe(false);
  expect(isStorageUnreachable(new Error("boom"))).toBe(false);
});
