/**
 * A group commit's records as they cross from the main thread to the journal's thread: the
 * numbers of every record in one `Float64Array`, and their strings one after the other in a few
 * long strings (each one's length is among the numbers).
 *
 * A batch of flat arrays (`JournalBatch`) cost the main thread a structured clone of ~17 values
 * per task, the largest part of what the journal added to it (`--cpu-prof`, 200k tasks: the clone
 * and its `postMessage` 177 of 318 ms); the writes below are stores into a typed array and one
 * push per string, and the message is an array of numbers, copied whole, and one string. The
 * journal's thread makes the rows of `JournalBatch` again ({@linkcode unpack}), off the thread
 * that serves the clients.
 *
 * The numbers are copied, not transferred: with the buffer transferred (detached), `postMessage`
 * took more of the main thread than the clone had (190 against 177 ms), and the task rings' typed
 * arrays got slower too (their writes 61 → 91 ms) — as if V8 had given up a fast path for every
 * typed array once one was detached.
 *
 * @example
 * ```ts
 * import { BatchWriter, unpack } from "./batch.ts";
 * import assert from "node:assert/strict";
 * const w = new BatchWriter();
 * w.accept({ id: 1, task: "echo", data: "hi", format: "text", attempts: 0 });
 * w.started(1, 1);
 * w.ended(1, "done", 1, '"hi"', undefined);
 * const batch = w.take()!;
 * const rows = unpack(batch);
 * assert.deepEqual(rows.accepted, [1, "echo", '"hi"', "text", null, 0, batch.time, 0, null, null, null]);
 * assert.deepEqual(rows.started, []); // it ended in the same batch: no interruption to count
 * assert.deepEqual(rows.ended, [1, "done", 1, '"hi"', null, batch.time]);
 * ```
 *
 * @module
 */
import { ACCEPTED_FIELDS, ENDED_FIELDS, type JournalBatch, type JournalValue } from "./file.ts";
import type { AcceptedTask } from "../store.ts";

/** A batch as it is posted to the journal's thread. */
export interface PackedBatch {
  /** The records: a kind, then the record's fields (see {@linkcode BatchWriter}). */
  nums: Float64Array;
  /**
   * The records' strings, in the order of their records, joined in pieces of at most
   * {@linkcode TEXT_PIECE} UTF-16 units (a longer string is a piece of its own); no string is
   * split between two pieces. One string for all would break on V8's longest string (~537M
   * units) — 70 results of the largest size, recorded while a commit is on disk, are past it.
   */
  text: string[];
  /** When the batch was begun (ms since the epoch): every row's time is its batch's. */
  time: number;
  /** Ids of finished tasks to forget now. */
  discarded?: number[];
  /** Pairs of key and JSON text: the server's own state. */
  state?: string[];
}

// Record kinds, and what follows each one in `nums`.
/** id, attempts, priority, run at (NaN: at once), format (0 text, 1 json), then the lengths of task, data, tag, unique key. */
const ACCEPT = 1;
/** id, attempt. */
const START = 2;
/** id, failed attempts so far. */
const ATTEMPT = 3;
/** id, state (0 done, 1 failed), attempts, then the lengths of result and error. */
const END = 4;
/** How long a piece of {@linkcode PackedBatch.text} grows, at most (UTF-16 units). */
export const TEXT_PIECE = 16 * 1024 * 1024;

/** The length of a string that is absent (null in its row). */
const ABSENT = -1;

/** Values the writer starts with room for; it grows by doubling, and keeps its size. */
const FIRST_CAPACITY = 1024;

/** The main thread's side: records go in as they happen, and {@linkcode take} hands them over. */
export class BatchWriter {
  #nums = new Float64Array(FIRST_CAPACITY);
  #n = 0;
  #parts: string[] = [];
  #time: number | undefined;
  #discarded: number[] | undefined;
  #state: string[] | undefined;

  /** Nothing recorded since the last {@linkcode take}. */
  get empty(): boolean {
    return this.#n === 0 && this.#discarded === undefined && this.#state === undefined;
  }

  /** An accepted task. */
  accept(t: AcceptedTask): void {
    this.#time ??= Date.now();
    const nums = this.#room(10);
    let n = this.#n;
    const data = JSON.stringify(t.data) ?? "null";
    const tag = t.tag === undefined ? undefined : JSON.stringify(t.tag);
    nums[n++] = ACCEPT;
    nums[n++] = t.id;
    nums[n++] = t.attempts;
    nums[n++] = t.priority ?? 0;
    nums[n++] = t.runAt ?? NaN;
    nums[n++] = t.format === "json" ? 1 : 0;
    nums[n++] = this.#string(t.task);
    nums[n++] = this.#string(data);
    nums[n++] = this.#string(tag);
    nums[n++] = this.#string(t.uniqueKey);
    this.#n = n;
  }

  /** Attempt `attempt` of a task started on a worker. */
  started(id: number, attempt: number): void {
    this.#pair(START, id, attempt);
  }

  /** A task failed attempt `attempt` and waits for a retry. */
  failedAttempt(id: number, attempt: number): void {
    this.#pair(ATTEMPT, id, attempt);
  }

  /** A task's end; `json` is the result's JSON text. */
  ended(
    id: number,
    state: "done" | "failed",
    attempts: number,
    json: string | undefined,
    error: { code: string; message: string } | undefined,
  ): void {
    this.#time ??= Date.now();
    const nums = this.#room(6);
    let n = this.#n;
    nums[n++] = END;
    nums[n++] = id;
    nums[n++] = state === "done" ? 0 : 1;
    nums[n++] = attempts;
    nums[n++] = this.#string(state === "done" ? json ?? "null" : undefined);
    nums[n++] = this.#string(error ? JSON.stringify(error) : undefined);
    this.#n = n;
  }

