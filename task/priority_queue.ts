/**
 * The queue waiting tasks are served from when tasks have priorities: higher priority first, first in
 * first out within a priority, O(log n) `push` and `shift`. It has the members of {@linkcode Deque}
 * (`length`, `push`, `shift`, `peek`, `remove` for a cancel), plus `removeAll`.
 *
 * **Aging, against starvation.** A task's effective priority rises by 1 for every `agingMs` (default
 * 10 s) it has waited, so a stream of high-priority tasks cannot hold a low-priority one back forever:
 * a task of priority -100 waits at most 200 × `agingMs` (33 minutes with the default) behind tasks of
 * priority 100 that keep coming. At time `now`, a task of priority `p` queued at `t` has the effective
 * priority `p + (now - t) / agingMs`, so it is served before a task of priority `q` queued at `u` when
 * `t - p·agingMs < u - q·agingMs`, whatever `now` is. That key, `t - p·agingMs`, never changes while the
 * task waits: the heap is ordered by it once, at `push`, and aging costs nothing afterwards. Equal keys
 * are served in the order they were pushed. `agingMs: Infinity` turns aging off (strict priorities).
 *
 * `t` is the `now` given to `push`; pass times from one clock that does not go back (the default is
 * `performance.now()`). A task put back in the queue (a requeue) may be pushed with the time it first
 * started waiting, to keep the place it had earned.
 *
 * **Cost, measured** (Deno 2.9.6, a noisy 2-core Linux machine, the median of 5 rounds, three runs):
 *
 * | 1,000,000 tasks                                     | push        | shift        | per task     |
 * | --------------------------------------------------- | ----------- | ------------ | ------------ |
 * | random priorities from -100 to 100, 1 ms apart      | 47–67 ms    | 330–410 ms   | 0.37–0.46 µs |
 * | every priority 0 (FIFO)                             | 31–42 ms    | 133–172 ms   | 0.16–0.21 µs |
 * | {@linkcode Deque}, for comparison                   | 14–18 ms    | 3–4 ms       | 0.02 µs      |
 *
 * Half a microsecond per task is small beside a task's whole cost on the server (at its best, ~100k
 * tasks/s: ~10 µs each). Measured with:
 *
 * ```sh
 * ASYNCTASK_BENCH=1 ./deno test --allow-all task/priority_queue_test.ts --filter "1M"
 * ```
 *
 * {@linkcode MinHeap}, the heap underneath, is exported too: keyed by a due time, it is the queue of
 * delayed tasks (one timer for the earliest, `peekKey()`).
 *
 * @module
 */
import type { Deque } from "./queue.ts";

/** The default `agingMs`: a waiting task's effective priority rises by 1 every 10 s. */
export const DEFAULT_AGING_MS = 10_000;

/**
 * A binary min-heap of items by a numeric key; equal keys come out in the order they went in.
 * `push` and `shift` are O(log n), `peek` and `peekKey` O(1), `remove` and `removeAll` O(n).
 *
 * @example
 * ```ts
 * import { MinHeap } from "./priority_queue.ts";
 * import assert from "node:assert/strict";
 * const due = new MinHeap<string>();
 * due.push("later", 2000);
 * due.push("sooner", 1000);
 * due.push("also sooner", 1000);
 * assert.equal(due.peekKey(), 1000);
 * assert.equal(due.shift(), "sooner");
 * assert.equal(due.shift(), "also sooner");
 * assert.equal(due.length, 1);
 * ```
 */
export class MinHeap<T> {
  #items: (T | undefined)[] = [];
  #keys = new Float64Array(16);
  #seqs = new Float64Array(16);
  #length = 0;
  #seq = 0;

  /** How many items are in the heap. */
  get length(): number {
    return this.#length;
  }

