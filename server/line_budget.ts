/**
 * A budget for per-task log lines: so many a second, and the rest counted, not written — a flood
 * of tasks must not become a flood of log lines that slows the server. Every `summaryMs` in which
 * lines were held back, one line says how many (`… and 12,345 more in the last 10 s`).
 *
 * @module
 */

/**
 * Lines per second, and a summary of the rest.
 *
 * @example
 * ```ts
 * import { LineBudget } from "./line_budget.ts";
 * import assert from "node:assert/strict";
 * const said: string[] = [];
 * const budget = new LineBudget(2, 10_000, (n, ms) => said.push(`${n} more in ${ms} ms`));
 * assert.deepEqual([budget.take(0), budget.take(10), budget.take(20)], [true, true, false]);
 * assert.equal(budget.take(1000), true, "a new second");
 * budget.flush();
 * assert.deepEqual(said, ["1 more in 10000 ms"]);
 * ```
 */
export class LineBudget {
  #second = -Infinity;
  #used = 0;
  #held = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * @param perSecond lines written per second, at most.
   * @param summaryMs how often a line says how many were held back.
   * @param summary writes that line.
   */
  constructor(
    readonly perSecond: number,
    readonly summaryMs: number,
    private readonly summary: (held: number, ms: number) => void,
  ) {}

  /** Whether a line may be written now (`now` in ms); if not, it is counted for the summary. */
  take(now: number): boolean {
    if (now - this.#second >= 1000) {
      this.#second = now;
      this.#used = 0;
    }
    if (this.#used < this.perSecond) {
      this.#used++;
      return true;
    }
    if (this.#held++ === 0 && this.#timer === undefined) {
      const timer = setTimeout(() => this.flush(), this.summaryMs);
      Deno.unrefTimer(timer); // a pending summary does not keep the process alive
      this.#timer = timer;
    }
    return false;
  }

  /** Writes the summary of what was held back, if anything was, now. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#held === 0) return;
    const held = this.#held;
    this.#held = 0;
    this.summary(held, this.summaryMs);
  }
}