  /** A finished task to forget now. */
  discard(id: number): void {
    (this.#discarded ??= []).push(id);
  }

  /** A piece of the server's state (`state.<key>` in the meta table). */
  saveState(key: string, json: string): void {
    (this.#state ??= []).push(key, json);
  }

  /** What was recorded since the last call; `undefined` when nothing was. */
  take(): PackedBatch | undefined {
    if (this.empty) return undefined;
    const batch: PackedBatch = {
      // A copy of the values only (a view would be cloned with all of its buffer); the buffer stays here, for the next batch.
      nums: this.#nums.slice(0, this.#n),
      text: pieces(this.#parts),
      time: this.#time ?? Date.now(),
    };
    if (this.#discarded) batch.discarded = this.#discarded;
    if (this.#state) batch.state = this.#state;
    this.#n = 0;
    this.#parts = [];
    this.#time = undefined;
    this.#discarded = undefined;
    this.#state = undefined;
    return batch;
  }

  #pair(kind: number, id: number, value: number): void {
    const nums = this.#room(3);
    const n = this.#n;
    nums[n] = kind;
    nums[n + 1] = id;
    nums[n + 2] = value;
    this.#n = n + 3;
  }

  /** Queues a string; returns the length recorded for it. */
  #string(s: string | undefined): number {
    if (s === undefined) return ABSENT;
    this.#parts.push(s);
    return s.length;
  }

  /** The values, with room for `k` more. */
  #room(k: number): Float64Array {
    if (this.#n + k <= this.#nums.length) return this.#nums;
    const bigger = new Float64Array(Math.max(this.#nums.length * 2, this.#n + k));
    bigger.set(this.#nums.subarray(0, this.#n));
    return this.#nums = bigger;
  }
}

/** Strings joined in pieces of at most {@linkcode TEXT_PIECE} units, none split between two. */
function pieces(parts: string[]): string[] {
  const out: string[] = [];
  let from = 0;
  let size = 0;
  for (let i = 0; i < parts.length; i++) {
    if (size > 0 && size + parts[i].length > TEXT_PIECE) {
      out.push(parts.slice(from, i).join(""));
      from = i;
      size = 0;
    }
    size += parts[i].length;
  }
  out.push(parts.slice(from).join(""));
  return out;
}

/**
 * The journal thread's side: the rows of a packed batch, its starts placed by {@linkcode placeStarts}.
 */
export function unpack(p: PackedBatch): JournalBatch {
  const nums = p.nums;
  let piece = 0;
  let text = p.text[0] ?? "";
  const time = p.time;
  let at = 0;
  const string = (length: number): string | null => {
    if (length === ABSENT) return null;
    if (at + length > text.length) {
      // The string is the next piece's first.
      text = p.text[++piece];
      at = 0;
    }
    return text.slice(at, at += length);
  };
  const accepted: JournalValue[] = [];
  let started: number[] = [];
  const attempts: number[] = [];
  const ended: JournalValue[] = [];
  for (let i = 0; i < nums.length;) {
    switch (nums[i]) {
      case ACCEPT: {
        const runAt = nums[i + 4];
        const task = string(nums[i + 6]);
        const data = string(nums[i + 7]);
        const tag = string(nums[i + 8]);
        const uniqueKey = string(nums[i + 9]);
        accepted.push(
          nums[i + 1],
          task,
          data,
          nums[i + 5] === 1 ? "json" : "text",
          tag,
          nums[i + 2],
          time,
          nums[i + 3],
          Number.isNaN(runAt) ? null : runAt,
          uniqueKey,
          null,
        );
        i += 10;
        break;
      }
      case START:
        started.push(nums[i + 1], nums[i + 2]);
        i += 3;
        break;
      case ATTEMPT:
        attempts.push(nums[i + 1], nums[i + 2]);
        i += 3;
        break;
      case END: {
        const result = string(nums[i + 4]);
        const error = string(nums[i + 5]);
        ended.push(nums[i + 1], nums[i + 2] === 0 ? "done" : "failed", nums[i + 3], result, error, time);
        i += 6;
        break;
      }
      default:
        throw new Error(`a journal batch is garbled: record kind ${nums[i]} at ${i}`);
    }
  }
  if (started.length > 0 && (ended.length > 0 || accepted.length > 0)) started = placeStarts(started, accepted, ended);
  const batch: JournalBatch = { accepted, started, attempts, ended };
  if (p.discarded) batch.discarded = p.discarded;
  if (p.state) batch.state = p.state;
  return batch;
}

/**
 * The starts that need a row of their own in `started`. A start is kept only to count an
 * interruption after a crash: one whose task ends in the same batch has none to count, and is left
 * out; one whose task is accepted in the same batch goes in the task's accepted row (its last
 * value). Under a pipelined load of fast tasks that is nearly all of them: measured, 60% of the
 * starts end in their batch, and of the others two in three were accepted in it — start rows for
 * 14% of the tasks instead of 40%, each a row written, and swept, less.
 */
function placeStarts(started: number[], accepted: JournalValue[], ended: JournalValue[]): number[] {
  const done = new Set<number>();
  for (let i = 0; i < ended.length; i += ENDED_FIELDS) done.add(ended[i] as number);
  const rows = new Map<number, number>();
  for (let i = 0; i < accepted.length; i += ACCEPTED_FIELDS) rows.set(accepted[i] as number, i);
  const open: number[] = [];
  for (let i = 0; i < started.length; i += 2) {
    const id = started[i];
    if (done.has(id)) continue;
    const row = rows.get(id);
    if (row !== undefined) accepted[row + ACCEPTED_FIELDS - 1] = started[i + 1];
    else open.push(id, started[i + 1]);
  }
  return open;
}
