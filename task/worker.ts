/**
 * A pool worker: the worker thread that runs handlers. It receives batches of jobs, runs each with
 * the handler of its task name, and posts the outcomes back in batches, once per event-loop turn.
 *
 * A handler that throws fails only its own task (`handler_error`); the worker lives on.
 *
 * @module
 */
import { parentPort } from "node:worker_threads";
import { createRegistry, type HandlerRegistry } from "./handlers/mod.ts";
import type { FromWorker, JobMessage, Outcome, ToWorker } from "./messages.ts";

/** Set by the `init` message; jobs that arrive before it is loaded wait for it. */
let registry: Promise<HandlerRegistry> | undefined;
let outbox: Outcome[] = [];
let flushScheduled = false;

function settle(outcome: Outcome): void {
  outbox.push(outcome);
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
  const outcomes = outbox;
  outbox = [];
  try {
    port.postMessage({ type: "settled", outcomes } satisfies FromWorker);
  } catch {
    // One result could not be cloned (a function, a symbol, …): send them one by one, and fail
    // the ones that cannot travel instead of losing the whole batch.
    for (const o of outcomes) {
      try {
        port.postMessage({ type: "settled", outcomes: [o] } satisfies FromWorker);
      } catch (e) {
        const message = `the handler's result cannot be sent back: ${(e as Error).message}`;
        port.postMessage(
          {
            type: "settled",
            outcomes: [{ id: o.id, ok: false, code: "handler_error", message, ms: o.ms }],
          } satisfies FromWorker,
        );
      }
    }
  }
}

/** The abort controllers of the tasks running here, by task id. */
const running = new Map<number, AbortController>();

async function run(job: JobMessage): Promise<void> {
  const t0 = performance.now();
  const controller = new AbortController();
  running.set(job.id, controller);
  try {
    const handler = (await registry)?.get(job.task);
    if (!handler) throw new Error(`this worker has no handler for task "${job.task}"`);
    const result = await handler.run(job.data, { taskId: job.id, attempt: job.attempt, signal: controller.signal });
    settle({ id: job.id, ok: true, result: result ?? null, ms: Math.round(performance.now() - t0) });
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const permanent = (e as { permanent?: unknown } | null)?.permanent === true;
    const ms = Math.round(performance.now() - t0);
    settle({ id: job.id, ok: false, code: "handler_error", message, ms, ...(permanent ? { permanent } : {}) });
  } finally {
    running.delete(job.id);
  }
}

function abort(ids: number[]): void {
  for (const id of ids) {
    running.get(id)?.abort(new DOMException("the task ran past its timeout", "TimeoutError"));
  }
  port.postMessage({ type: "aborted", ids } satisfies FromWorker);
}

const port = parentPort!;

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
port.on("message", (msg: ToWorker) => {
  if (msg.type === "init") {
    // A module that fails to load rejects this promise: every job then fails with its message.
    registry = createRegistry(msg.settings);
  } else if (msg.type === "run") {
    for (const job of msg.jobs) run(job);
  } else {
    abort(msg.ids);
  }
});
