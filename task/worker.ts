/**
 * A pool worker: the worker thread that runs handlers. It receives batches of jobs, runs each with
 * the handler of its task name, and posts the outcomes back in batches, once per event-loop turn.
 *
 * A handler that throws fails only its own task (`handler_error`); the worker lives on. A result
 * is turned into JSON text here: one that cannot be (a BigInt, a cycle) or is over `--max-result`
 * fails its own task too.
 *
 * The operator's code (module tasks, `--module` handlers) runs in an async context that names its
 * run, so that an error escaping a handler (from a timer, a callback, a rejected promise nobody
 * awaited) can be pinned on that run: the pool then fails that task alone and runs the others on
 * this worker again.
 *
 * @module
 */
import { AsyncLocalStorage } from "node:async_hooks";
import os from "node:os";
import v8 from "node:v8";
import { parentPort, workerData } from "node:worker_threads";
import { createRegistry, type HandlerRegistry } from "./handlers/mod.ts";
import { trackChildGroups } from "./handlers/command.ts";
import { echoHandler } from "./handlers/echo.ts";
import { sleepHandler } from "./handlers/sleep.ts";
import { createSmsHandler } from "./handlers/sms.ts";
import {
  ChildGroups,
  encodeResult,
  type FromWorker,
  JOB_FIELDS,
  type JobMessage,
  type Outcome,
  type ProgressReport,
  type RunRef,
  type TaskLogRecord,
  type ToWorker,
} from "./messages.ts";
import type { TaskContext, TaskLogger, TaskLogLevel } from "./types.ts";
import type { HandlerSettings } from "./spec.ts";
import { RingReader, RingWriter } from "./ring.ts";

/** How often the worker measures its memory while handlers run. */
const MEMORY_SAMPLE_MS = 100;

/** What the pool gives every worker at its start (`workerData`). */
interface StartData {
  nice?: number;
  /** The shared table of this worker's command process groups (see `ChildGroups`). */
  children?: SharedArrayBuffer;
  /** The ring of jobs from the pool, and the ring of successful outcomes to it (see `ring.ts`). */
  jobs?: SharedArrayBuffer;
  done?: SharedArrayBuffer;
}

/** The handlers, and which tasks run in a context that names their run (see {@linkcode tracedTasks}). */
interface Loaded {
  handlers: HandlerRegistry;
  traced: ReadonlySet<string>;
}

/** Set by the `init` message; jobs that arrive before it is loaded wait for it. */
let registry: Promise<Loaded> | undefined;
/** Set by the `init` message (`--max-result`). */
let maxResultBytes = Infinity;
/** Set by the `init` message (`--worker-heap`): heap plus external memory above which the pool is told. */
let memoryLimit = Infinity;

/** The run whose code is running: set around each handler, carried through its awaits, timers and callbacks. */
const currentRun = new AsyncLocalStorage<RunRef>();

// What goes back to the server at the next flush.
/** Successful runs of this turn, flattened: `DONE_FIELDS` (messages.ts) values each. */
let doneOut: unknown[] = [];
/** Failed runs of this turn. */
let failedOut: Outcome[] = [];
/** The latest progress report of each task since the last flush: a handler may report often. */
let progressOut = new Map<number, ProgressReport>();
let logsOut: TaskLogRecord[] = [];
let flushScheduled = false;

function settle(outcome: Outcome): void {
  if (outcome.ok) doneOut.push(outcome.id, outcome.attempt, outcome.ms, outcome.json);
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
  if (doneRing && failedOut.length === 0 && progressOut.size === 0 && logsOut.length === 0) {
    if (doneOut.length === 0) return;
    const nums: number[] = [];
    let text = "";
    for (let i = 0; i < doneOut.length; i += 4) {
      const json = doneOut[i + 3] as string;
      nums.push(doneOut[i] as number, doneOut[i + 1] as number, doneOut[i + 2] as number, json.length);
      text += json;
    }
    if (text.length < 16 * 1024 && doneRing.write(posted, nums, text)) {
      doneOut = [];
      return;
    }
  }
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
    post(msg);
  } catch {
    // Results and messages are text and numbers: only a log line's properties can fail to clone
    // (a function, a symbol, …). Those lines go without their properties; nothing else is lost.
    msg.logs = msg.logs?.map((l) => {
      if (l.properties === undefined) return l;
      try {
        structuredClone(l.properties);
        return l;
      } catch (e) {
        return { ...l, properties: { unsendable: `these log properties cannot be sent: ${(e as Error).message}` } };
      }
    });
    post(msg);
  }
}

