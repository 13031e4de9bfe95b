/**
 * `--accept-hold`: an `ACCEPTED` for a connection's one task in flight (request–response) may wait
 * a little for that task's final reply, so that both go out in one write. On loopback each write
 * is a `sendto` of ~8 µs of CPU that also wakes the client; a fast task's `ACCEPTED` and `DONE`
 * then cost one. One timer serves every connection of the server: it starts with the first held
 * reply, and when it fires every connection still holding writes, so no `ACCEPTED` waits longer
 * than the hold. Pipelined replies are never held: they share writes anyway.
 *
 * @module
 */

/** What the hold asks of a connection when the time is up. */
export interface Holder {
  /** Writes what it holds now. */
  release(): void;
}

/**
 * The connections holding an `ACCEPTED`, and the one timer that releases them.
 *
 * @example
 * ```ts
 * import { ReplyHold } from "./reply_hold.ts";
 * import assert from "node:assert/strict";
 * const hold = new ReplyHold(1);
 * let released = 0;
 * hold.add({ release: () => released++ });
 * await new Promise((r) => setTimeout(r, 20));
 * assert.equal(released, 1);
 * ```
 */
export class ReplyHold {
  #holding: Holder[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** `ms`: the longest an `ACCEPTED` waits (`--accept-hold`); 0 writes each at once. */
  constructor(readonly ms: number) {}

  /** Whether replies are held at all. */
  get enabled(): boolean {
    return this.ms > 0;
  }

  /** Holds `h` until the timer fires (it starts now if none runs). */
  add(h: Holder): void {
    this.#holding.push(h);
    this.#timer ??= setTimeout(() => this.#release(), this.ms);
  }

  #release(): void {
    this.#timer = undefined;
    const holding = this.#holding;
    this.#holding = [];
    for (const h of holding) h.release();
  }

  /** Writes everything held now, and stops the timer (a stop). */
  close(): void {
    clearTimeout(this.#timer);
    this.#release();
  }
}
