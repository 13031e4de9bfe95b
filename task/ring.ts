/**
 * A single-producer single-consumer ring of records in a `SharedArrayBuffer`, between the main
 * isolate and one pool worker: the hot path (jobs out, successful outcomes back) without a
 * `postMessage`, its structured clone, or a `message` event per batch. The reader parks on
 * `Atomics.waitAsync`; the writer calls `Atomics.notify` only when the reader is parked.
 *
 * A record is `[i32 bytes, i32 fence, i32 count, i32 textBytes]`, `count` float64 values, then
 * UTF-8 text, padded to 8 bytes. The fence keeps the ring in order with the `postMessage`s that
 * still carry everything else: it is how many messages the writer had posted when it wrote the
 * record, and the reader takes the record only once it has received that many.
 *
 * Jobs cross it as JSON (their data only when it is plain JSON: see `pool_worker.ts`), results as
 * the JSON text the worker made of them; a batch that does not fit goes by `postMessage`. Measured
 * against `postMessage` alone (docs/benchmarks.md): ~15% less server CPU per task. A parked reader
 * does not keep Deno's event loop alive (a pending `Atomics.waitAsync` does not count): the pool's
 * sockets and the worker's message listener do.
 *
 * @example
 * ```ts
 * import { newRingBuffer, RingReader, RingWriter } from "./ring.ts";
 * import assert from "node:assert/strict";
 * const buffer = newRingBuffer(1024);
 * const got: string[] = [];
 * const reader = new RingReader(buffer, (nums, text) => got.push(`${nums[0]}:${text}`));
 * assert.ok(new RingWriter(buffer).write(0, [7], "hello"));
 * reader.drain();
 * assert.deepEqual(got, ["7:hello"]);
 * ```
 *
 * @module
 */

/** Bytes of each ring's data area: a batch that does not fit goes by `postMessage` instead. */
export const RING_BYTES = 256 * 1024;
const CTRL = 64; // ctrl Int32s: [0] write offset, [1] read offset, [2] reader parked
const W = 0, R = 1, PARKED = 2;
const HEAD = 16;
const WRAP = -1;