/** The runs going on here, by task id. */
const running = new Map<number, Run>();

/**
 * One run of a task on this worker, and the handler's context ({@linkcode TaskContext}). What a
 * handler may use is made when it first asks for it: its abort controller, logger and progress
 * function. An echo task reads none of them, and making them for every run — an AbortController,
 * its signal and eight closures — was a tenth of a worker's time and most of its garbage. The
 * logger's methods and `progress` are closures all the same, made once per run: a handler may
 * pass them on detached from the context.
 */
class Run implements TaskContext {
  #controller: AbortController | undefined;
  /** Set by {@linkcode abort}: the signal, made now or later, is aborted with this reason. */
  #aborted = false;
  #reason: unknown;
  #logger: TaskLogger | undefined;
  #progress: TaskContext["progress"] | undefined;

  constructor(readonly taskId: number, readonly task: string, readonly attempt: number) {}

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }

  /** The handler has returned: nothing is listening any more. */
  #over(): boolean {
    return running.get(this.taskId) !== this;
  }

  get logger(): TaskLogger {
    return this.#logger ??= {
      debug: this.#at("debug"),
      info: this.#at("info"),
      warn: this.#at("warn"),
      error: this.#at("error"),
    };
  }

  #at(level: TaskLogLevel): (message: string, properties?: Record<string, unknown>) => void {
    const { taskId: id, attempt } = this;
    return (message, properties) => {
      if (this.#over()) return;
      logsOut.push({ id, attempt, level, message: String(message), ...(properties ? { properties } : {}) });
      scheduleFlush();
    };
  }

  get progress(): TaskContext["progress"] {
    return this.#progress ??= (percent: number, message?: string) => {
      if (this.#over()) return;
      const { taskId: id, attempt } = this;
      const p = Math.round(Math.min(100, Math.max(0, Number(percent) || 0)));
      progressOut.set(id, { id, attempt, percent: p, ...(message === undefined ? {} : { message: String(message) }) });
      scheduleFlush();
    };
  }

  /**
   * The context given to the operator's code (traced tasks): a plain object of its own
   * properties, as it has always been — such a handler may spread it, list its keys, or replace
   * one of them. The server's own handlers get the run itself.
   */
  plain(): TaskContext {
    return {
      taskId: this.taskId,
      task: this.task,
      attempt: this.attempt,
      signal: this.signal,
      logger: this.logger,
      progress: this.progress,
    };
  }
}

/** The handlers once loaded: a run then starts without waiting a turn for the settled promise. */
let loadedNow: Loaded | undefined;

/**
 * `performance.now()`, read once per batch of work (a turn's microtasks), not twice per run: the
 * jobs of one batch start together, and the runs that end in one turn end together. At a few µs
 * per task a clock reading per run start and end was ~7% of a worker's time.
 */
function turnNow(): number {
  if (turnTime === undefined) {
    turnTime = performance.now();
    queueMicrotask(() => (turnTime = undefined));
  }
  return turnTime;
}
let turnTime: number | undefined;

async function run(job: JobMessage): Promise<void> {
  const t0 = turnNow();
  const current = new Run(job.id, job.task, job.attempt);
  running.set(job.id, current);
  watchMemory();
  try {
    const loaded = loadedNow ?? await registry;
    const handler = loaded?.handlers.get(job.task);
    if (!loaded || !handler) throw new Error(`this worker has no handler for task "${job.task}"`);
    const result = await (loaded.traced.has(job.task)
      ? currentRun.run({ id: job.id, attempt: job.attempt }, () =>
        handler.run(job.data, current.plain()))
      : handler.run(job.data, current));
    const ms = Math.round(turnNow() - t0);
    if (current.aborted) {
      // The pool settled this run when it aborted it: this only tells it the handler has returned.
      settle({ id: job.id, attempt: job.attempt, ok: false, code: "handler_error", message: "aborted", ms });
      return;
    }
    const encoded = encodeResult(result, maxResultBytes);
    settle(
      encoded.ok
        ? { id: job.id, attempt: job.attempt, ok: true, json: encoded.json, ms }
        : { id: job.id, attempt: job.attempt, ok: false, code: "handler_error", message: encoded.message, ms },
    );
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const err = e as { permanent?: unknown; retryAfterMs?: unknown } | null;
    const ms = Math.round(turnNow() - t0);
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
    if (running.get(job.id) === current) running.delete(job.id);
  }
}

