/**
 * One worker of the pool, seen from the main isolate: what runs on it, and a batching outbox so
 * that all jobs given to it in one event-loop turn travel in one `postMessage`.
 *
 * Workers are Deno's worker threads through the `node:worker_threads` API rather than the
 * `Worker` global: only that API takes a heap limit (`resourceLimits`). A Web Worker that runs out
 * of memory aborts the whole process; a worker thread at its limit stalls alone and is terminated
 * and replaced. It also reports every way a worker can end (`exit`), `self.close()` included.
 *
 * @module
 */
import os from "node:os";
import { Worker } from "node:worker_threads";
import {
  ChildGroups,
  DEFAULT_MAX_RESULT_BYTES,
  DONE_FIELDS,
  type FromWorker,
  JOB_FIELDS,
  type JobMessage,
  type Outcome,
  type ProgressReport,
  type RunRef,
  type TaskLogRecord,
  type ToWorker,
} from "./messages.ts";
import type { HandlerSettings } from "./spec.ts";
import { newRingBuffer, RingReader, RingWriter } from "./ring.ts";

/**
 * Whether a job's data crosses the ring as JSON unchanged: primitives, plain objects and arrays of
 * them (finite numbers, no undefined). Anything else (a Date a validator made, a Map, …) goes by
 * `postMessage`, whose structured clone keeps it.
 */
function jsonPlain(v: unknown, depth = 0): boolean {
  switch (typeof v) {
    case "string":
    case "boolean":
      return true;
    case "number":
      return Number.isFinite(v);
    case "object": {
      if (v === null) return true;
      if (depth > 32) return false;
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) if (!jsonPlain(v[i], depth + 1)) return false;
        return true;
      }
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) return false;
      for (const k in v) if (!jsonPlain((v as Record<string, unknown>)[k], depth + 1)) return false;
      return true;
    }
    default:
      return false;
  }
}

/** How long a worker may take to load its handlers before its tasks' timeouts count anyway. */
export const START_GRACE_MS = 10_000;
/** The smallest heap a worker gets, whatever `--worker-heap` says: less does not load a handler module. */
export const MIN_WORKER_HEAP = 16 * 1024 * 1024;

/**
 * Every worker of this process that may still have command children: when the process exits
 * (`Deno.exit`, the end of the program) or dies of an uncaught error, their process groups are
 * SIGKILLed — the worker threads cannot do it then.
 */
const live = new Set<PoolWorker>();
let exitHooked = false;

function killAllChildren(): void {
  for (const w of live) w.killChildren();
}

function hookProcessExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  globalThis.addEventListener("unload", killAllChildren);
  // Uncaught: the process ends right after these events, unless a listener prevents it.
  globalThis.addEventListener("error", (e) => {
    if (!e.defaultPrevented) killAllChildren();
  });
  globalThis.addEventListener("unhandledrejection", (e) => {
    if (!e.defaultPrevented) killAllChildren();
  });
}

/** A task inside the pool. `connId` lets the `connection` dispatch mode keep a client's tasks together. */
export interface Job extends JobMessage {
  connId: number;
  /** `performance.now()` when it was handed to a worker, for `--task-timeout`. */
  startedAt?: number;
  /** `performance.now()` when it entered the queue (for the wait time in /metrics). */
  queuedAt?: number;
  /** How often it went back to the queue because its worker was stopped under it. */
  requeues?: number;
  /** Higher is served sooner (-100…100; 0 by default): see `PriorityLane` in `queue.ts`. */
  priority?: number;
  /**
   * Set when it was one of several suspects of a worker crash that nothing could pin on one task:
   * it runs again on probation (at most one such task per worker), and a second crash with it on
   * board fails it.
   */
  suspected?: boolean;
}

/** Messages posted to and received from a pool's workers: tasks per message shows how well batching works. */
export interface MessageCounts {
  toWorkers: number;
  fromWorkers: number;
}

/** What a {@linkcode PoolWorker} tells its pool. */
export interface PoolWorkerEvents {
  settled(worker: PoolWorker, job: Job, outcome: Outcome): void;
  /** The worker died; `blame` is the run whose code did it, when the worker could tell. */
  crashed(worker: PoolWorker, reason: string, blame?: RunRef): void;
  /** The worker's heap plus external memory went over its limit (`bytes` used). */
  overMemory?(worker: PoolWorker, bytes: number): void;
  /** A running task reported progress (`ctx.progress`). */
  progress?(worker: PoolWorker, job: Job, report: ProgressReport): void;
  /** A running task's handler logged a line (`ctx.logger`). */
  log?(worker: PoolWorker, job: Job, record: TaskLogRecord): void;
}

