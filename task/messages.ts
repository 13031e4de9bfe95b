/**
 * The messages between the server (main isolate) and its pool workers. Both directions carry
 * batches: one `postMessage` per worker per event-loop turn, not one per task (see FACTS: a batch
 * of 64 is ~4x cheaper per task than single messages).
 *
 * @module
 */
import type { HandlerSettings, TaskLogLevel } from "./types.ts";

/** Values per job in a `run` message: id, attempt, task, data. */
export const JOB_FIELDS = 4;
/** Values per successful run in a `settled` message's `done`: id, attempt, ms, result. */
export const DONE_FIELDS = 4;

/** A task as a worker sees it: its data is already validated and normalised by the handler. */
export interface JobMessage {
  id: number;
  task: string;
  data: unknown;
  attempt: number;
}

/**
 * Main → worker. `run` carries a batch of jobs flattened into one array, {@linkcode JOB_FIELDS}
 * values per job (`id, attempt, task, data, …`): measured, cloning one flat array costs less than
 * cloning an object per job. `abort` asks the handlers of those tasks to stop (their signal is aborted).
 */
export type ToWorker =
  | { type: "init"; workerId: number; settings: HandlerSettings }
  | { type: "run"; jobs: unknown[] }
  | { type: "abort"; ids: number[]; reason?: "timeout" | "shutdown" };

/** Codes a task can end with besides success. */
export type FailureCode = "handler_error" | "timeout" | "worker_crashed" | "shutting_down";

/**
 * How one run of a task ended. `ms` is the handler's own run time. `permanent` marks a failure the
 * handler said retrying cannot fix (`PermanentError` in `types.ts`); `retryAfterMs` a delay the
 * handler asked for before the retry (`RetryLaterError`).
 */
export type Outcome =
  | { id: number; attempt?: number; ok: true; result: unknown; ms: number }
  | {
    id: number;
    /** Which run of the task this is: a late outcome of an earlier run is not taken for a later one's. */
    attempt?: number;
    ok: false;
    code: FailureCode;
    message: string;
    ms: number;
    permanent?: boolean;
    retryAfterMs?: number;
  };

/** A running task's latest `ctx.progress()` report. */
export interface ProgressReport {
  id: number;
  attempt?: number;
  percent: number;
  message?: string;
}

/** A line a handler logged through `ctx.logger`. */
export interface TaskLogRecord {
  id: number;
  attempt?: number;
  level: TaskLogLevel;
  message: string;
  properties?: Record<string, unknown>;
}

/**
 * Worker → main. `settled` carries the runs that ended in a turn — successes flattened in `done`
 * ({@linkcode DONE_FIELDS} values each), failures as `outcomes` — with the progress reports and
 * log lines made before them (the server handles those first, so a task's PROGRESS always precedes
 * its final reply). `aborted` acknowledges an `abort`: it proves the worker's event loop still
 * turns. `fatal` reports an error that escaped a handler; the worker then ends itself.
 */
export type FromWorker =
  | { type: "settled"; done?: unknown[]; outcomes: Outcome[]; progress?: ProgressReport[]; logs?: TaskLogRecord[] }
  | { type: "aborted"; ids: number[] }
  /** The worker's OS thread id (Linux), so that the pool can lower the priority of a blocked worker. */
  | { type: "thread"; tid: number }
  /** The worker has loaded its handlers (or failed to): its tasks' timeouts count from now. */
  | { type: "ready" }
  | { type: "fatal"; message: string };