/** The shared memory of one ring: its control words and `bytes` of records. */
export function newRingBuffer(bytes = RING_BYTES): SharedArrayBuffer {
  return new SharedArrayBuffer(CTRL + bytes);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The writing end of a ring (one thread). */
export class RingWriter {
  readonly #ctrl: Int32Array;
  readonly #i32: Int32Array;
  readonly #f64: Float64Array;
  readonly #u8: Uint8Array;
  readonly #cap: number;
  #w = 0;

  constructor(buffer: SharedArrayBuffer) {
    this.#ctrl = new Int32Array(buffer, 0, CTRL / 4);
    this.#cap = buffer.byteLength - CTRL;
    this.#i32 = new Int32Array(buffer, CTRL);
    this.#f64 = new Float64Array(buffer, CTRL);
    this.#u8 = new Uint8Array(buffer, CTRL);
  }

  /** Writes one record; false (nothing written) when it does not fit now. */
  write(fence: number, nums: readonly number[], text: string): boolean {
    const max = HEAD + nums.length * 8 + text.length * 3 + 8;
    const r = Atomics.load(this.#ctrl, R);
    let w = this.#w;
    // Keep 8 bytes at the end for a wrap marker; never let w catch up with r. Every comparison and
    // the marker's store run on every write, though the wrap takes them once a ring's length: a
    // branch the optimised code has never seen taken deoptimises it when it is (each isolate's
    // ring wraps for the first time well after its write is optimised) and has it compiled again.
    const ahead = w >= r;
    const fitsTail = max <= this.#cap - w - 8;
    const fitsHead = max < r;
    const fitsGap = max < r - w;
    if (ahead ? !fitsTail && !fitsHead : !fitsGap) return false;
    const wrap = ahead && !fitsTail;
    // Free space either way: without a wrap the record's header overwrites it below.
    this.#i32[w >> 2] = wrap ? WRAP : 0;
    if (wrap) w = 0;
    const i = w >> 2;
    let at = (w + HEAD) >> 3;
    for (let k = 0; k < nums.length; k++) this.#f64[at++] = nums[k];
    const textAt = at << 3;
    const written = text.length === 0
      ? 0
      : encoder.encodeInto(text, this.#u8.subarray(textAt, textAt + text.length * 3)).written;
    const bytes = (textAt - w + written + 7) & ~7;
    this.#i32[i] = bytes;
    this.#i32[i + 1] = fence;
    this.#i32[i + 2] = nums.length;
    this.#i32[i + 3] = written;
    this.#w = w + bytes;
    Atomics.store(this.#ctrl, W, this.#w);
    if (Atomics.load(this.#ctrl, PARKED) !== 0) Atomics.notify(this.#ctrl, W);
    return true;
  }

  /** Wakes the reader (to have it see that it should stop). */
  wake(): void {
    Atomics.notify(this.#ctrl, W);
  }
}

/** What a reader does with a record: `nums` is a view into the ring, valid only during the call. */
export type RecordHandler = (nums: Float64Array, text: string) => void;

/** The reading end of a ring (one thread): drains records in order, and parks until the next one. */
export class RingReader {
  readonly #ctrl: Int32Array;
  readonly #i32: Int32Array;
  readonly #f64: Float64Array;
  readonly #u8: Uint8Array;
  #r = 0;
  #stopped = false;
  /** Messages received from the writer's side: records fenced past it wait. */
  received = 0;

  constructor(buffer: SharedArrayBuffer, readonly onRecord: RecordHandler) {
    this.#ctrl = new Int32Array(buffer, 0, CTRL / 4);
    this.#i32 = new Int32Array(buffer, CTRL);
    this.#f64 = new Float64Array(buffer, CTRL);
    this.#u8 = new Uint8Array(buffer, CTRL);
  }

  /** Takes every record available and allowed by the fence; true when the ring is empty after. */
  drain(): boolean {
    const w = Atomics.load(this.#ctrl, W);
    let r = this.#r;
    let empty = true;
    while (r !== w) {
      const i = r >> 2;
      const bytes = this.#i32[i];
      if (bytes === WRAP) {
        r = 0;
        continue;
      }
      if (this.#i32[i + 1] > this.received) {
        empty = false;
        break;
      }
      const count = this.#i32[i + 2];
      const textBytes = this.#i32[i + 3];
      const at = (r + HEAD) >> 3;
      const nums = this.#f64.subarray(at, at + count);
      const textAt = (at + count) << 3;
      const text = textBytes === 0 ? "" : decoder.decode(this.#u8.subarray(textAt, textAt + textBytes));
      r += bytes;
      this.#r = r;
      this.onRecord(nums, text);
      // The handler may have drained further (re-entrancy) : continue from where we are.
      r = this.#r;
    }
    this.#r = r;
    Atomics.store(this.#ctrl, R, r);
    return empty;
  }

  /** Reads records as they come until {@linkcode stop}. */
  async run(): Promise<void> {
    while (!this.#stopped) {
      this.drain();
      Atomics.store(this.#ctrl, PARKED, 1);
      const w = Atomics.load(this.#ctrl, W);
      if (w !== this.#r && this.#fenceOpen()) {
        Atomics.store(this.#ctrl, PARKED, 0);
        continue;
      }
      const wait = Atomics.waitAsync(this.#ctrl, W, w);
      if (wait.async) await wait.value;
      Atomics.store(this.#ctrl, PARKED, 0);
    }
  }

  /** Whether the next record (if any) may be taken now. */
  #fenceOpen(): boolean {
    let r = this.#r;
    if (this.#i32[r >> 2] === WRAP) r = 0;
    return this.#i32[(r >> 2) + 1] <= this.received;
  }

  /** Ends {@linkcode run}. */
  stop(): void {
    this.#stopped = true;
    Atomics.notify(this.#ctrl, W);
  }
}