/**
 * A started worker thread running `task/worker.ts`.
 *
 * @example
 * ```ts ignore
 * const w = new PoolWorker(1, { settings: { smsDelayMs: 5000 }, workerHeap: 512 << 20 }, events, { toWorkers: 0, fromWorkers: 0 });
 * w.run({ id: 1, task: "echo", data: "hi", attempt: 1, connId: 0 });
 * ```
 */
export class PoolWorker {
  /** Jobs sent to this worker and not yet settled, by task id. */
  readonly inflight: Map<number, Job> = new Map();
  /** The worker's memory (heap and external) at its last report, every 2 s; 0 before the first. */
  memoryBytes = 0;
  /** How many jobs were ever given to this worker (for `--max-tasks-per-worker`). */
  dispatched = 0;
  /** Set when a replacement has taken this worker's slot: it gets no new jobs and ends when idle. */
  retiring = false;
  #worker: Worker;
  /** Jobs of this turn, flattened: {@linkcode JOB_FIELDS} values each. */
  #outbox: unknown[] = [];
  #batchStart: number | undefined;
  #tid: number | undefined;
  #ready = false;
  readonly #spawnedAt = performance.now();
  #deprioritized = false;
  #flushScheduled = false;
  #terminated = false;
  readonly #ended = Promise.withResolvers<void>();
  /** When the oldest unacknowledged `abort` was sent (`performance.now()`), if any. */
  #abortSentAt: number | undefined;
  #abortsUnacked = 0;
  /**
   * Runs aborted after their timeout whose handlers have not returned yet, with when the abort
   * was sent, oldest first (key: `id/attempt`). A handler that ignores its signal keeps running on
   * a worker whose event loop turns: {@linkcode abandonedFor} shows it.
   */
  readonly #abandoned = new Map<string, number>();
  /** The run that announced it closes this worker (`self.close()`): the `exit` that follows is its doing. */
  #closingBlame: RunRef | undefined;
  readonly #children = new ChildGroups();
  readonly #exited = Promise.withResolvers<void>();
  /** Jobs out (main → worker) and successful outcomes back (worker → main), beside postMessage. */
  readonly #jobsRing: RingWriter;
  readonly #doneRing: RingReader;
  /** Messages posted to the worker: the fence of the job ring's records. */
  #posted = 0;

