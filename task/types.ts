/**
 * The contract between the server and the work it runs: a {@linkcode TaskHandler} validates a
 * task's data on the server (before `ACCEPTED`) and runs it inside a pool worker.
 *
 * @module
 */

/** Levels a handler may log at through {@linkcode TaskContext.logger}. */
export type TaskLogLevel = "debug" | "info" | "warn" | "error";

/**
 * A handler's logger: lines go to the server's log (category `asynctask.task.<name>`), tagged with
 * the task id, at the server's `--log-level` and `--log-format`.
 */
export type TaskLogger = Record<TaskLogLevel, (message: string, properties?: Record<string, unknown>) => void>;

/** What a handler gets besides its data while it runs. */
export interface TaskContext {
  /** The server's id of this task. */
  taskId: number;
  /** The task's name, as the client gave it. */
  task: string;
  /** 1 on the first run, 2 on the first retry, … */
  attempt: number;
  /** Aborted when the task must stop (timeout, shutdown): pass it to fetch, timers, child processes. */
  signal: AbortSignal;
  /**
   * Reports progress to the client that submitted the task (a `PROGRESS` reply): `percent` from 0
   * to 100, and an optional short message. Cheap to call often: only the latest report of each
   * moment is sent.
   */
  progress(percent: number, message?: string): void;
  /** Logs through the server's logger. */
  logger: TaskLogger;
}

/** One kind of task: `sms`, `echo`, `sleep`, or an operator's own. */
export interface TaskHandler<D = unknown, R = unknown> {
  /** The name clients use: `/task <name> …` or `{"task": "<name>"}`. */
  readonly name: string;
  /** One line for `--help` and `/stats`. */
  readonly description: string;
  /**
   * Checks and normalises the client's data before the task is accepted. Throw
   * {@linkcode InvalidDataError} to refuse it with `invalid_data`.
   */
  validate(data: unknown): D;
  /** The human message of the `ACCEPTED` reply. */
  accepted?(data: D): string;
  /** Does the work. Throwing fails the task with `handler_error` (or retries it). */
  run(data: D, ctx: TaskContext): Promise<R> | R;
  /** This task's own limit on a run, in ms (0 = none); else `--task-timeout`. */
  readonly timeoutMs?: number;
  /** This task's own number of retries; else `--retries`. */
  readonly retries?: number;
  /** Most runs of this task at once across the pool; else only the pool's size bounds it. */
  readonly concurrency?: number;
}

/**
 * The data of a request does not fit its task: the request is refused with `invalid_data`.
 *
 * @example
 * ```ts
 * import { InvalidDataError } from "./types.ts";
 * import assert from "node:assert/strict";
 * const err = new InvalidDataError("a phone number has 5 to 20 digits");
 * assert.equal(err.message, "a phone number has 5 to 20 digits");
 * ```
 */
export class InvalidDataError extends Error {
  override name = "InvalidDataError";
}

/**
 * A failure that retrying cannot fix (a rejected card, an unknown recipient): the task ends
 * `FAILED` at once, whatever `--retries` says. Any error with `permanent: true` counts too.
 *
 * @example
 * ```ts
 * import { PermanentError } from "./types.ts";
 * import assert from "node:assert/strict";
 * const err = new PermanentError("no such mailbox");
 * assert.ok(err.permanent);
 * ```
 */
export class PermanentError extends Error {
  override name = "PermanentError";
  readonly permanent = true;
}

/**
 * A failure worth retrying after a delay the other side asked for (an HTTP `Retry-After`): the
 * retry waits `retryAfterMs` instead of the usual backoff (up to `--retry-max-delay`).
 *
 * @example
 * ```ts
 * import { RetryLaterError } from "./types.ts";
 * import assert from "node:assert/strict";
 * const err = new RetryLaterError("HTTP 429 Too Many Requests", 30_000);
 * assert.equal(err.retryAfterMs, 30000);
 * ```
 */
export class RetryLaterError extends Error {
  override name = "RetryLaterError";
  constructor(message: string, readonly retryAfterMs: number) {
    super(message);
  }
}

/**
 * Waits `ms` milliseconds, or rejects with the signal's reason as soon as it is aborted.
 *
 * @example
 * ```ts
 * import { abortableDelay } from "./types.ts";
 * await abortableDelay(10, new AbortController().signal);
 * ```
 */
export function abortableDelay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