  /** Adds `item` with `key` (a finite number, or ±Infinity). */
  push(item: T, key: number): void {
    if (Number.isNaN(key)) throw new RangeError("MinHeap: a key must be a number, not NaN");
    if (this.#length === this.#keys.length) this.#grow();
    this.#siftUp(this.#length++, item, key, this.#seq++);
  }

  /** Removes and returns the item with the least key (the earliest pushed among equals). */
  shift(): T | undefined {
    const n = this.#length;
    if (n === 0) return undefined;
    const top = this.#items[0];
    const last = --this.#length;
    if (last > 0) this.#siftDown(0, this.#items[last], this.#keys[last], this.#seqs[last]);
    this.#items[last] = undefined;
    if (last === 0) this.#seq = 0;
    return top;
  }

  /** The item `shift` would return, left in place. */
  peek(): T | undefined {
    return this.#length === 0 ? undefined : this.#items[0];
  }

  /** The least key, or `undefined` when the heap is empty. */
  peekKey(): number | undefined {
    return this.#length === 0 ? undefined : this.#keys[0];
  }

  /**
   * Removes and returns the item that `match` accepts and that `shift` would give first (a cancel), as
   * {@linkcode Deque.remove} does. O(n).
   */
  remove(match: (item: T) => boolean): T | undefined {
    let best = -1;
    const keys = this.#keys, seqs = this.#seqs;
    for (let i = 0; i < this.#length; i++) {
      if (best >= 0 && (keys[i] > keys[best] || (keys[i] === keys[best] && seqs[i] > seqs[best]))) continue;
      if (match(this.#items[i] as T)) best = i; // i < length: a slot in use
    }
    if (best < 0) return undefined;
    const removed = this.#items[best];
    const last = --this.#length;
    const item = this.#items[last], key = keys[last], seq = seqs[last];
    this.#items[last] = undefined;
    if (best < last) {
      const parent = (best - 1) >> 1;
      if (best > 0 && (key < keys[parent] || (key === keys[parent] && seq < seqs[parent]))) {
        this.#siftUp(best, item, key, seq);
      } else {
        this.#siftDown(best, item, key, seq);
      }
    }
    return removed;
  }

  /** Removes every item `predicate` accepts, and returns them (in no particular order). O(n). */
  removeAll(predicate: (item: T) => boolean): T[] {
    const removed: T[] = [];
    let kept = 0;
    for (let i = 0; i < this.#length; i++) {
      const item = this.#items[i] as T; // i < length: a slot in use
      if (predicate(item)) {
        removed.push(item);
        continue;
      }
      this.#items[kept] = item;
      this.#keys[kept] = this.#keys[i];
      this.#seqs[kept] = this.#seqs[i];
      kept++;
    }
    if (removed.length === 0) return removed;
    for (let i = kept; i < this.#length; i++) this.#items[i] = undefined;
    this.#length = kept;
    for (let i = (kept >> 1) - 1; i >= 0; i--) this.#siftDown(i, this.#items[i], this.#keys[i], this.#seqs[i]);
    return removed;
  }

  /** Removes every item. */
  clear(): void {
    this.#items = [];
    this.#keys = new Float64Array(16);
    this.#seqs = new Float64Array(16);
    this.#length = 0;
    this.#seq = 0;
  }

  /** The items, in no particular order (heap order), with their keys. */
  *entries(): IterableIterator<[T, number]> {
    for (let i = 0; i < this.#length; i++) yield [this.#items[i] as T, this.#keys[i]]; // i < length: in use
  }

  /** Moves a hole up from `i` to where (`key`, `seq`) belongs, and puts `item` there. */
  #siftUp(i: number, item: T | undefined, key: number, seq: number): void {
    const items = this.#items, keys = this.#keys, seqs = this.#seqs;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const pk = keys[parent];
      if (pk < key || (pk === key && seqs[parent] < seq)) break;
      items[i] = items[parent];
      keys[i] = pk;
      seqs[i] = seqs[parent];
      i = parent;
    }
    items[i] = item;
    keys[i] = key;
    seqs[i] = seq;
  }

  /** Moves a hole down from `i` to where (`key`, `seq`) belongs, and puts `item` there. */
  #siftDown(i: number, item: T | undefined, key: number, seq: number): void {
    const items = this.#items, keys = this.#keys, seqs = this.#seqs;
    const n = this.#length;
    const half = n >> 1;
    while (i < half) {
      let child = 2 * i + 1;
      let ck = keys[child];
      let cs = seqs[child];
      const right = child + 1;
      if (right < n) {
        const rk = keys[right];
        if (rk < ck || (rk === ck && seqs[right] < cs)) {
          child = right;
          ck = rk;
          cs = seqs[right];
        }
      }
      if (key < ck || (key === ck && seq < cs)) break;
      items[i] = items[child];
      keys[i] = ck;
      seqs[i] = cs;
      i = child;
    }
    items[i] = item;
    keys[i] = key;
    seqs[i] = seq;
  }

  #grow(): void {
    const keys = new Float64Array(this.#keys.length * 2);
    keys.set(this.#keys);
    this.#keys = keys;
    const seqs = new Float64Array(this.#seqs.length * 2);
    seqs.set(this.#seqs);
    this.#seqs = seqs;
  }
}

/** How a {@linkcode PriorityQueue} ages its tasks. */
export interface PriorityQueueOptions {
  /**
   * A waiting task's effective priority rises by 1 for every `agingMs` it has waited; default
   * {@linkcode DEFAULT_AGING_MS}. `Infinity` turns aging off: strict priorities, FIFO within each.
   */
  agingMs?: number;
}

/**
 * Waiting tasks, served higher priority first, first in first out within a priority, with aging (see
 * the module's doc). A drop-in for a {@linkcode Deque} where tasks have priorities.
 *
 * @example
 * ```ts
 * import { PriorityQueue } from "./priority_queue.ts";
 * import assert from "node:assert/strict";
 * const q = new PriorityQueue<string>({ agingMs: 10_000 });
 * q.push("report", 0, 0);
 * q.push("alert", 10, 1_000);
 * q.push("backup", -5, 2_000);
 * assert.equal(q.shift(), "alert"); // the highest priority
 * assert.equal(q.shift(), "report");
 * // aging: after waiting 60 s, a priority -5 task goes before a fresh priority 0 one
 * q.push("new report", 0, 62_000);
 * assert.equal(q.shift(), "backup");
 * assert.equal(q.remove((t) => t === "new report"), "new report");
 * assert.equal(q.length, 0);
 * ```
 */
export class PriorityQueue<T> implements Pick<Deque<T>, "length" | "push" | "shift" | "peek" | "remove"> {
  readonly #heap = new MinHeap<T>();
  readonly #agingMs: number;

  constructor(options: PriorityQueueOptions = {}) {
    const agingMs = options.agingMs ?? DEFAULT_AGING_MS;
    if (!(agingMs > 0)) {
      throw new RangeError(`PriorityQueue: agingMs must be more than 0 (or Infinity), not ${agingMs}`);
    }
    this.#agingMs = agingMs;
  }

  /** How many tasks are waiting. */
  get length(): number {
    return this.#heap.length;
  }

  /**
   * Queues `item` with `priority` (higher is served sooner; default 0), waiting since `now` (ms, from
   * one clock for every push; default `performance.now()`).
   */
  push(item: T, priority = 0, now: number = performance.now()): void {
    const key = this.#agingMs === Infinity ? -priority : now - priority * this.#agingMs;
    this.#heap.push(item, key);
  }

  /** Removes and returns the task to serve next. */
  shift(): T | undefined {
    return this.#heap.shift();
  }

  /** The task `shift` would return, left in place. */
  peek(): T | undefined {
    return this.#heap.peek();
  }

  /**
   * Removes and returns the task `match` accepts that would be served first (a cancel), as
   * {@linkcode Deque.remove} does. O(n).
   */
  remove(match: (item: T) => boolean): T | undefined {
    return this.#heap.remove(match);
  }

  /** Removes every task `predicate` accepts, and returns them (in no particular order). O(n). */
  removeAll(predicate: (item: T) => boolean): T[] {
    return this.#heap.removeAll(predicate);
  }

  /** Removes every task. */
  clear(): void {
    this.#heap.clear();
  }

  /** The waiting tasks, in no particular order. */
  *[Symbol.iterator](): IterableIterator<T> {
    for (const [item] of this.#heap.entries()) yield item;
  }
}
