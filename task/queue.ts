/**
 * The queue accepted tasks wait in for a worker: a ring buffer, O(1) push and shift (unlike
 * `Array#shift`). The pool's queues, and the lifecycle's book of finished tasks, are these.
 *
 * @module
 */
import { MinHeap } from "./heap.ts";

/**
 * A growable ring buffer.
 *
 * @example
 * ```ts
 * import { Deque } from "./queue.ts";
 * import assert from "node:assert/strict";
 * const q = new Deque<number>();
 * q.push(1);
 * q.push(2);
 * assert.equal(q.shift(), 1);
 * assert.equal(q.length, 1);
 * ```
 */
export class Deque<T> {
  #items: (T | undefined)[] = new Array(16);
  #head = 0;
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(item: T): void {
    if (this.#length === this.#items.length) this.#grow();
    this.#items[(this.#head + this.#length) & (this.#items.length - 1)] = item;
    this.#length++;
  }

  shift(): T | undefined {
    if (this.#length === 0) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) & (this.#items.length - 1);
    this.#length--;
    return item;
  }

  /** Returns the task at the head without removing it. */
  peek(): T | undefined {
    return this.#length === 0 ? undefined : this.#items[this.#head];
  }

  /**
   * Removes and returns the first item that `match` accepts (O(n): for a cancel, not the hot path).
   *
   * @example
   * ```ts
   * import { Deque } from "./queue.ts";
   * import assert from "node:assert/strict";
   * const q = new Deque<number>();
   * for (const n of [1, 2, 3]) q.push(n);
   * assert.equal(q.remove((n) => n === 2), 2);
   * assert.deepEqual([q.shift(), q.shift(), q.length], [1, 3, 0]);
   * ```
   */
  remove(match: (item: T) => boolean): T | undefined {
    const mask = this.#items.length - 1;
    for (let i = 0; i < this.#length; i++) {
      const item = this.#items[(this.#head + i) & mask]!;
      if (!match(item)) continue;
      for (let j = i; j < this.#length - 1; j++) {
        this.#items[(this.#head + j) & mask] = this.#items[(this.#head + j + 1) & mask];
      }
      this.#items[(this.#head + this.#length - 1) & mask] = undefined;
      this.#length--;
      return item;
    }
    return undefined;
  }

  #grow(): void {
    const old = this.#items;
    const items: (T | undefined)[] = new Array(old.length * 2);
    for (let i = 0; i < this.#length; i++) items[i] = old[(this.#head + i) & (old.length - 1)];
    this.#items = items;
    this.#head = 0;
  }
}

/** The default aging: a waiting task's priority rises by one level every 10 s. */
export const DEFAULT_AGING_MS = 10_000;

/**
 * The queue a pool serves tasks from: higher priorities first, in order within one, and a low
 * priority never starved.
 *
 * **Aging.** A task's priority rises by one level for every `agingMs` it waits, so a stream of
 * high-priority tasks cannot hold a low-priority one back forever: a task of priority -100 waits
 * at most 200 × `agingMs` (33 minutes with the default) behind tasks of priority 100 that keep
 * coming. At time `now`, a task of priority `p` queued at `t` ranks as `p + (now − t) / agingMs`,
 * so it goes before a task of priority `q` queued at `u` when `t − p·agingMs < u − q·agingMs`,
 * whatever `now` is: that key never changes while the task waits, so it is computed once, at
 * `push`, and aging costs nothing afterwards. Equal keys go in the order they were pushed.
 *
 * **Cost.** Tasks of priority 0, the common case, stay in a plain {@linkcode Deque} (their keys
 * only grow with time), so they cost what a FIFO costs; other priorities go through a
 * {@linkcode MinHeap}, and each `shift` takes the smaller key of the two heads. Measured (a
 * million pushes, then a million shifts, the median of 5 rounds):
 * `ASYNCTASK_BENCH=1 ./deno test --allow-all task/queue_test.ts --filter 1M`.
 *
 * @example
 * ```ts
 * import { PriorityLane } from "./queue.ts";
 * import assert from "node:assert/strict";
 * const lane = new PriorityLane<{ id: number; at: number }>((t) => t.at, 10_000);
 * lane.push({ id: 1, at: 0 }, 0);
 * lane.push({ id: 2, at: 5 }, 1); // one level up: served first
 * lane.push({ id: 3, at: 10 }, -5); // five levels down…
 * lane.push({ id: 4, at: 60_000 }, 0); // …yet 60 s of waiting put it ahead of a fresh task
 * assert.deepEqual([1, 2, 3, 4].map(() => lane.shift()?.id), [2, 1, 3, 4]);
 * assert.equal(lane.length, 0);
 * ```
 */
export class PriorityLane<T> {
  readonly #plain = new Deque<T>();
  readonly #ranked = new MinHeap<T>();

  /**
   * @param timeOf when an item was queued (ms, one clock for all: its place among equals).
   * @param agingMs how long a task waits to rise one priority level.
   */
  constructor(private readonly timeOf: (item: T) => number, private readonly agingMs: number = DEFAULT_AGING_MS) {}

  get length(): number {
    return this.#plain.length + this.#ranked.length;
  }

  push(item: T, priority = 0): void {
    if (priority === 0) this.#plain.push(item);
    else this.#ranked.push(item, this.timeOf(item) - priority * this.agingMs);
  }

  #rankedFirst(): boolean {
    if (this.#ranked.length === 0) return false;
    if (this.#plain.length === 0) return true;
    return this.#ranked.peekKey()! < this.timeOf(this.#plain.peek()!);
  }

  shift(): T | undefined {
    return this.#rankedFirst() ? this.#ranked.shift() : this.#plain.shift();
  }

  peek(): T | undefined {
    return this.#rankedFirst() ? this.#ranked.peek() : this.#plain.peek();
  }

  /** Removes and returns the first item `match` accepts (a cancel: O(n)). */
  remove(match: (item: T) => boolean): T | undefined {
    return this.#plain.remove(match) ?? this.#ranked.remove(match);
  }
}
