/**
 * A pool worker: the worker thread that runs handlers. It receives batches of jobs, runs each with
 * the handler of its task name, and posts the outcomes back in batches, once per event-loop turn.
 *
 * A handler that throws fails only its own task (`handler_error`); the worker lives on.
 *
 * @module
 */
import os from "node:os";
import { parentPort, workerData } from "node:worker_threads";
import { createRegistry, type HandlerRegistry } from "./handlers/mod.ts";
import {
  DONE_FIELDS,
  type FromWorker,
  JOB_FIELDS,
  type JobMessage,
  type Outcome,
  type ProgressReport,
  type TaskLogRecord,
  type ToWorker,
} from "./messages.ts";
import type { TaskContext, TaskLogger, TaskLogLevel } from "./types.ts";

/** Set by the `init` message; jobs that arrive before it is loaded wait for it. */
let registry: Promise<HandlerRegistry> | undefined;

// What goes back to the server at the next flush.
/** Successful runs of this turn, flattened: {@linkcode DONE_FIELDS} values each. */
let doneOut: unknown[] = [];
/** Failed runs of this turn. */
let failedOut: Outcome[] = [];
/** The latest progress report of each task since the last flush: a handler may report often. */
let progressOut = new Map<number, ProgressReport>();
let logsOut: TaskLogRecord[] = [];
let flushScheduled = false;

function settle(outcome: Outcome): void {
  if (outcome.ok) doneOut.push(outcome.id, outcome.attempt, outcome.ms, outcome.result);
  else failedOut.push(outcome);
  scheduleFlush();
}

function scheduleFlush(): void {
  if (!flushScheduled) {
    flushScheduled = true;
    // A microtask queued now runs after the continuations already queued: the other jobs of the
    // same batch, which advance in step, settle before it and ride along. (setTimeout(0) would
    // batch more but costs >= 1 ms per round trip: Deno clamps it as Node does.)
    queueMicrotask(flush);
  }
}

function flush(): void {
  flushScheduled = false;
  const outcomes = failedOut;
  failedOut = [];
  const done = doneOut;
  doneOut = [];
  const msg: FromWorker = { type: "settled", done, outcomes };
  if (progressOut.size > 0) {
    msg.progress = [...progressOut.values()];
    progressOut = new Map();
  }
  if (logsOut.length > 0) {
    msg.logs = logsOut;
    logsOut = [];
  }
  try {
    port.postMessage(msg);
  } catch {
    // One result (or log property) could not be cloned (a function, a symbol, …): send them one by
    // one, and fail the ones that cannot travel instead of losing the whole batch.
    if (msg.progress || msg.logs) {
      const logs = msg.logs?.map((l) => ({ ...l, properties: undefined }));
      port.postMessage({ type: "settled", outcomes: [], progress: msg.progress, logs } satisfies FromWorker);
    }
    for (let i = 0; i < done.length; i += DONE_FIELDS) {
      const [id, attempt, ms, result] = done.slice(i, i + DONE_FIELDS) as [number, number, number, unknown];
      outcomes.push({ id, attempt, ok: true, ms, result });
    }
    for (const o of outcomes) {
      try {
        port.postMessage({ type: "settled", outcomes: [o] } satisfies FromWorker);
      } catch (e) {
        const message = `the handler's result cannot be sent back: ${(e as Error).message}`;
        port.postMessage(
          {
            type: "settled",
            outcomes: [{ id: o.id, attempt: o.attempt, ok: false, code: "handler_error", message, ms: o.ms }],
          } satisfies FromWorker,
        );
      }
    }
  }
}

/** The abort controllers of the tasks running here, by task id. */
const running = new Map<number, AbortController>();

