/**
 * Which failures the service treats as "retry later" (UNAVAILABLE), which as the caller's
 * deadline, and which as a defect (INTERNAL). Each error is constructed as the driver or Node
 * constructs it (the driver's sources are cited), and also judged through toServiceError, the one
 * place a thrown error becomes a status.
 */
import { createRequire } from "node:module";
import { status as Status } from "@grpc/grpc-js";
import {
  MongoBulkWriteError,
  MongoClientClosedError,
  MongoCursorInUseError,
  MongoDecompressionError,
  MongoExpiredSessionError,
  MongoInvalidArgumentError,
  MongoNetworkError,
  MongoNetworkTimeoutError,
  MongoNotConnectedError,
  MongoOperationTimeoutError,
  MongoParseError,
  MongoServerClosedError,
  MongoServerError,
  MongoServerSelectionError,
  MongoTopologyClosedError,
  MongoUnexpectedServerResponseError,
  MongoWriteConcernError,
} from "mongodb";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../../src/server/logger.js";
import { toServiceError } from "../../../src/server/status.js";
import { isStorageUnreachable, StorageUnresponsiveError, storageFailure, writeReplyError } from "../../../src/store/engine/storage-errors.js";

// The pool's errors are not exported from the package's entry; the driver raises them from here.
const cmap = createRequire(import.meta.url)("mongodb/lib/cmap/errors.js") as Record<string, new (...args: unknown[]) => Error>;
const pool = { address: "127.0.0.1:27017", serverGeneration: 3, options: {} };

const server = (code?: number, labels?: string[]) => new MongoServerError({ message: "x", ...(code === undefined ? {} : { code }), ...(labels ? { errorLabels: labels } : {}) });
/** As Node's net.Socket raises it when written after the peer's FIN (lib/net.js, writeAfterFIN). */
const writeAfterFin = () => Object.assign(new Error("This socket has been ended by the other party"), { code: "EPIPE" });
/** As libuv reports a reset connection (a system error with errno, code and syscall). */
const systemError = (code: string, syscall = "read") => Object.assign(new Error(`${syscall} ${code}`), { errno: -104, code, syscall });

const unavailable: [string, () => unknown][] = [
  ["MongoNetworkError (connection closed)", () => new MongoNetworkError("connection 51 to 127.0.0.1:33097 closed")],
  ["MongoNetworkTimeoutError (socket timeout)", () => new MongoNetworkTimeoutError("connection 3 to 127.0.0.1:27017 timed out")],
  ["MongoPoolClearedError (cmap/errors.js)", () => new cmap.PoolClearedError!(pool)],
  ["MongoPoolClearedOnNetworkError", () => new cmap.PoolClearedOnNetworkError!(pool)],
  ["MongoPoolClosedError", () => new cmap.PoolClosedError!(pool)],
  ["MongoWaitQueueTimeoutError", () => new cmap.WaitQueueTimeoutError!("Timed out while checking out a connection from connection pool", "127.0.0.1:27017")],
  ["MongoServerSelectionError", () => new MongoServerSelectionError("Server selection timed out after 2000 ms", { type: "Unknown", servers: new Map(), error: null } as never)],
  ["MongoTopologyClosedError", () => new MongoTopologyClosedError()],
  ["MongoNotConnectedError", () => new MongoNotConnectedError("Client must be connected before running operations")],
  ["MongoServerClosedError", () => new MongoServerClosedError()],
  ["MongoClientClosedError", () => new MongoClientClosedError()],
  ["MongoExpiredSessionError", () => new MongoExpiredSessionError()],
  ["MongoOperationTimeoutError (CSOT)", () => new MongoOperationTimeoutError("Timed out during server selection")],
  ["MongoUnexpectedServerResponseError", () => new MongoUnexpectedServerResponseError("Unexpected response")],
  ["MongoDecompressionError", () => new MongoDecompressionError("bad zlib stream")],
  ["a bulk write that lost its connection (bulk/common.js wraps the driver error)", () => new MongoBulkWriteError(new MongoNetworkError("closed"), {} as never)],
  ["a bulk write that lost its connection with a socket error", () => new MongoBulkWriteError(writeAfterFin() as never, {} as never)],
  ["Socket.writeAfterFIN: EPIPE 'This socket has been ended by the other party'", writeAfterFin],
  ["ECONNRESET", () => systemError("ECONNRESET")],
  ["ECONNREFUSED", () => systemError("ECONNREFUSED", "connect")],
  ["EPIPE from write", () => systemError("EPIPE", "write")],
  ["ETIMEDOUT", () => systemError("ETIMEDOUT", "connect")],
  ["ERR_STREAM_DESTROYED", () => Object.assign(new Error("Cannot call write after a stream was destroyed"), { code: "ERR_STREAM_DESTROYED" })],
  ["ERR_SOCKET_CLOSED", () => Object.assign(new Error("Socket is closed"), { code: "ERR_SOCKET_CLOSED" })],
  ["an error caused by a network error", () => new Error("read failed", { cause: new MongoNetworkError("closed") })],
  ["an API error caused by a socket error", () => new MongoInvalidArgumentError("wrapped", { cause: systemError("ECONNRESET") })],
  ["the watchdog's verdict", () => new StorageUnresponsiveError(2_500)],
  ...[6, 7, 89, 91, 112, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436].map((code): [string, () => unknown] => [`MongoServerError code ${code}`, () => server(code)]),
  ["a server error labelled RetryableWriteError", () => server(999, ["RetryableWriteError"])],
  ["a server error labelled ResetPool", () => server(999, ["ResetPool"])],
  ["a write concern error that is transient", () => new MongoWriteConcernError({ writeConcernError: { code: 91, errmsg: "shutting down" } } as never)],
];

