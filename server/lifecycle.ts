/**
 * A task's life, from `ACCEPTED` to its final reply — one state machine, written once:
 *
 * ```
 *  submit ──► queued ──► running ──► done
 *               ▲  ▲        │  └────► failed   (permanent, out of retries, timeout, crash)
 *               │  └────────┤ retry after a backoff (attempt failed, retries left)
 *               └───────────┘ requeue (its worker was stopped under it; not its fault)
 * ```
 *
 * The lifecycle owns the pool that runs tasks, the book of tasks (for `/status`), the counters,
 * and the only writes to the {@linkcode TaskStore}: accept, start, failed attempt, end. It sends a
 * task's `PROGRESS` and final reply to the {@linkcode ReplyTarget} that submitted it. It knows
 * nothing of sockets: connections are reply targets, and `lifecycle_test.ts` drives it with plain
 * objects and a real pool.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { formatDuration } from "../cli/units.ts";
import type { Outcome } from "../task/messages.ts";
import { type Job, type PoolOptions, WorkerPool } from "../task/pool.ts";
import { FailedTasks, isFinished, newRecord, type ReplyTarget, TaskBook, type TaskRecord } from "./book.ts";
import { MinHeap } from "../task/heap.ts";
import { type ErrorCode, type Format, type ListedState, reply, type Tag } from "./protocol.ts";
import { LineBudget } from "./line_budget.ts";
import { Metrics } from "./metrics.ts";
import { Counters } from "./stats.ts";
import {
  type DeliveredTask,
  type Recovered,
  type SharedQueue,
  StoreUnavailableError,
  type TaskEnd,
  type TaskStore,
} from "./store/store.ts";

export type { ReplyTarget } from "./book.ts";

const log = getLogger(["asynctask", "server"]);
const taskLog = getLogger(["asynctask", "task"]);

/**
 * With a durable store, a task found *running* by this many restarts of the server is failed
 * instead of run again: it may be what kills the server (a poison pill). Queued tasks are never
 * counted.
 */
export const MAX_INTERRUPTED_RUNS = 3;

/** How often the store forgets what the book forgot (the book itself is swept every second). */
const STORE_SWEEP_MS = 10_000;

/** The lifecycle's own options (the rest are the pool's). */
export interface LifecycleOptions {
  /** How many times a failed task runs again, unless its task sets its own (`--retries`). */
  retries: number;
  /** The first retry's delay; each next one doubles, with jitter (`--retry-backoff`). */
  retryBackoffMs: number;
  /** `--retry-max-delay`. */
  retryMaxDelayMs: number;
  /** How long a finished task is kept for `/status` (`--result-ttl`). */
  resultTtlMs: number;
  /** Most finished tasks kept (`--max-results`). */
  maxResults: number;
  /** Most bytes of finished tasks' results and errors kept (`--max-results-size`). */
  maxResultsSize: number;
  /** Most bytes of request data held by unfinished tasks; 0 = no limit (`--max-queue-bytes`). */
  maxQueueBytes: number;
  /** How long a failed task is kept, with its data, for a retry (`--keep-failed`). */
  keepFailedMs: number;
  /** Most bytes of failed tasks kept (`--keep-failed-size`). */
  keepFailedSize: number;
}

/** Why an operation on a task (`/cancel`, `/retry`, `/discard`) was refused. */
export interface Refusal {
  code: ErrorCode;
  message: string;
}

/** One task as `/tasks` lists it. */
export interface ListedTask {
  id: number;
  task: string;
  state: string;
  attempts: number;
  accepted_at: string;
  finished_at?: string;
  worker?: number;
  priority?: number;
  /** When a scheduled task runs. */
  run_at?: string;
  error?: { code: string; message: string };
  /** The data, where its JSON is at most 4 KiB; else its size. */
  data?: unknown;
  data_bytes?: number;
  retried_as?: number;
  retry_of?: number;
}

/** What the lifecycle needs to know of the tasks it runs. */
export interface TaskCatalog {
  /** Whether the server runs a task of this name. */
  has(task: string): boolean;
  /** The task's own retry count, if it sets one. */
  retriesOf(task: string): number | undefined;
  /** The names of the tasks it runs (with the broker: the streams this server reads). */
  names?(): string[];
}

/** A time source; tests pass a fake one. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  // Only handles from setTimeout above come back here.
  clearTimeout: (handle) => clearTimeout(handle as number),
};

/**
 * The delay before retry number `attempt` (1 = the first retry): `base` doubled each time, capped
 * at `max`, with "equal jitter" (between half and all of it) so that tasks that failed together do
 * not retry together.
 *
 * @example
 * ```ts
 * import { retryDelay } from "./lifecycle.ts";
 * import assert from "node:assert/strict";
 * const d = retryDelay(3, 1000, 60_000);
 * assert.ok(d >= 2000 && d <= 4000);
 * assert.equal(retryDelay(30, 1000, 60_000, () => 1), 60_000);
 * ```
 */
export function retryDelay(attempt: number, base: number, max: number, random: () => number = Math.random): number {
  const full = Math.min(max, base * 2 ** Math.min(attempt - 1, 30));
  return Math.round(full / 2 + random() * (full / 2));
}

/**
 * The attempts of a task that count against its retries: its runs, less those that went back to
 * the queue because their worker was stopped under them (not their fault).
 */
function spent(job: Job): number {
  return job.attempt - (job.requeues ?? 0);
}

/** A finished task's end, as a store records it. */
function endOf(rec: TaskRecord & { state: "done" | "failed" }): TaskEnd {
  return { state: rec.state, attempts: rec.attempts, json: rec.json, error: rec.error };
}

/** A handler's log message with its `{name}` placeholders filled from its properties. */
function fillTemplate(message: string, properties: Record<string, unknown> | undefined): string {
  if (!properties) return message;
  return message.replace(/\{(\w+)\}/g, (m, k: string) => k in properties ? String(properties[k]) : m);
}

