/**
 * The messages between the server (main isolate) and its pool workers. Both directions carry
 * batches: one `postMessage` per worker per event-loop turn, not one per task (see FACTS: a batch
 * of 64 is ~4x cheaper per task than single messages).
 *
 * @module
 */
import type { HandlerSettings } from "./types.ts";

/** A task as a worker sees it: its data is already validated and normalised by the handler. */
export interface JobMessage {
  id: number;
  task: string;
  data: unknown;
  attempt: number;
}

/** Main → worker. `abort` asks the handlers of those tasks to stop (their signal is aborted). */
export type ToWorker =
  | { type: "init"; workerId: number; settings: HandlerSettings }
  | { type: "run"; jobs: JobMessage[] }
  | { type: "abort"; ids: number[] };

/** Codes a task can end with besides success. */
export type FailureCode = "handler_error" | "timeout" | "worker_crashed" | "shutting_down";

/**
 * How one run of a task ended. `ms` is the handler's own run time. `permanent` marks a failure the
 * handler said retrying cannot fix (`PermanentError` in `types.ts`).
 */
export type Outcome =
  | { id: number; ok: true; result: unknown; ms: number }
  | { id: number; ok: false; code: FailureCode; message: string; ms: number; permanent?: boolean };

/**
 * Worker → main. `aborted` acknowledges an `abort`: it proves the worker's event loop still turns.
 * `fatal` reports an error that escaped a handler; the worker then ends itself.
 */
export type FromWorker =
  | { type: "settled"; outcomes: Outcome[] }
  | { type: "aborted"; ids: number[] }
  | { type: "fatal"; message: string };
