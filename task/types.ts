/**
 * The contract between the server and the work it runs: a {@linkcode TaskHandler} validates a
 * task's data on the server (before `ACCEPTED`) and runs it inside a pool worker.
 *
 * @module
 */

/** Settings that the operator gives the built-in handlers (`serve --sms-delay`, …). */
export interface HandlerSettings {
  /** How long the `sms` task pretends to send, in milliseconds. */
  smsDelayMs: number;
  /**
   * URLs of extra handler modules, each exporting `handlers: TaskHandler[]`. Loaded on the server
   * (to validate) and in every worker (to run).
   */
  modules?: string[];
  /**
   * The operator's tasks from the config file's `tasks` map (see `task/config.ts`). When given,
   * they are the server's tasks: a built-in is served only if the map declares it (`builtin`).
   */
  tasks?: TaskSpec[];
}

/** What every declared task may set, whatever its kind. Durations in ms, sizes in bytes. */
interface TaskSpecBase {
  name: string;
  /** Where it was declared, for messages: `config file /etc/asynctask.json: tasks.sms`. */
  where?: string;
  description?: string;
  timeoutMs?: number;
  retries?: number;
  concurrency?: number;
  /** A JSON Schema the task's data must match before it is accepted. */
  schema?: Record<string, unknown> | boolean;
}

/** An operator's task, as the config file declares it (already checked and resolved). */
export type TaskSpec =
  & TaskSpecBase
  & (
    | {
      kind: "command";
      /** argv: the program (an absolute path, or a name looked up in PATH) and its arguments. */
      command: string[];
      cwd?: string;
      env?: Record<string, string>;
      /** Variables of the server's environment the program must not see (the webhooks' `secret-env`s). */
      hideEnv?: string[];
      /** Most bytes of stdout kept as the result. */
      maxOutput: number;
    }
    | {
      kind: "webhook";
      url: string;
      headers: Record<string, string>;
      /** The HMAC-SHA256 key of the signature header; no signature without it. */
      secret?: string;
      /** Most bytes of the response body kept as the result. */
      maxOutput: number;
    }
    | {
      kind: "module";
      /** The module's URL (`file:///…`). */
      module: string;
    }
    | {
      /** One of the built-in tasks (`sms`, `echo`, `sleep`), by its own name, with this entry's limits. */
      kind: "builtin";
    }
  );

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

/**
 * A context for calling a handler outside the server (tests, examples): progress and log calls
 * are collected in the returned arrays.
 *
 * @example
 * ```ts
 * import { testContext } from "./types.ts";
 * const ctx = testContext({ taskId: 7 });
 * ctx.progress(50, "half way");
 * console.log(ctx.reports); // [{ percent: 50, message: "half way" }]
 * ```
 */
export function testContext(
  over: Partial<Pick<TaskContext, "taskId" | "task" | "attempt" | "signal">> = {},
): TaskContext & {
  reports: { percent: number; message?: string }[];
  logs: { level: TaskLogLevel; message: string }[];
} {
  const reports: { percent: number; message?: string }[] = [];
  const logs: { level: TaskLogLevel; message: string }[] = [];
  const at = (level: TaskLogLevel) => (message: string) => void logs.push({ level, message });
  return {
    taskId: 1,
    task: "test",
    attempt: 1,
    signal: new AbortController().signal,
    ...over,
    progress: (percent, message) => void reports.push(message === undefined ? { percent } : { percent, message }),
    logger: { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") },
    reports,
    logs,
  };
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
 * const err = new InvalidDataError("a phone number has 5 to 20 digits");
 * console.log(err.message);
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
 * const err = new PermanentError("no such mailbox");
 * console.log(err.permanent); // true
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
 * const err = new RetryLaterError("HTTP 429 Too Many Requests", 30_000);
 * console.log(err.retryAfterMs); // 30000
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
