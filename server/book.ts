/**
 * The lifecycle's book of tasks: every accepted task from `ACCEPTED` to its final reply, and its
 * result or error afterwards for `/status`, kept for `--result-ttl` and at most `--max-results`
 * finished tasks (oldest forgotten first).
 *
 * @module
 */
import { Deque } from "../task/queue.ts";
import type { Format, Tag, TaskState } from "./protocol.ts";

/** Where a task's replies go: the connection that submitted it, while it is open. */
export interface ReplyTarget {
  readonly writable: boolean;
  send(line: string): void;
  /**
   * Sends one of its tasks' final reply, once `stored` resolves (the store has the task's end),
   * without holding back the replies queued meanwhile; then counts the task as ended
   * ({@linkcode taskEnded}). Without `stored`, at once.
   */
  sendFinal(line: string, stored?: Promise<void>): void;
  /** One more task of this connection waits for its final reply. */
  taskAccepted(): void;
  /** The final reply for one of its tasks went out (or the task ended without one). */
  taskEnded(): void;
}

/** One accepted task. */
export interface TaskRecord {
  readonly id: number;
  readonly task: string;
  readonly format: Format;
  readonly tag?: Tag;
  /** Cleared when the final reply is sent. */
  target?: ReplyTarget;
  state: Exclude<TaskState, "unknown">;
  attempts: number;
  /** Slot id of the worker that ran it last; 0 before it ran. */
  worker: number;
  /** Bytes of its request data, held until it finishes (for `--max-queue-bytes`). */
  size: number;
  /** The result's JSON text, once `done`. */
  json?: string;
  /** Its data: held while it is unfinished, and kept after a failure (for a retry). */
  data?: unknown;
  /** `Date.now()` when it was accepted. */
  acceptedAt: number;
  /** The id it was retried under (`/retry`). */
  retriedAs?: number;
  /** The id of the failed task this one retries. */
  retryOf?: number;
  /** Higher is served sooner (`priority`); 0 by default. */
  priority: number;
  /** When a delayed task may start (`delay`, `run_at`), ms since the epoch; 0 when it was not delayed. */
  runAt: number;
  /** Its unique key (`unique_key`, or its task's `unique` template), namespaced by task. */
  uniqueKey?: string;
  /** Other clients waiting for its final reply: duplicates that joined it, each in its own form. */
  also?: { target: ReplyTarget; format: Format; tag?: Tag }[];
  error?: { code: string; message: string };
  /** `Date.now()` when it finished, for expiry. */
  finishedAt: number;
  /** With the broker: the server that accepted it, when it was read from the queue without being accepted here. */
  origin?: string;
  /** With the broker: whether the shared queue handed it to this server to run. */
  here?: boolean;
}

/**
 * A new record: no worker yet, not finished, and `tag` only when the client gave one.
 *
 * @example
 * ```ts
 * import { newRecord } from "./book.ts";
 * import assert from "node:assert/strict";
 * const rec = newRecord({ id: 1, task: "echo", format: "text", state: "queued", attempts: 0 });
 * assert.equal(rec.worker, 0);
 * assert.ok(!("tag" in rec));
 * ```
 */
export function newRecord(
  fields: Pick<TaskRecord, "id" | "task" | "format" | "state" | "attempts"> & Partial<TaskRecord>,
): TaskRecord {
  // Written out, not spread: one of these is made per accepted task, on the hot path.
  const rec: TaskRecord = {
    id: fields.id,
    task: fields.task,
    format: fields.format,
    target: fields.target,
    state: fields.state,
    attempts: fields.attempts,
    worker: fields.worker ?? 0,
    size: fields.size ?? 0,
    data: fields.data,
    acceptedAt: fields.acceptedAt ?? 0,
    priority: fields.priority ?? 0,
    runAt: fields.runAt ?? 0,
    json: fields.json,
    error: fields.error,
    finishedAt: fields.finishedAt ?? 0,
  };
  if (fields.tag !== undefined) (rec as { tag?: Tag }).tag = fields.tag;
  if (fields.retryOf !== undefined) rec.retryOf = fields.retryOf;
  return rec;
}

/** Whether a task has had its end (done or failed). */
export function isFinished(rec: TaskRecord): rec is TaskRecord & { state: "done" | "failed" } {
  return rec.state === "done" || rec.state === "failed";
}

/** What a finished record holds, in bytes, estimated: its result or error text, twice (UTF-16), and ~160 for the record. */
function sizeOf(rec: TaskRecord): number {
  return 160 + 2 * ((rec.json?.length ?? 0) + (rec.error?.message.length ?? 0));
}

/**
 * Failed tasks kept, with their data, for `--keep-failed` and at most `--keep-failed-size` bytes
 * (oldest forgotten first): what `/tasks failed` lists and `/retry` runs again.
 *
 * @example
 * ```ts
 * import { FailedTasks, newRecord } from "./book.ts";
 * import assert from "node:assert/strict";
 * const failed = new FailedTasks({ keepMs: 60_000, maxBytes: 1 << 20 });
 * const rec = newRecord({ id: 4, task: "sms", format: "text", state: "failed", attempts: 1, data: "138" });
 * rec.finishedAt = 1000;
 * failed.add(rec);
 * assert.deepEqual(failed.newest(10).map((r) => r.id), [4]);
 * failed.sweep(1000 + 60_000);
 * assert.equal(failed.size, 0);
 * ```
 */
export class FailedTasks {
  /** By id, oldest failure first (insertion order). */
  readonly #byId = new Map<number, { rec: TaskRecord; bytes: number }>();
  #bytes = 0;

  constructor(readonly limits: { keepMs: number; maxBytes: number }) {}

