/**
 * The server's counters — accepted, refused, done, failed, per task name — and the two ways they
 * are read: `/stats` ({@linkcode ServerStats}) and the periodic activity line in the log.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { formatDuration } from "../cli/units.ts";
import type { WorkerStats } from "../task/pool.ts";

const log = getLogger(["asynctask", "server"]);

/** One task name's counts in `/stats`. */
export interface TaskCounts {
  accepted: number;
  done: number;
  failed: number;
  /** Failed attempts that run again. */
  retried: number;
  /** Submissions that joined a task with the same unique key instead of running again. */
  duplicates?: number;
}

/** What `/stats` reports. */
export interface ServerStats {
  connections: number;
  connections_total: number;
  accepted: number;
  refused: number;
  queued: number;
  running: number;
  done: number;
  failed: number;
  /** Tasks waiting out a retry backoff. */
  retrying: number;
  retained_results: number;
  /** Messages between the server and its workers (batched: many tasks per message under load). */
  worker_messages: { to_workers: number; from_workers: number };
  uptime_s: number;
  tasks: string[];
  /** Counts per task name since the start: accepted, done, failed, and retries (failed attempts run again). */
  by_task: Record<string, TaskCounts>;
  workers: WorkerStats[];
  /**
   * With the broker: this server's name, the servers sharing its Redis (as they reported in the
   * last 10 s), and each task's stream: entries no server has read yet, and entries read and not ended.
   */
  cluster?: {
    instance: string;
    redis: "up" | "down";
    instances: { instance: string; workers: number; held: number; seen_ms_ago: number }[];
    queues: Record<string, { waiting: number; held: number }>;
  };
}

/**
 * The counts since the start. The lifecycle counts accepted, done, failed and retried tasks; the
 * desk counts refusals.
 *
 * @example
 * ```ts
 * import { Counters } from "./stats.ts";
 * import assert from "node:assert/strict";
 * const counts = new Counters();
 * counts.of("sms").accepted++;
 * counts.accepted++;
 * assert.deepEqual(counts.byTask(), { sms: { accepted: 1, done: 0, failed: 0, retried: 0 } });
 * ```
 */
export class Counters {
  accepted = 0;
  refused = 0;
  done = 0;
  failed = 0;
  readonly #byTask = new Map<string, TaskCounts>();
  #last = { accepted: 0, refused: 0, done: 0, failed: 0 };

  /** The counts of one task name. */
  of(task: string): TaskCounts {
    let c = this.#byTask.get(task);
    if (!c) this.#byTask.set(task, c = { accepted: 0, done: 0, failed: 0, retried: 0 });
    return c;
  }

  byTask(): Record<string, TaskCounts> {
    return Object.fromEntries(this.#byTask);
  }

  /**
   * Logs what happened since the last call, at `info` (nothing when nothing did), with the state
   * of the moment.
   */
  logActivity(intervalMs: number, now: { queued: number; running: number; connections: number }): void {
    const last = this.#last;
    if (
      this.accepted === last.accepted && this.refused === last.refused && this.done === last.done &&
      this.failed === last.failed
    ) {
      return;
    }
    log.info(
      "last {interval}: {accepted} accepted, {refused} refused, {done} done, {failed} failed — now {queued} queued, {running} running, {connections} connection(s)",
      {
        interval: formatDuration(intervalMs),
        accepted: this.accepted - last.accepted,
        refused: this.refused - last.refused,
        done: this.done - last.done,
        failed: this.failed - last.failed,
        ...now,
      },
    );
    this.#last = { accepted: this.accepted, refused: this.refused, done: this.done, failed: this.failed };
  }
}
