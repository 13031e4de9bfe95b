/**
 * The queue of accepted tasks that wait for a worker.
 *
 * {@linkcode TaskQueue} is the interface the pool schedules from; {@linkcode Deque} is the
 * in-memory implementation (a ring buffer: O(1) push and shift, unlike `Array#shift`). A durable
 * journal records tasks beside this queue and re-fills it on start; an external broker can stand
 * in for it by implementing the same three members.
 *
 * @module
 */

/** A FIFO of waiting tasks. */
export interface TaskQueue<T> {
  /** How many tasks wait. */
  readonly length: number;
  /** Appends a task at the tail. */
  push(item: T): void;
  /** Removes and returns the task at the head, if any. */
  shift(): T | undefined;
}

/**
 * A growable ring buffer.
 *
 * @example
 * ```ts
 * import { Deque } from "./queue.ts";
 * const q = new Deque<number>();
 * q.push(1);
 * q.push(2);
 * console.log(q.shift(), q.length); // 1 1
 * ```
 */
export class Deque<T> implements TaskQueue<T> {
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

  #grow(): void {
    const old = this.#items;
    const items: (T | undefined)[] = new Array(old.length * 2);
    for (let i = 0; i < this.#length; i++) items[i] = old[(this.#head + i) & (old.length - 1)];
    this.#items = items;
    this.#head = 0;
  }
}