/** A task to submit: its name, validated data, and how its client wants replies. */
export interface Submission {
  task: string;
  data: unknown;
  format: Format;
  tag?: Tag;
  /** Keeps a client's tasks on one worker in the `connection` dispatch mode. */
  connId: number;
  /** What the log says of it when it is accepted: its handler's summary of its data ("sending SMS to 138…"). */
  summary?: string;
  /** The failed task this one retries (`/retry`). */
  retryOf?: number;
  /** Bytes of the request, held until the task finishes (`--max-queue-bytes`). */
  size: number;
  /** Higher is served sooner (-100…100); 0 by default. */
  priority?: number;
  /** When it may start, ms since the epoch (`delay`, `run_at`); absent or past: at once. */
  runAt?: number;
  /** Its unique key: a second task with it joins this one (see {@linkcode TaskLifecycle.duplicateOf}). */
  uniqueKey?: string;
}

/**
 * Every accepted task, from `ACCEPTED` to its final reply.
 *
 * @example
 * ```ts ignore
 * const lifecycle = new TaskLifecycle(new MemoryStore(), poolOptions, catalog, options);
 * const id = lifecycle.submit({ task: "echo", data: "hi", format: "text", connId: 1 }, target);
 * ```
 */
export class TaskLifecycle {
  readonly pool: WorkerPool;
  readonly counts = new Counters();
  /** Run and wait times, worker restarts, the last failures: what /metrics and the dashboard show. */
  readonly metrics = new Metrics();
  /**
   * Whether per-task times are measured (wait and run time histograms): only where someone can read
   * them (`--http`); failures, restarts and counts always are.
   */
  timed = false;
  readonly #store: TaskStore;
  /** The broker's shared queue: tasks go through it, to whichever server has room. */
  readonly #shared?: SharedQueue;
  /** With the broker: unfinished tasks accepted by this server (their clients are here). */
  #ownLive = 0;
  /**
   * With the broker, once stopping: of those, the delayed ones not due yet when the stop began —
   * Redis keeps them, and the stop does not wait for them.
   */
  readonly #ownKept = new Set<number>();
  /** With the broker: the server is stopping; it reads tasks only while its own clients still wait. */
  #draining = false;
  /** Whether the store keeps anything (else recording into it is skipped). */
  readonly #durable: boolean;
  readonly #book: TaskBook;
  readonly #catalog: TaskCatalog;
  readonly #opts: LifecycleOptions;
  readonly #clock: Clock;
  /** Tasks waiting out a retry backoff: their timers, by task id. */
  readonly #retryTimers = new Map<number, unknown>();
  readonly #failed: FailedTasks;
  /** Per-task start lines are `debug`: at full speed they would cost two thirds of the throughput. */
  readonly #traceTasks = taskLog.isEnabledFor("debug");
  /** Each task's accept and end are `info` lines, within a budget: 20 a second, then a count every 10 s. */
  readonly #taskLines = taskLog.isEnabledFor("info");
  readonly #budget = new LineBudget(
    20,
    10_000,
    (held, ms) =>
      taskLog.info("… and {held} more task lines in the last {interval} (at most 20 a second are written)", {
        held: held.toLocaleString("en-US"),
        interval: formatDuration(ms),
      }),
  );
  #lastId = 0;
  /** Bytes of request data held by unfinished tasks. */
  #dataBytes = 0;
  #finishedWaiters: (() => void)[] = [];
  #now: number | undefined;

  constructor(
    store: TaskStore,
    poolOptions: PoolOptions,
    catalog: TaskCatalog,
    opts: LifecycleOptions,
    clock: Clock = realClock,
  ) {
    this.#store = store;
    this.#shared = store.shared;
    this.#durable = store.durable;
    this.#catalog = catalog;
    this.#opts = opts;
    this.#clock = clock;
    this.#book = new TaskBook({ ttlMs: opts.resultTtlMs, max: opts.maxResults, maxBytes: opts.maxResultsSize });
    this.#failed = new FailedTasks({ keepMs: opts.keepFailedMs, maxBytes: opts.keepFailedSize });
    this.pool = new WorkerPool(poolOptions, {
      started: (job, worker) => this.#started(job, worker),
      progress: (job, report) => {
        const rec = this.#book.get(job.id);
        if (rec?.state === "running" && rec.attempts === job.attempt) this.#notify(rec, report.percent, report.message);
      },
      log: (job, record) =>
        getLogger(["asynctask", "task", job.task])[record.level]("task {id}: {message}", {
          ...record.properties,
          id: job.id,
          message: fillTemplate(record.message, record.properties),
        }),
      settled: (job, outcome, worker) => this.#settled(job, outcome, worker),
      crashed: (worker, reason, failed, requeued) => {
        this.metrics.workerRestarted("crashed");
        const suspects = failed.map((j) => j.id).join(", ");
        const why = `worker ${worker} crashed under it (${reason})` +
          (suspects ? `; the suspect is task ${suspects}` : "; no task was to blame") +
          "; running it again, without spending a retry";
        for (const job of requeued) this.#requeued(job, why);
        log.error(
          "worker {worker} crashed ({reason}); {failed} task(s) failed with worker_crashed, {requeued} other task(s) on it run again; worker replaced",
          { worker, reason, failed: failed.length, requeued: requeued.length },
        );
      },
      recycled: (worker) => {
        this.metrics.workerRestarted("recycled");
        log.debug("worker {worker} recycled after {max} tasks", { worker, max: poolOptions.maxTasksPerWorker });
      },
      killed: (worker, reason, requeued) => {
        this.metrics.workerRestarted("killed");
        for (const job of requeued) {
          this.#requeued(job, `worker ${worker} was replaced under it (${reason}); running it again`);
        }
        log.error("worker {worker} terminated and replaced: {reason}; {tasks} other task(s) on it run again", {
          worker,
          reason,
          tasks: requeued.length,
        });
      },
    });
  }

  /** The broker's shared queue, if the server has one. */
  get shared(): SharedQueue | undefined {
    return this.#shared;
  }

  /** The highest task id issued so far. */
  get lastId(): number {
    return this.#lastId;
  }

  /** Tasks queued, running or waiting to retry. */
  get unfinished(): number {
    return this.#book.live;
  }

  /**
   * Unfinished tasks a graceful stop waits for: not the delayed ones not due yet (a durable store
   * keeps them; without one, they fail at once: {@linkcode failScheduled}).
   */
  get stopWaitsFor(): number {
    return this.#book.live - this.#scheduledCount();
  }

  /** Delayed tasks not due yet that the store keeps for the next start. */
  get keptScheduled(): number {
    return this.#store.durable ? this.#scheduledCount() : 0;
  }

  /**
   * A stop without a durable store: delayed tasks not due yet end now, failed with `code` — nothing
   * would keep them, and a stop does not wait for their time. Returns how many.
   */
  failScheduled(code: string, message: string): number {
    if (this.#store.durable) return 0;
    // Taken out of the heap at once (one pass), then ended.
    const due = this.#scheduled.removeAll((r) => r.state === "scheduled");
    for (const rec of due) this.#finish(rec, { code, message });
    if (due.length > 0) this.#arm();
    return due.length;
  }

  /** Tasks waiting out a retry backoff. */
  get retrying(): number {
    return this.#retryTimers.size;
  }

  /** Finished tasks kept for `/status`. */
  get retained(): number {
    return this.#book.retained;
  }

  /**
   * Why a task of `size` bytes would be refused now (`queue_full`), or `undefined` when it would be
   * queued: the queue holds `--queue-size` tasks, or `--max-queue-bytes` of data.
   */
  full(size: number): "tasks" | "bytes" | undefined {
    if (!this.pool.hasRoom) return "tasks";
    const max = this.#opts.maxQueueBytes;
    return max > 0 && this.#dataBytes + size > max && this.#dataBytes > 0 ? "bytes" : undefined;
  }

  /** Bytes of request data held by unfinished tasks. */
  get queuedBytes(): number {
    return this.#dataBytes;
  }

  /**
   * Accepts a task: gives it an id, records it in the store, queues it. With the broker, throws
   * `StoreUnavailableError` when Redis cannot be reached (nothing is accepted). The caller sends
   * `ACCEPTED` to `target` (the store's commit comes before it is written), and refuses the task
   * instead when {@linkcode full} says why.
   */
  submit(s: Submission, target: ReplyTarget): number {
    const id = this.#shared ? this.#shared.nextId() : ++this.#lastId;
    if (id > this.#lastId) this.#lastId = id;
    const delayed = s.runAt !== undefined && s.runAt > this.#clock.now();
    // A store that keeps nothing is not handed what it would drop: two objects fewer per task.
    if (this.#durable) {
      this.#store.accepted({
        id,
        task: s.task,
        data: s.data,
        format: s.format,
        tag: s.tag,
        attempts: 0,
        priority: s.priority ?? 0,
        runAt: delayed ? s.runAt : undefined,
        uniqueKey: s.uniqueKey,
      });
    }
    if (s.uniqueKey !== undefined) this.#unique.set(`${s.task}\u0000${s.uniqueKey}`, id);
    const now = this.#time();
    const rec = this.#book.add(newRecord({
      id,
      task: s.task,
      format: s.format,
      tag: s.tag,
      state: delayed ? "scheduled" : "queued",
      attempts: 0,
      target,
      size: s.size,
      data: s.data,
      acceptedAt: now,
      retryOf: s.retryOf,
      priority: s.priority ?? 0,
      runAt: delayed ? s.runAt : 0,
      uniqueKey: s.uniqueKey,
    }));
    this.#dataBytes += s.size;
    if (this.#taskLines && this.#budget.take(now)) {
      taskLog.info("task {id} ({task}) accepted: {summary}", { id, task: s.task, summary: s.summary ?? "queued" });
    }
    this.counts.accepted++;
    this.counts.of(s.task).accepted++;
    target.taskAccepted();
    if (this.#shared) {
      this.#ownLive++;
      // The shared queue hands it to whichever server has room (this one, maybe), when it is due.
      this.#shared.taken(id)?.catch(() => this.#withdraw(rec));
    } else if (delayed) this.#schedule(rec);
    else this.#queue(rec, 1, s.connId);
    return id;
  }

  /**
   * With the broker: resolves when the shared queue has taken task `id` (just submitted), rejects
   * when it has not (Redis is unreachable) — the task is then forgotten, and its client is told
   * `store_unavailable` instead of `ACCEPTED`. `undefined` without the broker.
   */
  taken(id: number): Promise<void> | undefined {
    return this.#shared?.taken(id);
  }

  /** Forgets a task the shared queue did not take: it was never accepted. */
  #withdraw(rec: TaskRecord): void {
    this.#ownLive--;
    this.#book.drop(rec);
    this.#dataBytes -= rec.size;
    this.counts.accepted--;
    this.counts.of(rec.task).accepted--;
    if (rec.uniqueKey !== undefined) this.#unique.delete(`${rec.task}\u0000${rec.uniqueKey}`);
    const target = rec.target;
    rec.target = undefined;
    target?.taskEnded();
    this.#wakeWaiters();
  }

  /**
   * With the broker: starts taking tasks from the shared queue, up to `capacity` at once, each task
   * within its own concurrency, none while it is paused.
   */
  consume(capacity: number, limitOf: (task: string) => number | undefined): void {
    const shared = this.#shared;
    if (!shared) return;
    shared.consume({
      tasks: this.#catalog.names?.() ?? [],
      capacity,
      room: (task) => {
        // Stopping: read on only while this server's own clients wait (their tasks may be next in the stream).
        if (this.#draining && this.#ownLive - this.#ownKept.size <= 0) return 0;
        if (this.pool.isPaused(task)) return 0;
        return limitOf(task) ?? Infinity;
      },
      deliver: (t) => this.#delivered(t),
      ended: (id, end) => this.#endedElsewhere(id, end),
      waitingElsewhere: () => {
        const ids: number[] = [];
        for (const rec of this.#book.unfinished()) if (rec.origin === undefined && !rec.here) ids.push(rec.id);
        return ids;
      },
      lost: (ids) => {
        for (const id of ids) {
          const rec = this.#book.get(id);
          if (!rec || rec.here || isFinished(rec)) continue;
          this.#finish(
            rec,
            {
              code: "store_unavailable",
              message:
                "Redis lost the task: it restarted without keeping it (see its persistence settings); submit it again",
            },
            undefined,
            0,
            false,
          );
        }
        log.error(
          "redis lost {n} task(s) accepted here (it restarted without keeping them): they failed store_unavailable",
          {
            n: ids.length,
          },
        );
      },
      progress: (id, percent, message) => {
        const rec = this.#book.get(id);
        if (rec && !isFinished(rec)) {
          rec.target?.send(reply.progress(rec.format, rec.id, rec.tag, percent, message));
        }
      },
    });
  }

  /**
   * A pause with the broker: the tasks of `task` (every task, without one) read here and still
   * queued go back to the shared queue, for the servers that are not paused.
   */
  #handBack(task?: string): void {
    const shared = this.#shared!;
    shared.roomChanged();
    const back: { id: number; attempts: number }[] = [];
    for (const rec of [...this.#book.unfinished()]) {
      if (!rec.here || rec.state !== "queued" || (task !== undefined && rec.task !== task)) continue;
      if (this.pool.cancel(rec.id, "") !== "queued") continue; // running, or waiting out a retry's backoff
      back.push({ id: rec.id, attempts: rec.attempts });
      rec.here = false;
      if (rec.origin !== undefined) {
        // Not accepted here: its server waits for its end; this one forgets it.
        this.#dataBytes -= rec.size;
        this.#book.drop(rec);
      }
    }
    shared.handBack(back);
    this.#wakeWaiters();
  }

  /** A task the shared queue handed to this server: accepted here, or by another server. */
  #delivered(t: DeliveredTask): void {
    let rec = this.#book.get(t.id);
    if (this.#draining) this.#ownKept.delete(t.id); // a delayed task of its own, due during a stop: its client waits here now
    if (rec && isFinished(rec)) {
      // It ended here, and its end is on its way to Redis: nothing to run.
      this.#store.ended(t.id, endOf(rec));
      return;
    }
    if (!rec) {
      const size = JSON.stringify(t.data)?.length ?? 4;
      this.#dataBytes += size;
      rec = this.#book.add(newRecord({
        id: t.id,
        task: t.task,
        format: t.format,
        tag: t.tag,
        state: "queued",
        attempts: t.attempts,
        size,
        data: t.data,
        acceptedAt: this.#time(),
        priority: t.priority ?? 0,
      }));
      // Not accepted here (or accepted and then refused, when Redis answered too late): no client of this server waits.
      rec.origin = t.origin;
    }
    rec.here = true;
    rec.attempts = t.attempts;
    if (!this.#catalog.has(t.task)) {
      this.#finish(rec, { code: "handler_error", message: `this server has no task "${t.task}"` });
    } else if (t.interrupted > MAX_INTERRUPTED_RUNS) {
      this.#finish(rec, {
        code: "worker_crashed",
        message:
          `the servers running it stopped ${t.interrupted} times while it ran; not running it again (it may be what stops them)`,
      });
    } else {
      if (t.interrupted > 0) {
        log.warn("task {id} ({task}) runs again: the server running it stopped ({n} time(s))", {
          id: t.id,
          task: t.task,
          n: t.interrupted,
        });
      }
      this.#queue(rec, t.attempts + 1);
      // Read as a pause began (the read was under way, with the room of before): back to the queue,
      // for a server not paused.
      this.#handBackIfPaused(t.task);
    }
  }

  /** Task names queued here in this turn while paused: handed back at its end. */
  readonly #queuedWhilePaused = new Set<string>();

  /**
   * With the broker, a task queued here while it is paused (read as the pause began, or back from
   * a retry's backoff) goes back to the shared queue, for a server that is not paused, at the end
   * of the turn.
   */
  #handBackIfPaused(task: string): void {
    if (!this.#shared || !this.pool.isPaused(task)) return;
    if (this.#queuedWhilePaused.size === 0) {
      queueMicrotask(() => {
        for (const name of this.#queuedWhilePaused) this.#handBack(name);
        this.#queuedWhilePaused.clear();
      });
    }
    this.#queuedWhilePaused.add(task);
  }

  /** A task accepted here ended on another server: its client hears it from here. */
  #endedElsewhere(id: number, end: TaskEnd): void {
    const rec = this.#book.get(id);
    if (!rec || isFinished(rec)) return;
    rec.attempts = end.attempts;
    this.#finish(rec, end.error, end.json, 0, false);
  }

  /** Task ids by task name and unique key, while they are unfinished (or within their `unique-for`). */
  readonly #unique = new Map<string, number>();

  /**
   * The task a submission with `uniqueKey` duplicates: unfinished, or ended less than `forMs` ago
   * (the task's `unique-for`).
   */
  duplicateOf(task: string, uniqueKey: string, forMs = 0): TaskRecord | undefined {
    const k = `${task}\u0000${uniqueKey}`;
    const id = this.#unique.get(k);
    const rec = id === undefined ? undefined : this.#book.get(id);
    if (rec && (!isFinished(rec) || this.#clock.now() - rec.finishedAt < forMs)) {
      return rec;
    }
    if (id !== undefined) this.#unique.delete(k);
    return undefined;
  }

  /**
   * A duplicate joins a task: its final reply goes to `target` too (in `format`, with `tag`) — at
   * once, if the task has ended already.
   */
  join(rec: TaskRecord, target: ReplyTarget, format: Format, tag?: Tag): void {
    if (isFinished(rec)) {
      target.taskAccepted();
      target.sendFinal(this.#finalReply(rec, format, tag, 0), this.#stored());
      return;
    }
    (rec.also ??= []).push(tag === undefined ? { target, format } : { target, format, tag });
    target.taskAccepted();
  }

  /** A task's final reply, in one client's form. */
  #finalReply(rec: TaskRecord, format: Format, tag: Tag | undefined, ms: number): string {
    const error = rec.error;
    if (rec.state === "failed" && error) {
      const text = rec.attempts > 1 ? `${error.message} (after ${rec.attempts} attempts)` : error.message;
      return reply.failed(format, rec.id, tag, error.code, format === "text" ? text : error.message, {
        attempts: rec.attempts,
      });
    }
    return reply.done(format, rec.id, tag, rec.json ?? "null", { worker: rec.worker, attempts: rec.attempts, ms });
  }

  /** Hands a task to the pool, at its priority. */
  #queue(rec: TaskRecord, attempt: number, connId = 0): void {
    rec.state = "queued";
    // Every field of a job written here, in one order: one shape for every job, whatever it will carry.
    const job: Job = { id: rec.id, task: rec.task, data: rec.data, attempt, connId, queuedAt: 0, startedAt: 0 };
    if (rec.priority !== 0) job.priority = rec.priority;
    this.pool.submit(job, true);
  }

  /** Delayed tasks, by when they may start; one timer, for the first. */
  readonly #scheduled = new MinHeap<TaskRecord>();
  #scheduleTimer: unknown;
  #scheduleTimerAt = Infinity;

  /** Keeps a delayed task until its time. */
  #schedule(rec: TaskRecord): void {
    rec.state = "scheduled";
    this.#scheduled.push(rec, rec.runAt);
    this.#arm();
  }

  /** Sets the one timer for the first delayed task (at most an hour ahead: timers cannot wait 30 days). */
  #arm(): void {
    const first = this.#scheduled.peekKey();
    if (first === undefined || first >= this.#scheduleTimerAt) return;
    if (this.#scheduleTimer !== undefined) this.#clock.clearTimeout(this.#scheduleTimer);
    this.#scheduleTimerAt = first;
    const wait = Math.min(Math.max(0, first - this.#clock.now()), 3_600_000);
    this.#scheduleTimer = this.#clock.setTimeout(() => {
      this.#scheduleTimer = undefined;
      this.#scheduleTimerAt = Infinity;
      this.#due();
    }, wait);
  }

  /** Queues every delayed task whose time has come, at its priority. */
  #due(): void {
    const now = this.#clock.now();
    for (let at = this.#scheduled.peekKey(); at !== undefined && at <= now; at = this.#scheduled.peekKey()) {
      const rec = this.#scheduled.shift()!;
      if (rec.state === "scheduled") this.#queue(rec, rec.attempts + 1);
    }
    this.#arm();
  }

  /**
   * Stops starting tasks of `task` (of every task, without one): they are still accepted, and wait.
   * Returns what is paused now.
   */
  pause(task?: string): string[] {
    this.pool.pause(task);
    if (this.#shared) this.#handBack(task);
    return this.pool.paused;
  }

  /** Starts tasks of `task` (of every task, without one) again. Returns what is still paused. */
  resume(task?: string): string[] {
    this.pool.resume(task);
    this.#shared?.roomChanged();
    return this.pool.paused;
  }

  /** A task's record while it is known (queued, running, or finished within the TTL). */
  get(id: number): TaskRecord | undefined {
    return this.#book.get(id) ?? this.#failed.get(id);
  }

  /**
   * Cancels a queued or running task: it ends `FAILED <id> cancelled`, to its own client. A running
   * one has its handler's signal aborted (a command gets SIGTERM, then SIGKILL).
   */
  /** Why task `id` cannot be cancelled now, or `undefined` when it can. */
  cancellable(id: number): Refusal | undefined {
    const rec = this.#book.get(id);
    if (!rec) return this.#unknown(id);
    if (isFinished(rec)) {
      return {
        code: "conflict",
        message: `task ${id} is ${rec.state} already: only a queued or running task can be cancelled`,
      };
    }
    if (this.#shared && !rec.here) {
      return {
        code: "conflict",
        message:
          `task ${id} is ${rec.state} in the shared queue, not on this server: with --broker, a task is cancelled on the server that runs it (/status ${id} names it)`,
      };
    }
    return undefined;
  }

  cancel(id: number, by: string): Refusal | undefined {
    const refused = this.cancellable(id);
    if (refused) return refused;
    const rec = this.#book.get(id)!;
    const message = `cancelled by ${by}`;
    if (rec.state === "scheduled") {
      this.#scheduled.remove((r) => r === rec);
      this.#finish(rec, { code: "cancelled", message });
      return undefined;
    }
    const backoff = this.#retryTimers.get(id);
    if (backoff !== undefined) {
      this.#clock.clearTimeout(backoff);
      this.#retryTimers.delete(id);
      this.#finish(rec, { code: "cancelled", message });
      return undefined;
    }
    // Running: the pool has settled the run as cancelled (never retried), and that ended the task.
    const where = this.pool.cancel(id, message);
    if (where !== "running" && (rec.state === "queued" || rec.state === "running")) {
      this.#finish(rec, { code: "cancelled", message });
    }
    return undefined;
  }

  /**
   * Runs a failed task again under a new id, linked to the old one (`retry_of`): the new task's
   * replies go to `target`. The old one leaves the failed list.
   */
  retry(id: number, s: Pick<Submission, "format" | "tag" | "connId">, target: ReplyTarget): number | Refusal {
    const rec = this.get(id);
    if (!rec) return this.#unknown(id);
    if (rec.state !== "failed") {
      return { code: "conflict", message: `task ${id} is ${rec.state}: only a failed task can be retried` };
    }
    if (rec.retriedAs !== undefined) {
      return { code: "conflict", message: `task ${id} was retried already, as task ${rec.retriedAs}` };
    }
    if (!this.#failed.get(id)) {
      return { code: "conflict", message: `task ${id}'s data is no longer kept (--keep-failed); submit it again` };
    }
    if (!this.#catalog.has(rec.task)) {
      return { code: "unknown_task", message: `this server has no task "${rec.task}" any more` };
    }
    const size = JSON.stringify(rec.data)?.length ?? 4;
    let newId: number;
    try {
      newId = this.submit(
        { task: rec.task, data: rec.data, ...s, size, retryOf: id, summary: `retry of ${id}` },
        target,
      );
    } catch (e) {
      if (!(e instanceof StoreUnavailableError)) throw e;
      return { code: "store_unavailable", message: `${e.message}; retry it again in a moment` };
    }
    rec.retriedAs = newId;
    this.#failed.delete(id);
    this.#store.discarded(id);
    return newId;
  }

  /** Forgets a failed task: it leaves the failed list (and the journal); `/status` then says unknown. */
  discard(id: number): Refusal | undefined {
    const rec = this.get(id);
    if (!rec) return this.#unknown(id);
    if (rec.state !== "failed") {
      return { code: "conflict", message: `task ${id} is ${rec.state}: only a failed task can be discarded` };
    }
    this.#failed.delete(id);
    this.#book.forget(id);
    this.#store.discarded(id);
    return undefined;
  }

  /** Tasks in a state: the oldest `limit` queued or running ones (queue order), the newest failures. */
  list(state: ListedState, limit: number): ListedTask[] {
    const recs: TaskRecord[] = [];
    if (state === "failed") recs.push(...this.#failed.newest(limit));
    else {
      for (const rec of this.#book.unfinished()) {
        if (rec.state !== state) continue;
        recs.push(rec);
        if (recs.length >= limit) break;
      }
    }
    return recs.map((rec) => {
      const json = state === "failed" ? JSON.stringify(rec.data) ?? "null" : undefined;
      return {
        id: rec.id,
        task: rec.task,
        state: rec.state,
        attempts: rec.attempts,
        accepted_at: new Date(rec.acceptedAt).toISOString(),
        ...(rec.finishedAt ? { finished_at: new Date(rec.finishedAt).toISOString() } : {}),
        ...(rec.worker ? { worker: rec.worker } : {}),
        ...(rec.priority ? { priority: rec.priority } : {}),
        ...(rec.state === "scheduled" ? { run_at: new Date(rec.runAt).toISOString() } : {}),
        ...(rec.error ? { error: rec.error } : {}),
        ...(json === undefined ? {} : json.length <= 4096 ? { data: rec.data } : { data_bytes: json.length }),
        ...(rec.retriedAs !== undefined ? { retried_as: rec.retriedAs } : {}),
        ...(rec.retryOf !== undefined ? { retry_of: rec.retryOf } : {}),
      };
    });
  }

  #unknown(id: number): Refusal {
    if (this.#shared) {
      return {
        code: "not_found",
        message:
          `task ${id} is not on this server: with --broker, act on a task on the server that accepted or runs it (/status ${id} names it)`,
      };
    }
    return id > this.#lastId
      ? { code: "not_found", message: `no task ${id} has been accepted by this server (the last is ${this.#lastId})` }
      : { code: "not_found", message: `task ${id} is not known any more (past --result-ttl or --keep-failed)` };
  }

  /** Forgets finished tasks past the TTL, in the book and the store. */
  sweep(): void {
    const now = this.#clock.now();
    this.#book.sweep(now);
    this.#failed.sweep(now);
    // Keys of tasks that are gone from the book: a duplicate would not find them anyway.
    for (const [k, id] of this.#unique) if (!this.#book.get(id)) this.#unique.delete(k);
    // The store's clean-up scans its finished tasks (the journal: a DELETE over up to --max-results
    // rows): every 10 s is soon enough for disk space, where every second cost the journal's thread
    // ~1 µs per task under load.
    if (now - this.#storeSweptAt < STORE_SWEEP_MS) return;
    this.#storeSweptAt = now;
    const { resultTtlMs, maxResults, keepFailedMs } = this.#opts;
    this.#store.sweep(now - resultTtlMs, maxResults, now - Math.max(keepFailedMs, resultTtlMs)).catch((e: Error) =>
      log.error("{store}: clean-up failed: {error}", { store: this.#store.name, error: e.message })
    );
  }

  #storeSweptAt = -Infinity;

  /** With the broker: the server is stopping; it stops reading tasks once its own clients have had their replies. */
  drain(): void {
    this.#draining = true;
    if (this.#shared) {
      for (const rec of this.#book.unfinished()) {
        if (rec.origin === undefined && rec.state === "scheduled") this.#ownKept.add(rec.id);
      }
      this.#shared.roomChanged();
    }
  }

  /** Resolves when every accepted task has had its final reply. */
  allFinished(): Promise<void> {
    if (this.#waitingFor() === 0) return Promise.resolve();
    return new Promise((resolve) => this.#finishedWaiters.push(resolve));
  }

  /**
   * Tasks a graceful stop waits for: every unfinished one — but a delayed task not yet due, where
   * the store keeps it for the next start.
   */
  #waitingFor(): number {
    return this.#book.live - this.keptScheduled;
  }

  #scheduledCount(): number {
    let n = 0;
    if (this.#shared) {
      // The broker keeps delayed tasks in Redis.
      for (const rec of this.#book.unfinished()) if (rec.state === "scheduled") n++;
      return n;
    }
    for (const [rec] of this.#scheduled.entries()) if (rec.state === "scheduled") n++;
    return n;
  }

  /** Writes the count of task lines held back by the log budget now (on a stop). */
  flushLog(): void {
    this.#budget.flush();
  }

  /** Ends every unfinished task as failed with `code` (a stop that could not wait); returns how many. */
  failUnfinished(code: string, message: string): number {
    for (const t of this.#retryTimers.values()) this.#clock.clearTimeout(t);
    this.#retryTimers.clear();
    let n = 0;
    for (const rec of [...this.#book.unfinished()]) {
      // A delayed task stays in a durable store, for the next start.
      if (rec.state === "scheduled" && this.#store.durable) continue;
      n++;
      // With the broker, the task stays in the shared queue: another server runs it (or this one, restarted).
      if (this.#shared) {
        this.#finish(
          rec,
          {
            code,
            message: `${message}; the task stays queued in Redis and another server runs it (/status ${rec.id} there)`,
          },
          undefined,
          0,
          false,
        );
      } else this.#finish(rec, { code, message });
    }
    return n;
  }

  /**
   * Takes what the store kept from the last run: finished tasks are filed for `/status`; queued
   * ones are queued again as they were; running ones count an interruption and run again, unless
   * they were found running by more than {@linkcode MAX_INTERRUPTED_RUNS} restarts.
   */
  recover({ unfinished, finished, maxId }: Recovered): void {
    this.#lastId = maxId;
    for (const t of finished) {
      const rec = this.#book.add(newRecord({ ...t, state: t.state }));
      this.#book.finish(rec, t.finishedAt);
      if (t.state === "failed") this.#failed.add(rec);
    }
    const requeued: number[] = [];
    const poisoned: number[] = [];
    const orphaned: number[] = [];
    for (const t of unfinished) {
      const size = JSON.stringify(t.data)?.length ?? 4;
      this.#dataBytes += size;
      const rec = this.#book.add(newRecord({ ...t, state: "queued", size, data: t.data }));
      if (!this.#catalog.has(t.task)) {
        orphaned.push(t.id);
        this.#finish(rec, { code: "handler_error", message: `this server has no task "${t.task}" any more` });
      } else if (t.interrupted > MAX_INTERRUPTED_RUNS) {
        poisoned.push(t.id);
        this.#finish(rec, {
          code: "worker_crashed",
          message:
            `the server stopped ${t.interrupted} times while the task ran; not running it again (it may be what stops the server)`,
        });
      } else {
        requeued.push(t.id);
        if (t.uniqueKey !== undefined) {
          rec.uniqueKey = t.uniqueKey;
          this.#unique.set(`${t.task}\u0000${t.uniqueKey}`, t.id);
        }
        rec.priority = t.priority ?? 0;
        rec.attempts = t.attempts;
        if (t.runAt !== undefined && t.runAt > this.#clock.now()) {
          rec.runAt = t.runAt;
          this.#schedule(rec);
        } else this.#queue(rec, t.attempts + 1);
      }
    }
    if (!this.#store.durable) return; // nothing survives a restart: nothing to say
    if (this.#shared) {
      log.info(
        "{store}: sharing its queue; the tasks of a server that stops are taken over once it has been silent for --broker-visibility",
        { store: this.#store.name },
      );
      return;
    }
    const running = unfinished.filter((t) => t.wasRunning).length;
    log.info(
      "{store}: {requeued} unfinished task(s) queued again ({running} were running), {poisoned} failed by the limit of {max} interrupted runs{ids}, {orphaned} of tasks this server no longer has, {kept} result(s) kept; task ids go on after {maxId}",
      {
        store: this.#store.name,
        requeued: requeued.length,
        running,
        poisoned: poisoned.length,
        max: MAX_INTERRUPTED_RUNS,
        ids: poisoned.length > 0
          ? ` (ids ${poisoned.slice(0, 20).join(", ")}${poisoned.length > 20 ? ", …" : ""})`
          : "",
        orphaned: orphaned.length,
        kept: finished.length,
        maxId,
      },
    );
  }

  /** `Date.now()`, read once per batch of work (a turn's microtasks), not once per task. */
  #time(): number {
    if (this.#now === undefined) {
      this.#now = this.#clock.now();
      queueMicrotask(() => (this.#now = undefined));
    }
    return this.#now;
  }

  #started(job: Job, worker: number): void {
    const rec = this.#book.get(job.id);
    if (!rec) return;
    rec.state = "running";
    rec.worker = worker;
    rec.attempts = job.attempt;
    this.#store.started(job.id, job.attempt);
    if (this.timed && job.queuedAt !== undefined && job.startedAt !== undefined) {
      this.metrics.taskStarted(job.task, job.startedAt - job.queuedAt);
    }
    if (!this.#traceTasks) return;
    taskLog.debug("task {id} ({task}) started on worker {worker}, attempt {attempt}", {
      id: job.id,
      task: job.task,
      worker,
      attempt: job.attempt,
    });
  }

  #settled(job: Job, outcome: Outcome, worker: number): void {
    const rec = this.#book.get(job.id);
    if (rec && this.#shared && isFinished(rec)) {
      // It ended on another server meanwhile (claimed while this one stalled): let its entry go.
      this.#store.ended(rec.id, endOf(rec));
      return;
    }
    if (!rec || rec.state !== "running" || rec.attempts !== job.attempt) return;
    rec.worker = worker;
    if (outcome.ok) {
      this.#finish(rec, undefined, outcome.json, outcome.ms);
    } else if (!outcome.permanent && spent(job) <= this.#retriesOf(rec.task)) {
      this.#retry(rec, job, outcome);
    } else {
      this.#finish(rec, { code: outcome.code, message: outcome.message }, undefined, outcome.ms);
    }
  }

  #retriesOf(task: string): number {
    return this.#catalog.retriesOf(task) ?? this.#opts.retries;
  }

  /**
   * Runs a failed task again after a backoff (or the delay the handler asked for, up to
   * `--retry-max-delay`). It stays `queued` meanwhile, and still counts as accepted. The client
   * hears of it as a `PROGRESS` at 0% that says why and when.
   */
  #retry(rec: TaskRecord, job: Job, outcome: Extract<Outcome, { ok: false }>): void {
    this.counts.of(rec.task).retried++;
    rec.state = "queued";
    const failedAttempts = spent(job);
    this.#store.attemptFailed(rec.id, job.attempt);
    const delay = outcome.retryAfterMs !== undefined
      ? Math.min(outcome.retryAfterMs, this.#opts.retryMaxDelayMs)
      : retryDelay(failedAttempts, this.#opts.retryBackoffMs, this.#opts.retryMaxDelayMs);
    const of = this.#retriesOf(rec.task) + 1;
    this.#notify(
      rec,
      0,
      `attempt ${failedAttempts} of ${of} failed (${outcome.code}: ${outcome.message}); retrying in ${
        formatDuration(delay)
      }`,
    );
    taskLog.warn(
      "task {id} ({task}) failed on worker {worker}, attempt {attempt} of {of}: {code} {message}; retrying in {delay} ms",
      {
        id: rec.id,
        task: rec.task,
        worker: rec.worker,
        attempt: failedAttempts,
        of,
        code: outcome.code,
        message: outcome.message,
        delay,
      },
    );
    const timer = this.#clock.setTimeout(() => {
      this.#retryTimers.delete(rec.id);
      this.pool.submit({ ...job, attempt: job.attempt + 1 }, true);
      this.#handBackIfPaused(rec.task);
    }, delay);
    this.#retryTimers.set(rec.id, timer);
  }

  /** A task that was running on a stopped worker went back to the queue (not its fault): its client hears why. */
  #requeued(job: Job, why: string): void {
    const rec = this.#book.get(job.id);
    if (!rec) return;
    rec.state = "queued";
    this.#notify(rec, 0, why);
  }

  /**
   * A `PROGRESS` line to the task's client: here, or, with the broker, on the server that accepted
   * it (forwarded through Redis).
   */
  #notify(rec: TaskRecord, percent: number, message?: string): void {
    if (rec.target) rec.target.send(reply.progress(rec.format, rec.id, rec.tag, percent, message));
    else if (rec.origin) this.#shared?.progress(rec.id, percent, message ?? "");
  }

  /** Records a task's end, sends its final reply, and files it for `/status`. Exactly once per task. */
  #finish(
    rec: TaskRecord,
    error: { code: string; message: string } | undefined,
    json?: string,
    ms = 0,
    record = true,
  ): void {
    const now = this.#time();
    // A failure with no run (a stop, a poison pill) is counted, not timed.
    if (this.timed) this.metrics.taskEnded(rec.task, error ? error.code : "done", error && ms === 0 ? -1 : ms);
    if (error) this.metrics.taskFailed(rec.id, rec.task, error.code, error.message);
    if (this.#durable && record) {
      this.#store.ended(
        rec.id,
        error ? { state: "failed", attempts: rec.attempts, error } : { state: "done", attempts: rec.attempts, json },
      );
    }
    const target = rec.target;
    rec.target = undefined;
    if (error) {
      rec.state = "failed";
      rec.error = error;
      this.counts.failed++;
      this.counts.of(rec.task).failed++;
      if (this.#budget.take(now)) {
        taskLog.warn(
          "task {id} ({task}) failed on worker {worker} after {ms} ms, attempt {attempt}: {code} {message}",
          {
            id: rec.id,
            task: rec.task,
            worker: rec.worker,
            ms,
            attempt: rec.attempts,
            code: error.code,
            message: error.message,
          },
        );
      }
    } else {
      rec.state = "done";
      rec.json = json;
      rec.data = undefined; // kept only for a failure's retry
      this.counts.done++;
      this.counts.of(rec.task).done++;
      if (this.#taskLines && this.#budget.take(now)) {
        taskLog.info("task {id} ({task}) done in {ms} ms on worker {worker}, attempt {attempt}: {result}", {
          id: rec.id,
          task: rec.task,
          worker: rec.worker,
          ms,
          attempt: rec.attempts,
          result: json === undefined ? "null" : json.length > 120 ? `${json.slice(0, 117)}…` : json,
        });
      }
    }
    this.#dataBytes -= rec.size;
    if (this.#shared && rec.origin === undefined) {
      this.#ownLive--;
      if (this.#draining) {
        this.#ownKept.delete(rec.id);
        if (this.#ownLive - this.#ownKept.size === 0) this.#shared.roomChanged();
      }
    }
    this.#book.finish(rec, now);
    if (error) this.#failed.add(rec);
    const stored = target || rec.also ? this.#stored() : undefined;
    target?.sendFinal(this.#finalReply(rec, rec.format, rec.tag, ms), stored);
    if (rec.also) {
      for (const a of rec.also) a.target.sendFinal(this.#finalReply(rec, a.format, a.tag, ms), stored);
      rec.also = undefined;
    }
    this.#wakeWaiters();
  }

  /** With the broker, the commit that covers the ends recorded in this turn (one per turn, made at its end). */
  #storedThisTurn?: Promise<void>;

  /**
   * When a final reply may go out: with the broker, once Redis has the task's end (each reply waits
   * for its own end, not a connection's every reply: while Redis is unreachable, the others still
   * go); with the journal, at once — its connections write nothing before the group commit.
   */
  #stored(): Promise<void> | undefined {
    if (!this.#shared) return undefined;
    if (this.#storedThisTurn) return this.#storedThisTurn;
    const stored = Promise.withResolvers<void>();
    queueMicrotask(() => {
      this.#storedThisTurn = undefined;
      this.#store.commit().then(stored.resolve, stored.reject);
    });
    return this.#storedThisTurn = stored.promise;
  }

  /** Resolves {@linkcode allFinished} when nothing is left to wait for. */
  #wakeWaiters(): void {
    if (this.#finishedWaiters.length > 0 && this.#waitingFor() === 0) {
      const waiters = this.#finishedWaiters;
      this.#finishedWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }
}
