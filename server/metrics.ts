/**
 * What the server measures beyond its counts (`stats.ts`): how long tasks run and wait, why
 * workers were replaced, how long journal commits take, and the last failures. Read by `/metrics`
 * and the dashboard (`http/`); written by the lifecycle, the pool's events and the journal.
 *
 * Nothing here allocates per task: a histogram is a fixed row of buckets in a typed array, and
 * one observation is at most {@linkcode TASK_SECONDS_BUCKETS}`.length` comparisons and three
 * additions, after a `Map.get` by task name (skipped while the name is the last one seen; the
 * per-name entry is made once, on the name's first observation). Measured: `taskStarted` plus
 * `taskEnded` of one task ≈ 16 ns together (≈ 26 ns with three task names interleaved). The
 * last failures are kept in parallel arrays of fixed length, overwritten in a ring.
 *
 * @module
 */

/** Upper bounds (seconds) of the buckets of task run and wait times: 1 ms to 5 min. */
export const TASK_SECONDS_BUCKETS: readonly number[] = [
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  120,
  300,
];

/** Upper bounds (seconds) of the buckets of journal commit times: 0.1 ms to 1 s. */
export const COMMIT_SECONDS_BUCKETS: readonly number[] = [
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
];

/** How many of the last failures are kept for the dashboard. */
export const RECENT_FAILURES = 20;

/**
 * A histogram of fixed buckets, as Prometheus counts them: each observation falls in the first
 * bucket whose upper bound is at least its value (the last bucket, +Inf, takes the rest).
 *
 * @example
 * ```ts
 * import { Histogram } from "./metrics.ts";
 * import assert from "node:assert/strict";
 * const h = new Histogram([0.1, 1]);
 * h.observe(0.05);
 * h.observe(0.5);
 * h.observe(7);
 * assert.deepEqual([...h.cumulative()], [1, 2, 3]);
 * assert.equal(h.count, 3);
 * assert.equal(h.sum, 7.55);
 * ```
 */
export class Histogram {
  /** Upper bounds, ascending; +Inf is implied after the last. */
  readonly bounds: Float64Array;
  /** Observations per bucket (not cumulative); one more than the bounds: the +Inf bucket. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = Float64Array.from(bounds);
    this.counts = new Float64Array(bounds.length + 1);
  }

  /** Counts one value. Costs a linear scan of the bounds (≤ 17 comparisons) and three additions. */
  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]) i++;
    this.counts[i]++;
    this.sum += value;
    this.count++;
  }

  /** The cumulative counts, bucket by bucket, the +Inf bucket last (which is {@linkcode count}). */
  cumulative(): Float64Array {
    const out = new Float64Array(this.counts.length);
    let n = 0;
    for (let i = 0; i < this.counts.length; i++) out[i] = n += this.counts[i];
    return out;
  }
}

/**
 * The `q`-quantile (0–1) of the observations counted in `counts` (per bucket, not cumulative,
 * the +Inf bucket last) with these upper `bounds`, by linear interpolation within the bucket it
 * falls in, as Prometheus' `histogram_quantile` does; in the +Inf bucket, the highest bound.
 * Undefined when nothing was counted.
 *
 * @example
 * ```ts
 * import { quantile } from "./metrics.ts";
 * import assert from "node:assert/strict";
 * const bounds = Float64Array.from([1, 2, 4]);
 * assert.equal(quantile(0.5, bounds, Float64Array.from([0, 10, 0, 0])), 1.5);
 * assert.equal(quantile(0.99, bounds, Float64Array.from([0, 0, 0, 5])), 4);
 * assert.equal(quantile(0.5, bounds, new Float64Array(4)), undefined);
 * ```
 */
export function quantile(q: number, bounds: Float64Array, counts: ArrayLike<number>): number | undefined {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i];
  if (total === 0) return undefined;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < counts.length; i++) {
    const n = counts[i];
    if (n > 0 && below + n >= rank) {
      if (i >= bounds.length) return bounds[bounds.length - 1];
      const lower = i === 0 ? 0 : bounds[i - 1];
      return lower + (bounds[i] - lower) * ((rank - below) / n);
    }
    below += n;
  }
  return bounds[bounds.length - 1];
}

/** What is measured of one task name. */
export interface TaskTimes {
  /** How long its runs took (seconds): the handler's own time, as its outcome reports it. */
  readonly duration: Histogram;
  /** How long its tasks waited in the queue before a worker started them (seconds). */
  readonly wait: Histogram;
  /** Failed ends by failure code (`handler_error`, `timeout`, …). */
  readonly outcomes: Map<string, number>;
  /** Ends `done` (kept apart from the failure codes: the common case costs one addition). */
  done: number;
}

/** One of the last failures. */
export interface FailureRecord {
  id: number;
  task: string;
  code: string;
  message: string;
  /** `Date.now()` when it was recorded. */
  at: number;
}