const defects: [string, () => unknown][] = [
  ["MongoServerError BadValue (2): our command was wrong", () => server(2)],
  ["MongoServerError without a code", () => server()],
  ["duplicate key (11000): its own case", () => server(11000)],
  ["a write concern error that is not transient", () => new MongoWriteConcernError({ writeConcernError: { code: 100, errmsg: "unsatisfiable" } } as never)],
  ["a bulk write the server refused", () => new MongoBulkWriteError(server(2) as never, {} as never)],
  ["MongoInvalidArgumentError: our misuse of the driver", () => new MongoInvalidArgumentError("Argument must be a string")],
  ["MongoCursorInUseError", () => new MongoCursorInUseError()],
  ["MongoParseError: a bad URI in our configuration", () => new MongoParseError("Invalid scheme")],
  ["a TypeError of our own code", () => new TypeError("Cannot read properties of undefined")],
  ["a plain Error", () => new Error("boom")],
  ["a file-system error that is not a connection", () => systemError("ENOENT", "open")],
  ["a string", () => "not an error"],
];

describe("storage failures, judged from the other side", () => {
  it.each(unavailable)("UNAVAILABLE: %s", (_, make) => {
    const error = make();
    expect(storageFailure(error)).toBe("unavailable");
    expect(isStorageUnreachable(error)).toBe(true);
    expect(toServiceError(error, createLogger("silent"), "/t/M").code).toBe(Status.UNAVAILABLE);
  });

  it.each(defects)("not a storage outage: %s", (_, make) => {
    const error = make();
    expect(storageFailure(error)).toBeUndefined();
    const code = toServiceError(error, createLogger("silent"), "/t/M").code;
    expect([Status.INTERNAL, Status.ALREADY_EXISTS]).toContain(code);
  });

  it("the engine's maxTimeMS (50) is the caller's deadline", () => {
    expect(storageFailure(server(50))).toBe("deadline_exceeded");
    expect(isStorageUnreachable(server(50))).toBe(false);
    expect(toServiceError(server(50), createLogger("silent"), "/t/M").code).toBe(Status.DEADLINE_EXCEEDED);
  });
});

describe("raw write command replies (insert of events, update of interleaving rollup versions)", () => {
  it("a transient write concern error is UNAVAILABLE, a refused write INTERNAL, a tolerated code none", () => {
    const shuttingDown = writeReplyError({ writeConcernError: { code: 91, errmsg: "shutdown in progress" } });
    expect(storageFailure(shuttingDown)).toBe("unavailable");
    expect(toServiceError(shuttingDown, createLogger("silent"), "/t/M").code).toBe(Status.UNAVAILABLE);
    const refused = writeReplyError({ writeErrors: [{ index: 0, code: 121, errmsg: "Document failed validation" }] });
    expect(refused?.code).toBe(121);
    expect(storageFailure(refused)).toBeUndefined();
    expect(writeReplyError({ writeErrors: [{ index: 3, code: 11000, errmsg: "E11000" }] }, 11000)).toBeUndefined();
    expect(writeReplyError({ writeErrors: [{ index: 3, code: 11000, errmsg: "E11000" }] })?.code).toBe(11000);
    expect(writeReplyError({})).toBeUndefined();
  });
});
