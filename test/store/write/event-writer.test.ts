/**
 * A failed batch is settled from what it stored, so its writes must all have ended before the
 * batch is reported failed: allEnded rejects only after every write ended.
 */
import { expect, it } from "vitest";
import { allEnded } from "../../../src/store/write/event-writer.js";

const after = <T>(ms: number, f: () => T): Promise<T> => new Promise((resolve, reject) => setTimeout(() => { try { resolve(f()); } catch (e) { reject(e); } }, ms));

it("rejects with the first failure only once every write has ended, and resolves with every result in order", async () => {
  let slowEnded = false;
  const failure = new Error("insert failed");
  const outcome = await allEnded([after(5, () => { throw failure; }), after(60, () => (slowEnded = true))]).then(() => "resolved", (e: unknown) => e);
  expect(outcome).toBe(failure);
  expect(slowEnded, "the slower write had ended before the rejection").toBe(true);
  expect(await allEnded([after(20, () => 1), after(5, () => "two")])).toEqual([1, "two"]);
});