  get size(): number {
    return this.#byId.size;
  }

  add(rec: TaskRecord): void {
    const bytes = 200 + 2 * ((JSON.stringify(rec.data)?.length ?? 0) + (rec.error?.message.length ?? 0));
    this.#byId.set(rec.id, { rec, bytes });
    this.#bytes += bytes;
    this.sweep(rec.finishedAt);
  }

  get(id: number): TaskRecord | undefined {
    return this.#byId.get(id)?.rec;
  }

  delete(id: number): boolean {
    const entry = this.#byId.get(id);
    if (!entry) return false;
    this.#byId.delete(id);
    this.#bytes -= entry.bytes;
    return true;
  }

  /** The newest `n` failures, newest first. */
  newest(n: number): TaskRecord[] {
    const all = [...this.#byId.values()];
    return all.slice(Math.max(0, all.length - n)).reverse().map((e) => e.rec);
  }

  /** Forgets failures older than the keep time, or beyond the byte budget, oldest first. */
  sweep(now: number): void {
    for (const [id, { rec }] of this.#byId) {
      if (now - rec.finishedAt < this.limits.keepMs && this.#bytes <= this.limits.maxBytes) break;
      this.delete(id);
      rec.data = undefined; // the book may keep the record a little longer for /status; not its data
    }
  }
}

/** Task ids per chunk of the book's index. */
const CHUNK = 4096;

/**
 * Tasks by id, with expiry of finished ones.
 *
 * @example
 * ```ts
 * import { newRecord, TaskBook } from "./book.ts";
 * import assert from "node:assert/strict";
 * const book = new TaskBook({ ttlMs: 60_000, max: 1000 });
 * const rec = book.add(newRecord({ id: 1, task: "echo", format: "text", state: "queued", attempts: 0 }));
 * book.finish(rec, Date.now());
 * assert.equal(book.get(1)?.state, "queued"); // finish() only files it for expiry; the caller sets the state
 * ```
 */
export class TaskBook {
  /**
   * Records by id, in chunks of {@linkcode CHUNK} consecutive ids: ids are issued in order, so
   * one Map operation serves thousands of tasks (a Map entry per task cost ~8% of the server's
   * time at full speed). A chunk goes when its last record does.
   */
  readonly #chunks = new Map<number, { recs: (TaskRecord | undefined)[]; count: number }>();
  readonly #finished = new Deque<TaskRecord>();
  #live = 0;
  /** Bytes of the retained finished tasks' results and errors (estimated: UTF-16 length plus a record's overhead). */
  #bytes = 0;

  /**
   * @param limits `ttlMs`: how long a finished task is kept; `max`: most finished tasks kept;
   * `maxBytes`: most bytes of their results and errors (`--max-results-size`; default unlimited).
   */
  constructor(readonly limits: { ttlMs: number; max: number; maxBytes?: number }) {}

  /** Bytes held by the retained finished tasks (estimated). */
  get retainedBytes(): number {
    return this.#bytes;
  }

  /** Tasks queued or running. */
  get live(): number {
    return this.#live;
  }

  /** Finished tasks still retained. */
  get retained(): number {
    return this.#finished.length;
  }

  add(rec: TaskRecord): TaskRecord {
    const key = Math.floor(rec.id / CHUNK);
    let chunk = this.#chunks.get(key);
    if (!chunk) this.#chunks.set(key, chunk = { recs: new Array(CHUNK), count: 0 });
    if (chunk.recs[rec.id % CHUNK] === undefined) chunk.count++;
    chunk.recs[rec.id % CHUNK] = rec;
    this.#live++;
    return rec;
  }

  get(id: number): TaskRecord | undefined {
    return this.#chunks.get(Math.floor(id / CHUNK))?.recs[id % CHUNK];
  }

  /** Every task still queued or running. */
  *unfinished(): Iterable<TaskRecord> {
    for (const chunk of this.#chunks.values()) {
      for (const rec of chunk.recs) {
        if (rec && (rec.state === "queued" || rec.state === "running" || rec.state === "scheduled")) yield rec;
      }
    }
  }

  #delete(id: number): void {
    const key = Math.floor(id / CHUNK);
    const chunk = this.#chunks.get(key);
    if (!chunk || chunk.recs[id % CHUNK] === undefined) return;
    chunk.recs[id % CHUNK] = undefined;
    if (--chunk.count === 0) this.#chunks.delete(key);
  }

  /** Forgets a task at once (`/discard`): `/status` then says unknown. */
  forget(id: number): void {
    this.#delete(id);
  }

  /** Forgets an unfinished task that was never this server's to finish (the broker: not taken, or handed back). */
  drop(rec: TaskRecord): void {
    if (this.get(rec.id) !== rec || isFinished(rec)) return;
    this.#delete(rec.id);
    this.#live--;
  }

  /** Files a task that has just reached `done` or `failed`, and forgets what has expired. */
  finish(rec: TaskRecord, now: number): void {
    rec.finishedAt = now;
    this.#live--;
    this.#finished.push(rec);
    this.#bytes += sizeOf(rec);
    this.sweep(now);
  }

  /** Forgets finished tasks past the TTL or beyond the count or byte limit. Cheap: looks at the oldest only. */
  sweep(now: number): void {
    const { ttlMs, max, maxBytes = Infinity } = this.limits;
    for (let head = this.#finished.peek(); head; head = this.#finished.peek()) {
      if (this.#finished.length <= max && this.#bytes <= maxBytes && now - head.finishedAt < ttlMs) break;
      this.#finished.shift();
      this.#bytes -= sizeOf(head);
      this.#delete(head.id);
    }
  }
}
