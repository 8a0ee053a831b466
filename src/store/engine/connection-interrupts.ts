/**
 * Commands whose connection the driver interrupts end instead of waiting for ever.
 *
 * When a check of the driver's monitor times out (connectTimeoutMS: the engine paused, busy or
 * restarting), the driver clears the pool and interrupts the connections in use: it destroys
 * their sockets and fails the commands waiting for a reply. A command still being written waits
 * for its socket's `drain` instead, which a destroyed socket never emits (driver 7.0.0,
 * `Connection.writeCommand`): the operation never ends, even once the engine answers again. Any
 * command larger than the socket's 16 KiB buffer waits for `drain` (a batch's insert, its pending
 * record, its click look-up), so a batch write could hang for good in "storing" — its events
 * stored by an earlier command and never counted, and, answered from the spool meanwhile, a
 * write abandoned for ever (reads UNAVAILABLE until a restart). Reproduced with a SIGSTOPped engine
 * (test/store/engine/connection-interrupts.test.ts).
 *
 * The driver ends an operation when the `signal` it was given aborts, `drain` wait included. So
 * this aborts the signal it hands out whenever the pool is cleared with in-use connections
 * interrupted, and hands out a fresh one from then on: the operations it aborts are those on the
 * connections just destroyed, and any still waiting for a connection of the cleared pool (which
 * would fail anyway). They fail as a network error: UNAVAILABLE, and a batch settled as failed.
 */
import { setMaxListeners } from "node:events";
import { MongoNetworkError, type MongoClient } from "mongodb";

/** A controller whose signal any number of concurrent operations may listen to. */
function sharedController(): AbortController {
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  return controller;
}

export class ConnectionInterrupts {
  private controller = sharedController();
  /** Pool clears with in-use connections interrupted so far (for tests and logs). */
  interrupts = 0;
  /**
   * Pool clears of any kind so far: each follows a network error on a connection to the engine
   * (killed, restarted, cut off, or a check timed out). An engine that was killed may come back
   * without the last writes it acknowledged (the embedded engine does, now and then; see
   * test/store/write/left-records.test.ts), so writers look at what they left behind after one
   * (DurableWriter.settleFailedBatches).
   */
  clears = 0;

  constructor(client: Pick<MongoClient, "on">) {
    client.on("connectionPoolCleared", (event) => {
      this.clears++;
      if (!event.interruptInUseConnections) return;
      const interrupted = this.controller;
      this.controller = sharedController();
      this.interrupts++;
      interrupted.abort(new MongoNetworkError(`the driver interrupted the connections in use to ${event.address} (its check of the server timed out)`));
    });
  }

  /** The signal to give an operation now: aborted if its connection is interrupted. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }
}
