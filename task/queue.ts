/**
 * The queue accepted tasks wait in for a worker: a ring buffer, O(1) push and shift (unlike
 * `Array#shift`). The pool's queues, and the lifecycle's book of finished tasks, are these.
 *
 * @module
 */
import { DEFAULT_AGING_MS, MinHeap } from "./priority_queue.ts";

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

/**
 * The queue a pool serves tasks from: higher priorities first, in order within one, and a low
 * priority never starved — a task's priority rises by one for every `agingMs` it waits (key:
 * `queued at − priority × agingMs`, smallest first; see `priority_queue.ts`). Tasks of priority 0,
 * the common case, stay in a plain {@linkcode Deque} (their keys only grow), so they cost what a
 * FIFO costs; only other priorities go through the heap, and each `shift` takes the smaller key
 * of the two heads.
 *
 * @example
 * ```ts
 * import { PriorityLane } from "./queue.ts";
 * import assert from "node:assert/strict";
 * const lane = new PriorityLane<{ id: number; at: number }>((t) => t.at, 10_000);
 * lane.push({ id: 1, at: 0 }, 0);
 * lane.push({ id: 2, at: 5 }, 0);
 * lane.push({ id: 3, at: 10 }, 1); // one level up: served first
 * assert.deepEqual([lane.shift()?.id, lane.shift()?.id, lane.shift()?.id], [3, 1, 2]);
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