function context(job: JobMessage, controller: AbortController): TaskContext {
  const { id, attempt } = job;
  // The handler has returned: nothing is listening any more.
  const over = () => running.get(id) !== controller;
  const at = (level: TaskLogLevel) => (message: string, properties?: Record<string, unknown>) => {
    if (over()) return;
    logsOut.push({ id, attempt, level, message: String(message), ...(properties ? { properties } : {}) });
    scheduleFlush();
  };
  const logger: TaskLogger = { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
  return {
    taskId: id,
    task: job.task,
    attempt: job.attempt,
    signal: controller.signal,
    logger,
    progress(percent: number, message?: string) {
      if (over()) return;
      const p = Math.round(Math.min(100, Math.max(0, Number(percent) || 0)));
      progressOut.set(id, { id, attempt, percent: p, ...(message === undefined ? {} : { message: String(message) }) });
      scheduleFlush();
    },
  };
}

async function run(job: JobMessage): Promise<void> {
  const t0 = performance.now();
  const controller = new AbortController();
  running.set(job.id, controller);
  try {
    const handler = (await registry)?.get(job.task);
    if (!handler) throw new Error(`this worker has no handler for task "${job.task}"`);
    const result = await handler.run(job.data, context(job, controller));
    settle({
      id: job.id,
      attempt: job.attempt,
      ok: true,
      result: result ?? null,
      ms: Math.round(performance.now() - t0),
    });
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const err = e as { permanent?: unknown; retryAfterMs?: unknown } | null;
    const ms = Math.round(performance.now() - t0);
    settle({
      id: job.id,
      attempt: job.attempt,
      ok: false,
      code: "handler_error",
      message,
      ms,
      ...(err?.permanent === true ? { permanent: true } : {}),
      ...(typeof err?.retryAfterMs === "number" ? { retryAfterMs: err.retryAfterMs } : {}),
    });
  } finally {
    // A later run of the same task may have started here meanwhile (after a timeout): leave it be.
    if (running.get(job.id) === controller) running.delete(job.id);
  }
}

function abort(ids: number[], reason: "timeout" | "shutdown" = "timeout"): void {
  const why = reason === "timeout"
    ? new DOMException("the task ran past its timeout", "TimeoutError")
    : new DOMException("the server is stopping", "AbortError");
  for (const id of ids) running.get(id)?.abort(why);
  port.postMessage({ type: "aborted", ids } satisfies FromWorker);
}

const port = parentPort!;
lowerPriority((workerData as { nice?: number } | null)?.nice ?? 0);

/**
 * Tells the pool this worker's OS thread id, and gives the thread the niceness of
 * `--worker-nice`, so that handlers that burn CPU leave the main thread — which accepts, reads and
 * answers — its share of the cores. Linux only: it needs the thread's own id (from
 * /proc/thread-self), because setting the niceness of "the process" elsewhere would slow the
 * main thread too.
 */
function lowerPriority(nice: number): void {
  try {
    const tid = Number(Deno.readLinkSync("/proc/thread-self").split("/").pop());
    if (!Number.isInteger(tid) || tid <= 0) return;
    port.postMessage({ type: "thread", tid } satisfies FromWorker);
    if (nice > 0) os.setPriority(tid, nice);
  } catch {
    // not Linux, or not permitted: run at the normal priority
  }
}

// An error that escapes a handler (thrown in a timer or callback, or an unhandled rejection) leaves
// this worker in an unknown state: report it and end the worker, so that the pool replaces it and
// settles its tasks. Handled here, Deno does not print it past the server's logger.
function fatal(error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  port.postMessage({ type: "fatal", message } satisfies FromWorker);
  setTimeout(() => (globalThis as unknown as { close(): void }).close(), 0);
}
globalThis.addEventListener("error", (e) => {
  e.preventDefault();
  fatal(e.error ?? e.message);
});
globalThis.addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  fatal(e.reason);
});
// The global "message" event, not `port.on("message")`: Deno's node:worker_threads layer walks
// every received message, element by element, looking for MessagePorts to patch (a third of
// this thread's JavaScript time under load, measured with --cpu-prof). Jobs never carry ports.
globalThis.addEventListener("message", (e) => {
  const msg = (e as MessageEvent<ToWorker>).data;
  if (msg.type === "init") {
    // A module that fails to load rejects this promise: every job then fails with its message.
    registry = createRegistry(msg.settings, { validate: false });
    const ready = () => port.postMessage({ type: "ready" } satisfies FromWorker);
    registry.then(ready, ready);
  } else if (msg.type === "run") {
    const jobs = msg.jobs;
    for (let i = 0; i < jobs.length; i += JOB_FIELDS) {
      run({ id: jobs[i] as number, attempt: jobs[i + 1] as number, task: jobs[i + 2] as string, data: jobs[i + 3] });
    }
  } else {
    abort(msg.ids, msg.reason);
  }
});
