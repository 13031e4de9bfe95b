/**
 * A binary min-heap of items by a numeric key, equal keys served in the order they were pushed:
 * the pool's priority lane keeps tasks of other priorities than 0 in one (keyed by when they were
 * queued less their priority's worth of waiting, see `PriorityLane` in `queue.ts`), the pool and
 * the lifecycle keep delayed tasks and retries in one (keyed by their due time, one timer for the
 * earliest).
 *
 * @module
 */

/**
 * A binary min-heap of items by a numeric key; equal keys come out in the order they went in.
 * `push` and `shift` are O(log n), `peek` and `peekKey` O(1), `remove` and `removeAll` O(n).
 *
 * @example
 * ```ts
 * import { MinHeap } from "./heap.ts";
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
