/**
 * A latency histogram with fixed memory, in the manner of HdrHistogram: values are bucketed
 * log-linearly (exact below 128 µs, then 64 buckets per power of two, ~1.5% precision), so a run of
 * millions of samples needs no array of every sample and no sort.
 *
 * @module
 */

const LINEAR = 128;
const SUB = 64;
const BUCKETS = LINEAR + 26 * SUB;

/**
 * Records microsecond values; answers percentiles.
 *
 * @example
 * ```ts
 * import { Histogram } from "./histogram.ts";
 * import assert from "node:assert/strict";
 * const h = new Histogram();
 * for (let us = 1; us <= 1000; us++) h.record(us);
 * assert.equal(h.count, 1000);
 * assert.equal(h.percentile(0.5), 503); // not 500: the top of the bucket 500–503 that holds it (~1.5% precision)
 * assert.equal(h.max, 1000);
 * ```
 */
export class Histogram {
  readonly #counts = new Float64Array(BUCKETS);
  count = 0;
  max = 0;
  #sum = 0;

  /** Adds one value in microseconds (negative values count as 0). */
  record(us: number): void {
    const v = Math.max(0, Math.round(us));
    this.#counts[index(v)]++;
    this.count++;
    this.#sum += v;
    if (v > this.max) this.max = v;
  }

  /** Adds every sample of `other`. */
  merge(other: Histogram): void {
    for (let i = 0; i < BUCKETS; i++) this.#counts[i] += other.#counts[i];
    this.count += other.count;
    this.#sum += other.#sum;
    this.max = Math.max(this.max, other.max);
  }

  /** The mean, in microseconds. */
  get mean(): number {
    return this.count === 0 ? 0 : this.#sum / this.count;
  }

  /** The value at or below which fraction `p` (0..1) of the samples lie, in microseconds. */
  percentile(p: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(p * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.#counts[i];
      if (seen >= rank) return Math.min(upper(i), this.max);
    }
    return this.max;
  }
}

function index(v: number): number {
  if (v < LINEAR) return v;
  const e = 31 - Math.clz32(Math.min(v, 2 ** 31 - 1));
  const sub = (v >> (e - 6)) & (SUB - 1);
  return Math.min(BUCKETS - 1, LINEAR + (e - 7) * SUB + sub);
}

/** The highest value that falls in bucket `i`. */
function upper(i: number): number {
  if (i < LINEAR) return i;
  const e = Math.floor((i - LINEAR) / SUB) + 7;
  const sub = (i - LINEAR) % SUB;
  return ((SUB + sub + 1) << (e - 6)) - 1;
}
