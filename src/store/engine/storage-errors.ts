/**
 * What a failure raised while talking to MongoDB means for the caller. Judged from the other
 * side: everything the driver or Node's sockets raise is "storage unavailable" unless it is known
 * to be a refusal of our own command (a defect, INTERNAL) — an allow-list of outage shapes kept
 * missing shapes (a socket written after the engine's FIN surfaced as INTERNAL under load).
 */
import { MongoAPIError, MongoBulkWriteError, MongoError, MongoParseError, MongoServerError, MongoWriteConcernError } from "mongodb";

/**
 * Server codes of a MongoDB that is going away, coming back or not (yet) the primary: the
 * operation may well succeed later. A killed mongod shows up as a network error, but one being
 * stopped, restarted or stepping down answers with these (or with the RetryableWriteError label).
 */
const TRANSIENT_CODES = new Set([
  6, // HostUnreachable
  7, // HostNotFound
  89, // NetworkTimeout
  112, // WriteConflict: another writer holds the document (also what a click claim raises when other writers keep it claimed)
  91, // ShutdownInProgress
  134, // ReadConcernMajorityNotAvailableYet
  189, // PrimarySteppedDown
  262, // ExceededTimeLimit
  9001, // SocketException
  10107, // NotWritablePrimary
  11600, // InterruptedAtShutdown
  11602, // InterruptedDueToReplStateChange
  13435, // NotPrimaryNoSecondaryOk
  13436, // NotPrimaryOrSecondary
]);

/** Labels the server or the driver put on failures worth retrying. */
const TRANSIENT_LABELS = ["RetryableWriteError", "ResetPool", "TransientTransactionError", "NetworkError", "SystemOverloadedError"];

/**
 * API errors the driver raises about a client, topology or server that is closed or not
 * connected (during shutdown, or a topology torn down by an outage): the storage, not our call.
 * Every other MongoAPIError (an invalid argument, a cursor reused) is a defect of ours.
 */
const CLOSED_API_ERRORS = new Set(["MongoNotConnectedError", "MongoServerClosedError", "MongoTopologyClosedError", "MongoClientClosedError", "MongoExpiredSessionError"]);

/**
 * Node's codes for a connection that failed, was refused, reset, half-closed (EPIPE is what
 * `Socket.writeAfterFIN` raises: "This socket has been ended by the other party") or destroyed.
 */
const NETWORK_SYSTEM_CODES = new Set([
  "EPIPE",
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ENETUNREACH",
  "ENETDOWN",
  "ENETRESET",
  "EAI_AGAIN",
  "ENOTFOUND",
  "ERR_STREAM_DESTROYED",
  "ERR_STREAM_WRITE_AFTER_END",
  "ERR_STREAM_PREMATURE_CLOSE",
  "ERR_SOCKET_CLOSED",
  "ERR_SOCKET_CLOSED_BEFORE_CONNECTION",
  "ERR_SOCKET_CONNECTION_TIMEOUT",
]);

/** The engine has not answered a ping for the watchdog's timeout (see storage-watchdog.ts). */
export class StorageUnresponsiveError extends Error {
  constructor(timeoutMs: number) {
    super(`storage is not responding (no answer to a ping for ${timeoutMs} ms)`);
    this.name = "StorageUnresponsiveError";
  }
}

/** MongoDB stopped an operation at its maxTimeMS: the caller's deadline passed. */
export const MAX_TIME_EXPIRED = 50;

export type StorageFailure = "unavailable" | "deadline_exceeded";

/**
 * "unavailable" when MongoDB could not be reached or could not take the operation for now
 * (callers see UNAVAILABLE, the code clients retry, and the writer spools); "deadline_exceeded"
 * when the engine stopped it at the caller's deadline; undefined for anything else (a refusal of
 * our command, such as a duplicate key or a malformed pipeline, or an error of our own code).
 */
export function storageFailure(error: unknown, depth = 0): StorageFailure | undefined {
  if (!(error instanceof Error) || depth > 4) return undefined;
  if (error instanceof StorageUnresponsiveError) return "unavailable";
  // A bulk write that lost its connection throws a MongoBulkWriteError (a MongoServerError
  // without a code) that carries the driver's own error as its `errorResponse`: judge that.
  if (error instanceof MongoBulkWriteError && error.errorResponse instanceof Error) return storageFailure(error.errorResponse, depth + 1);
  if (error instanceof MongoError) {
    if (TRANSIENT_LABELS.some((label) => error.hasErrorLabel(label))) return "unavailable";
    if (error instanceof MongoServerError) {
      const code = error instanceof MongoWriteConcernError ? Number(error.result?.writeConcernError?.code ?? error.code) : Number(error.code);
      if (code === MAX_TIME_EXPIRED) return "deadline_exceeded";
      return TRANSIENT_CODES.has(code) ? "unavailable" : undefined;
    }
    if (error instanceof MongoParseError) return undefined; // our configuration, not the engine
    if (error instanceof MongoAPIError) return CLOSED_API_ERRORS.has(error.name) ? "unavailable" : storageFailure(error.cause, depth + 1);
    // Network, pool (cleared, closed, wait-queue timeout), server selection, operation
    // timeouts and the driver's runtime errors: the engine did not answer as it should.
    return "unavailable";
  }
  const code = (error as NodeJS.ErrnoException).code;
  if (typeof code === "string" && NETWORK_SYSTEM_CODES.has(code)) return "unavailable";
  return storageFailure(error.cause, depth + 1);
}

/** MongoDB could not be reached, or could not take the operation for now: worth waiting out. */
export function isStorageUnreachable(error: unknown): boolean {
  return storageFailure(error) === "unavailable";
}

/** What a raw write command (`insert`, `update`) answers besides its counts. */
export interface WriteReply {
  writeErrors?: { index: number; code: number; errmsg: string }[];
  writeConcernError?: { code: number; errmsg: string };
}

/**
 * The failure a raw write command's reply reports, as the MongoServerError (with the server's
 * code) that storageFailure judges: its write concern error, else its first write error whose code
 * is not `tolerated`. A plain Error here made a transient answer (a write concern error while the
 * engine shuts down) an INTERNAL one.
 */
export function writeReplyError(reply: WriteReply, tolerated?: number): MongoServerError | undefined {
  if (reply.writeConcernError) return new MongoServerError({ message: `write concern: ${reply.writeConcernError.errmsg}`, code: reply.writeConcernError.code });
  const other = (reply.writeErrors ?? []).find((e) => e.code !== tolerated);
  return other && new MongoServerError({ message: other.errmsg, code: other.code });
}