function abort(ids: number[], reason: "timeout" | "shutdown" = "timeout"): void {
  const why = reason === "timeout"
    ? new DOMException("the task ran past its timeout", "TimeoutError")
    : new DOMException("the server is stopping", "AbortError");
  for (const id of ids) running.get(id)?.abort(why);
  post({ type: "aborted", ids } satisfies FromWorker);
}

/**
 * The tasks whose handlers are the operator's code — module tasks and `--module` handlers — and so
 * run in a context that names their run. The built-ins and the command and webhook handlers are
 * this server's own code: they skip it, because entering a context costs about 1.5 µs per task
 * (measured, Deno 2.9), a sizeable part of what an echo task costs end to end. A crash while only
 * they run is not pinned on a run (the pool then puts the tasks on probation).
 */
function tracedTasks(handlers: HandlerRegistry, settings: HandlerSettings): ReadonlySet<string> {
  const own = new Set<string>();
  if (settings.tasks === undefined) {
    for (const h of [createSmsHandler(settings), echoHandler, sleepHandler]) own.add(h.name);
  }
  for (const t of settings.tasks ?? []) if (t.kind !== "module") own.add(t.name);
  return new Set([...handlers.keys()].filter((name) => !own.has(name)));
}

/**
 * Samples this worker's memory every `MEMORY_SAMPLE_MS` while handlers run, and tells the
 * pool when it is over `memoryLimit`. The heap limit (`resourceLimits`) does not bound external
 * memory — ArrayBuffers, typed arrays' storage — so a handler could take gigabytes that way; V8's
 * heap statistics count it per isolate (`external_memory`), cheaply (well under a microsecond).
 */
function watchMemory(): void {
  if (memoryTimer !== undefined || memoryLimit === Infinity) return;
  memoryTimer = realSetInterval(() => {
    if (running.size === 0) {
      clearInterval(memoryTimer);
      memoryTimer = undefined;
      return;
    }
    const h = v8.getHeapStatistics();
    const bytes = h.used_heap_size + h.external_memory;
    if (bytes > memoryLimit) post({ type: "memory", bytes } satisfies FromWorker);
  }, MEMORY_SAMPLE_MS);
}
let memoryTimer: ReturnType<typeof setInterval> | undefined;

/** How often the worker says how much memory it holds (one small message: for /stats and the dashboard). */
const USAGE_REPORT_MS = 2000;

/** Reports this worker's memory now and every {@linkcode USAGE_REPORT_MS}. */
function reportUsage(): void {
  const report = () => {
    const h = v8.getHeapStatistics();
    post({ type: "usage", bytes: h.used_heap_size + h.external_memory } satisfies FromWorker);
  };
  report();
  realSetInterval(report, USAGE_REPORT_MS);
}

const port = parentPort!;
/** Messages posted to the pool: the fence of the outcome ring's records. */
let posted = 0;
function post(msg: FromWorker): void {
  port.postMessage(msg);
  posted++;
}
// Cast: node's types leave `workerData` untyped; the pool (pool_worker.ts) puts a StartData there.
const start = (workerData ?? {}) as StartData;
const doneRing = start.done ? new RingWriter(start.done) : undefined;
const jobsRing = start.jobs
  ? new RingReader(start.jobs, (_nums, text) => {
    const jobs = JSON.parse(text) as unknown[];
    for (let i = 0; i < jobs.length; i += JOB_FIELDS) {
      run({ id: jobs[i] as number, attempt: jobs[i + 1] as number, task: jobs[i + 2] as string, data: jobs[i + 3] });
    }
  })
  : undefined;
jobsRing?.run();
lowerPriority(start.nice ?? 0);
if (start.children) {
  const groups = new ChildGroups(start.children);
  trackChildGroups({ add: (g) => void groups.add(g), remove: (g) => groups.remove(g) });
}

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
    post({ type: "thread", tid } satisfies FromWorker);
    if (nice > 0) os.setPriority(tid, nice);
  } catch {
    // not Linux, or not permitted: run at the normal priority
  }
}

