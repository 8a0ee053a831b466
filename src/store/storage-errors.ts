import {
  MongoBulkWriteError,
  MongoError,
  MongoNetworkError,
  MongoNotConnectedError,
  MongoServerClosedError,
  MongoServerError,
  MongoServerSelectionError,
  MongoTopologyClosedError,
  MongoWriteConcernError,
} from "mongodb";

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

/** Driver errors (not exported as classes) of a pool that was closed or could not hand out a connection in time. */
const TRANSIENT_DRIVER_ERRORS = new Set(["MongoPoolClosedError", "MongoWaitQueueTimeoutError"]);

/**
 * MongoDB could not be reached, or could not take the operation for now (as opposed to refusing
 * it): worth waiting out. Callers see UNAVAILABLE, the code clients retry, and the writer spools.
 */
export function isStorageUnreachable(error: unknown): boolean {
  // A bulk write that lost its connection throws a MongoBulkWriteError (a MongoServerError
  // without a code) that carries the driver's network error as its `errorResponse`: judge that.
  if (error instanceof MongoBulkWriteError && error.errorResponse instanceof Error) {
    return isStorageUnreachable(error.errorResponse);
  }
  if (
    error instanceof MongoNetworkError ||
    error instanceof MongoServerSelectionError ||
    error instanceof MongoNotConnectedError ||
    error instanceof MongoTopologyClosedError ||
    error instanceof MongoServerClosedError
  ) {
    return true;
  }
  if (!(error instanceof MongoError)) return false;
  if (TRANSIENT_DRIVER_ERRORS.has(error.name)) return true;
  if (error.hasErrorLabel("RetryableWriteError") || error.hasErrorLabel("ResetPool")) return true;
  const code = error instanceof MongoWriteConcernError ? Number(error.result?.writeConcernError?.code ?? error.code) : Number(error.code);
  return (error instanceof MongoServerError || error instanceof MongoWriteConcernError) && TRANSIENT_CODES.has(code);
}