/**
 * The server's measurements. One instance per server; its methods are called where things happen:
 *
 * - {@linkcode taskStarted} when a worker starts a task (with how long it waited),
 * - {@linkcode taskEnded} at a task's end (with its outcome and run time),
 * - {@linkcode taskFailed} at a failed end (for the dashboard's last failures),
 * - {@linkcode workerRestarted} when a worker is replaced,
 * - {@linkcode journalCommit} when a journal commit is on disk.
 *
 * @example
 * ```ts
 * import { Metrics } from "./metrics.ts";
 * import assert from "node:assert/strict";
 * const m = new Metrics();
 * m.taskStarted("echo", 2);
 * m.taskEnded("echo", "done", 15);
 * m.taskFailed(7, "echo", "timeout", "too slow");
 * m.workerRestarted("crashed");
 * assert.equal(m.task("echo")?.duration.count, 1);
 * assert.equal(m.task("echo")?.wait.sum, 0.002);
 * assert.equal(m.restarts.get("crashed"), 1);
 * assert.equal(m.recentFailures()[0].code, "timeout");
 * ```
 */
export class Metrics {
  readonly #tasks = new Map<string, TaskTimes>();
  /** Worker replacements by reason: `crashed`, `recycled`, `killed`, … */
  readonly restarts: Map<string, number> = new Map();
  /** How long journal commits took, from the batch's hand-off to its fsync (seconds). */
  readonly journalCommits: Histogram = new Histogram(COMMIT_SECONDS_BUCKETS);
  /** Whether anything reported task times yet: until the lifecycle does, `/metrics` leaves them out. */
  observed = false;
  // The ring of the last failures: parallel arrays, the oldest overwritten first.
  readonly #failId = new Float64Array(RECENT_FAILURES);
  readonly #failAt = new Float64Array(RECENT_FAILURES);
  readonly #failTask: string[] = new Array(RECENT_FAILURES).fill("");
  readonly #failCode: string[] = new Array(RECENT_FAILURES).fill("");
  readonly #failMessage: string[] = new Array(RECENT_FAILURES).fill("");
  #failures = 0;
  /** The last task name measured, and its entry: a run of one task name skips the Map. */
  #lastName = "";
  #lastTimes: TaskTimes | undefined;

  /** The measurements of one task name, if any were made. */
  task(name: string): TaskTimes | undefined {
    return this.#tasks.get(name);
  }

  /** Every task name measured so far, with its measurements. */
  tasks(): IterableIterator<[string, TaskTimes]> {
    return this.#tasks.entries();
  }

  #of(name: string): TaskTimes {
    if (name === this.#lastName && this.#lastTimes) return this.#lastTimes;
    let t = this.#tasks.get(name);
    if (!t) {
      t = {
        duration: new Histogram(TASK_SECONDS_BUCKETS),
        wait: new Histogram(TASK_SECONDS_BUCKETS),
        outcomes: new Map(),
        done: 0,
      };
      this.#tasks.set(name, t);
      this.observed = true;
    }
    this.#lastName = name;
    this.#lastTimes = t;
    return t;
  }

  /** A worker started a task of `task` after it waited `waitMs` in the queue (since it was queued or requeued). */
  taskStarted(task: string, waitMs: number): void {
    this.#of(task).wait.observe(waitMs > 0 ? waitMs / 1000 : 0);
  }

  /**
   * A task of `task` ended: `outcome` is `done` or its failure code; `runMs` its last run's time
   * (the handler's own, as the outcome reports it). A task that never ran (failed at a stop, say)
   * passes a negative `runMs`: it is counted, not timed.
   */
  taskEnded(task: string, outcome: string, runMs: number): void {
    const t = this.#of(task);
    if (outcome === "done") t.done++;
    else t.outcomes.set(outcome, (t.outcomes.get(outcome) ?? 0) + 1);
    if (runMs >= 0) t.duration.observe(runMs / 1000);
  }

  /** A task failed for good: kept among the last {@linkcode RECENT_FAILURES} for the dashboard. */
  taskFailed(id: number, task: string, code: string, message: string): void {
    const i = this.#failures++ % RECENT_FAILURES;
    this.#failId[i] = id;
    this.#failAt[i] = Date.now();
    this.#failTask[i] = task;
    this.#failCode[i] = code;
    this.#failMessage[i] = message;
  }

  /** Failures recorded with {@linkcode taskFailed} since the start. */
  get failuresRecorded(): number {
    return this.#failures;
  }

  /** The last failures, newest first. */
  recentFailures(): FailureRecord[] {
    const n = Math.min(this.#failures, RECENT_FAILURES);
    const out: FailureRecord[] = [];
    for (let k = 1; k <= n; k++) {
      const i = (this.#failures - k) % RECENT_FAILURES;
      out.push({
        id: this.#failId[i],
        task: this.#failTask[i],
        code: this.#failCode[i],
        message: this.#failMessage[i],
        at: this.#failAt[i],
      });
    }
    return out;
  }

  /** A worker was replaced: `crashed`, `recycled` (after `--max-tasks-per-worker`, or a reload), `killed` (blocked). */
  workerRestarted(reason: string): void {
    this.restarts.set(reason, (this.restarts.get(reason) ?? 0) + 1);
  }

  /** A journal group commit reached the disk `seconds` after it was handed to the journal's thread. */
  journalCommit(seconds: number): void {
    this.journalCommits.observe(seconds);
  }
}