// An error that escapes a handler (thrown in a timer or callback, or an unhandled rejection) leaves
// this worker in an unknown state: report it and end the worker, so that the pool replaces it and
// settles its tasks. Handled here, Deno does not print it past the server's logger. The run it
// came from is named when known: the pool then fails that task and runs the others again.
let closing = false;
function fatal(error: unknown, blame: RunRef | undefined): void {
  if (closing) return;
  closing = true;
  const message = error instanceof Error ? error.message : String(error);
  post({ type: "fatal", message, ...(blame ? { blame } : {}) } satisfies FromWorker);
  realSetTimeout(() => realClose(), 0);
}
globalThis.addEventListener("error", (e) => {
  e.preventDefault();
  // Thrown by a timer's callback, the error event runs outside that callback's context: the
  // timer wrapper below noted whose it was.
  const thrown = lastThrow;
  lastThrow = undefined;
  const blame = currentRun.getStore() ?? (thrown && thrown.error === e.error ? thrown.run : undefined);
  fatal(e.error ?? e.message, blame);
});
globalThis.addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  fatal(e.reason, currentRun.getStore());
});

/** The last error thrown by a handler's timer callback, and whose it was. */
let lastThrow: { error: unknown; run: RunRef } | undefined;

/**
 * Wraps a timer callback scheduled by a handler so that, if it throws, the run it belongs to is
 * noted (the error event that follows no longer knows). Callbacks scheduled outside any run are
 * left as they are.
 */
function noteThrows(callback: unknown): unknown {
  const run = currentRun.getStore();
  if (run === undefined || typeof callback !== "function") return callback;
  return function (this: unknown, ...args: unknown[]) {
    try {
      return callback.apply(this, args);
    } catch (error) {
      lastThrow = { error, run };
      throw error;
    }
  };
}

// The pool's own timers use the originals. The replacements take and return the same values.
const realSetTimeout = globalThis.setTimeout;
const realSetInterval = globalThis.setInterval;
// Cast: the same function type with the callback wrapped; TypeScript cannot follow the rest parameters.
globalThis.setTimeout =
  ((callback: unknown, ...rest: unknown[]) =>
    Reflect.apply(realSetTimeout, globalThis, [noteThrows(callback), ...rest])) as typeof setTimeout;
globalThis.setInterval =
  ((callback: unknown, ...rest: unknown[]) =>
    Reflect.apply(realSetInterval, globalThis, [noteThrows(callback), ...rest])) as typeof setInterval;

// A handler that closes its worker (`self.close()`): the pool learns whose doing the exit is.
// Cast: Deno types the worker global as the main window, which has no close() of a worker's kind.
const workerGlobal = globalThis as unknown as { close(): void };
const realClose = workerGlobal.close.bind(globalThis);
workerGlobal.close = () => {
  const blame = currentRun.getStore();
  if (!closing) post({ type: "closing", ...(blame ? { blame } : {}) } satisfies FromWorker);
  closing = true;
  realClose();
};
// The global "message" event, not `port.on("message")`: Deno's node:worker_threads layer walks
// every received message, element by element, looking for MessagePorts to patch (a third of
// this thread's JavaScript time under load, measured with --cpu-prof). Jobs never carry ports.
globalThis.addEventListener("message", (e) => {
  // The ring's jobs written before this message go first; those fenced behind it follow it.
  if (jobsRing) {
    jobsRing.drain();
    jobsRing.received++;
    onMessage((e as MessageEvent<ToWorker>).data);
    jobsRing.drain();
  } else onMessage((e as MessageEvent<ToWorker>).data);
});

function onMessage(msg: ToWorker): void {
  if (msg.type === "init") {
    maxResultBytes = msg.maxResultBytes;
    memoryLimit = msg.memoryLimit;
    // A module that fails to load rejects this promise: every job then fails with its message.
    const settings = msg.settings;
    registry = createRegistry(settings, { validate: false }).then((handlers) => {
      loadedNow = { handlers, traced: tracedTasks(handlers, settings) };
      return loadedNow;
    });
    const ready = () => post({ type: "ready" } satisfies FromWorker);
    registry.then(ready, ready);
    reportUsage();
  } else if (msg.type === "run") {
    const jobs = msg.jobs;
    for (let i = 0; i < jobs.length; i += JOB_FIELDS) {
      run({ id: jobs[i] as number, attempt: jobs[i + 1] as number, task: jobs[i + 2] as string, data: jobs[i + 3] });
    }
  } else {
    abort(msg.ids, msg.reason);
  }
}
