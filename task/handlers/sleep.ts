/**
 * `sleep`: waits the given number of milliseconds, then returns `{"slept_ms": n}`. For tests and
 * demos of concurrency, ordering and shutdown.
 *
 * @module
 */
import { abortableDelay, InvalidDataError, type TaskHandler } from "../types.ts";

/** The longest sleep a client may ask for: one hour. */
export const MAX_SLEEP_MS = 3_600_000;

/**
 * Reads a sleep duration: a number, a numeric string, or `{"ms": n}`; 0 to one hour.
 *
 * @example
 * ```ts
 * import { parseSleepMs } from "./sleep.ts";
 * import assert from "node:assert/strict";
 * assert.equal(parseSleepMs("250"), 250);
 * ```
 * @throws {InvalidDataError} when it is not a whole number of milliseconds in range.
 */
export function parseSleepMs(data: unknown): number {
  let raw = data;
  if (typeof raw === "object" && raw !== null && !Array.isArray(raw) && "ms" in raw) {
    raw = (raw as { ms: unknown }).ms;
  }
  const ms = typeof raw === "string" && /^\s*\d+\s*$/.test(raw) ? Number(raw) : raw;
  if (typeof ms !== "number" || !Number.isInteger(ms) || ms < 0 || ms > MAX_SLEEP_MS) {
    throw new InvalidDataError(
      `sleep needs a whole number of milliseconds from 0 to ${MAX_SLEEP_MS} (text, a number or {"ms": n}), got ${
        JSON.stringify(data)?.slice(0, 40)
      }`,
    );
  }
  return ms;
}

/**
 * The `sleep` handler.
 *
 * @example
 * ```ts
 * import { sleepHandler } from "./sleep.ts";
 * import { testContext } from "../testing.ts";
 * import assert from "node:assert/strict";
 * const ms = sleepHandler.validate("5");
 * assert.deepEqual(await sleepHandler.run(ms, testContext()), { slept_ms: 5 });
 * ```
 */
export const sleepHandler: TaskHandler<number, { slept_ms: number }> = {
  name: "sleep",
  description: "waits the given milliseconds (tests, demos)",
  validate: parseSleepMs,
  accepted: (ms) => `sleeping ${ms} ms`,
  async run(ms, ctx) {
    await abortableDelay(ms, ctx.signal);
    return { slept_ms: ms };
  },
};