  constructor(
    readonly slot: number,
    opts: { settings: HandlerSettings; workerHeap: number; workerNice?: number; maxResultBytes?: number },
    private events: PoolWorkerEvents,
    private counts: MessageCounts,
  ) {
    const heap = Math.max(MIN_WORKER_HEAP, opts.workerHeap);
    const jobsBuffer = newRingBuffer();
    const doneBuffer = newRingBuffer();
    this.#jobsRing = new RingWriter(jobsBuffer);
    this.#doneRing = new RingReader(doneBuffer, (nums, text) => this.#onDone(nums, text));
    this.#worker = new Worker(new URL("./worker.ts", import.meta.url), {
      name: `asynctask-${slot}`,
      // Read by the worker before anything else: its start-up (a few tens of ms of CPU) already
      // runs at the lower priority, which matters when crashing handlers make workers churn.
      workerData: { nice: opts.workerNice ?? 0, children: this.#children.buffer, jobs: jobsBuffer, done: doneBuffer },
      resourceLimits: { maxOldGenerationSizeMb: Math.round(heap / (1024 * 1024)) },
    });
    hookProcessExit();
    live.add(this);
    this.#worker.on("message", (msg: FromWorker) => this.#onMessage(msg));
    this.#worker.on("error", (e: Error) => this.events.crashed(this, e.message || "uncaught error in worker"));
    this.#worker.on("exit", (code: number) => {
      if (!this.#terminated) this.#doneRing.drain();
      this.#doneRing.stop();
      // The thread is gone: nothing of it can start a program any more. Whatever it left running dies.
      this.killChildren();
      live.delete(this);
      this.#exited.resolve();
      this.events.crashed(this, `the worker exited (code ${code})`, this.#closingBlame);
    });
    this.#post({
      type: "init",
      settings: opts.settings,
      maxResultBytes: opts.maxResultBytes ?? DEFAULT_MAX_RESULT_BYTES,
      memoryLimit: heap,
    });
    this.#doneRing.run();
  }

  /** Whether the worker is gone (crashed, retired or closed). */
  get terminated(): boolean {
    return this.#terminated;
  }

  /** Gives the worker a job; it is posted with the others of this turn. */
  run(job: Job): void {
    // One clock reading per batch: every job of this turn starts at the same moment anyway.
    job.startedAt = this.#batchStart ??= performance.now();
    this.inflight.set(job.id, job);
    this.dispatched++;
    this.#outbox.push(job.id, job.attempt, job.task, job.data);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => this.#flush());
    }
  }

  /**
   * Asks the worker to abort these tasks' signals. The caller has already settled them; whatever
   * the handlers do next is ignored. The worker acknowledges at once — unless its event loop is
   * blocked, which {@linkcode unresponsiveFor} then shows.
   */
  abort(ids: number[], reason: "timeout" | "shutdown" = "timeout"): void {
    const now = performance.now();
    for (const id of ids) {
      const job = this.inflight.get(id);
      if (job && reason === "timeout") this.#abandoned.set(`${id}/${job.attempt}`, now);
      this.inflight.delete(id);
    }
    if (this.#terminated) return;
    this.#post({ type: "abort", ids, reason });
    this.#abortsUnacked++;
    this.#abortSentAt ??= performance.now();
  }

  /**
   * Gives this worker's thread the lowest CPU priority (Linux): called when it does not answer an
   * abort, so that a handler spinning until its worker is terminated does not slow the main thread.
   */
  deprioritize(): void {
    if (this.#tid === undefined || this.#deprioritized) return;
    this.#deprioritized = true;
    try {
      os.setPriority(this.#tid, 19);
    } catch {
      // gone already, or not permitted
    }
  }

  /**
   * Whether the worker has loaded its handlers: until then, the tasks given to it are not timed —
   * for {@linkcode START_GRACE_MS} at most, so that a module whose loading never ends cannot hold
   * its tasks forever.
   */
  get ready(): boolean {
    return this.#ready || performance.now() - this.#spawnedAt > START_GRACE_MS;
  }

  /** How long an `abort` has gone unacknowledged, in ms (0 when none is pending). */
  unresponsiveFor(now: number): number {
    return this.#abortSentAt === undefined ? 0 : now - this.#abortSentAt;
  }

  /**
   * How long the oldest handler aborted after its timeout has gone on running since, in ms (0 when
   * none): the worker answers, but that handler ignores its signal.
   */
  abandonedFor(now: number): number {
    for (const at of this.#abandoned.values()) return now - at;
    return 0;
  }

  /**
   * Stops the worker at once, and SIGKILLs the process groups of the programs its command tasks
   * still run (again when the thread has really ended). Jobs still in flight are the caller's to settle.
   */
  terminate(): void {
    if (this.#terminated) return;
    this.#terminated = true;
    this.#doneRing.stop();
    this.#worker.terminate();
    this.killChildren();
    this.#ended.resolve();
  }

  /** SIGKILLs the process group of every program this worker's command tasks still run; returns how many. */
  killChildren(): number {
    return this.#children.killAll();
  }

  /** The process groups of the programs this worker's command tasks run now. */
  get childGroups(): number[] {
    return this.#children.list();
  }

  /** Resolves when the worker has been terminated (retired after its last task, crashed, or closed). */
  get ended(): Promise<void> {
    return this.#ended.promise;
  }

  /** Resolves when the worker's thread has ended (after {@linkcode terminate}, or on its own). */
  get exited(): Promise<void> {
    return this.#exited.promise;
  }

  #flush(): void {
    this.#flushScheduled = false;
    this.#batchStart = undefined;
    if (this.#terminated || this.#outbox.length === 0) return;
    const jobs = this.#outbox;
    this.#outbox = [];
    let plain = true;
    for (let i = 3; i < jobs.length; i += JOB_FIELDS) {
      if (!jsonPlain(jobs[i])) {
        plain = false;
        break;
      }
    }
    if (plain && this.#jobsRing.write(this.#posted, [], JSON.stringify(jobs))) {
      this.counts.toWorkers++;
      return;
    }
    try {
      this.#post({ type: "run", jobs });
    } catch {
      // One job's data could not be cloned: send them singly and fail only the ones that cannot go.
      for (let i = 0; i < jobs.length; i += JOB_FIELDS) {
        const id = jobs[i] as number;
        try {
          this.#post({ type: "run", jobs: jobs.slice(i, i + JOB_FIELDS) });
        } catch (e) {
          const j = this.inflight.get(id);
          this.inflight.delete(id);
          const message = `the task's data cannot be sent to a worker: ${(e as Error).message}`;
          if (j) this.events.settled(this, j, { id, ok: false, code: "handler_error", message, ms: 0 });
        }
      }
    }
  }

  #post(msg: ToWorker): void {
    this.#worker.postMessage(msg);
    this.#posted++;
    this.counts.toWorkers++;
  }

  /** A record of the outcome ring: successful runs, 4 numbers each (id, attempt, ms, JSON length), and their JSON texts. */
  #onDone(nums: Float64Array, text: string): void {
    this.counts.fromWorkers++;
    let at = 0;
    for (let i = 0; i < nums.length; i += 4) {
      const id = nums[i];
      const attempt = nums[i + 1];
      const end = at + nums[i + 3];
      const job = this.inflight.get(id);
      if (!job || attempt !== job.attempt) {
        if (this.#abandoned.size > 0) this.#abandoned.delete(`${id}/${attempt}`);
        at = end;
        continue;
      }
      const json = at === 0 && end === text.length ? text : text.slice(at, end);
      at = end;
      this.inflight.delete(id);
      this.events.settled(this, job, { id, attempt, ok: true, json, ms: nums[i + 2] });
    }
  }

  #onMessage(msg: FromWorker): void {
    // The ring's records written before this message go first; those fenced behind it follow it.
    this.#doneRing.drain();
    this.#doneRing.received++;
    this.#handleMessage(msg);
    this.#doneRing.drain();
  }

  #handleMessage(msg: FromWorker): void {
    this.counts.fromWorkers++;
    if (msg.type === "fatal") {
      this.events.crashed(this, msg.message, msg.blame);
      return;
    }
    if (msg.type === "closing") {
      this.#closingBlame = msg.blame;
      return;
    }
    if (msg.type === "usage") {
      this.memoryBytes = msg.bytes;
      return;
    }
    if (msg.type === "memory") {
      this.events.overMemory?.(this, msg.bytes);
      return;
    }
    if (msg.type === "thread") {
      this.#tid = msg.tid;
      return;
    }
    if (msg.type === "ready") {
      // Start-up is not run time: a busy machine can take longer than a task's timeout to start a
      // worker, and the tasks given to it meanwhile are not late. Their clocks start now.
      this.#ready = true;
      const now = performance.now();
      for (const job of this.inflight.values()) job.startedAt = now;
      return;
    }
    if (msg.type === "aborted") {
      if (--this.#abortsUnacked === 0) this.#abortSentAt = undefined;
      return;
    }
    // Progress and log lines were made before the outcomes of the same message: they go first.
    if (msg.logs && this.events.log) {
      for (const record of msg.logs) {
        const job = this.inflight.get(record.id);
        if (job && (record.attempt ?? job.attempt) === job.attempt) this.events.log(this, job, record);
      }
    }
    if (msg.progress && this.events.progress) {
      for (const report of msg.progress) {
        const job = this.inflight.get(report.id);
        // None for a run already settled (timed out), even when a later run of the task is here now.
        if (job && (report.attempt ?? job.attempt) === job.attempt) this.events.progress(this, job, report);
      }
    }
    const done = msg.done;
    if (done) {
      for (let i = 0; i < done.length; i += DONE_FIELDS) {
        const id = done[i] as number;
        const job = this.inflight.get(id);
        if (!job || done[i + 1] !== job.attempt) {
          if (this.#abandoned.size > 0) this.#abandoned.delete(`${id}/${done[i + 1]}`);
          continue; // see below
        }
        this.inflight.delete(id);
        // Cast: `done` is flattened runs of DONE_FIELDS values, the 4th the result's JSON text.
        const json = done[i + 3] as string;
        this.events.settled(this, job, { id, attempt: job.attempt, ok: true, json, ms: done[i + 2] as number });
      }
    }
    for (const outcome of msg.outcomes) {
      const job = this.inflight.get(outcome.id);
      // Already settled (crashed, timed out): never twice, and never as the outcome of a later run.
      if (!job || (outcome.attempt ?? job.attempt) !== job.attempt) {
        // A handler aborted after its timeout has returned at last.
        if (this.#abandoned.size > 0) this.#abandoned.delete(`${outcome.id}/${outcome.attempt}`);
        continue;
      }
      this.inflight.delete(outcome.id);
      this.events.settled(this, job, outcome);
    }
  }
}
