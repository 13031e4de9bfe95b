/**
 * Dispatch modes: which worker gets the next task (Swoole's `dispatch_mode`).
 *
 * - `least-busy` (default): the worker with the fewest tasks in flight.
 * - `round-robin`: the next worker in turn that has room.
 * - `connection`: always the same worker for one connection (Swoole's dispatch_mode 2), so
 *   that one client's tasks run in one worker, in order of arrival.
 *
 * @module
 */

/** The values of `--dispatch`. */
export const DISPATCH_MODES = ["least-busy", "round-robin", "connection"] as const;
/** One of {@linkcode DISPATCH_MODES}. */
export type DispatchMode = (typeof DISPATCH_MODES)[number];

/**
 * Picks a slot with room (`busy[i] < capacity`, `busy[i]` the tasks in flight on slot `i`) for the
 * `least-busy` and `round-robin` modes, or returns -1 when every slot is full. `cursor` carries
 * round-robin's position between calls. The pool counts its slots once per batch it dispatches.
 *
 * @example
 * ```ts
 * import { pickSlot } from "./dispatch.ts";
 * import assert from "node:assert/strict";
 * const cursor = { next: 0 };
 * assert.equal(pickSlot("least-busy", [3, 1, 1], 10, cursor), 1);
 * assert.equal(pickSlot("round-robin", [10, 10], 10, cursor), -1);
 * ```
 */
export function pickSlot(
  mode: Exclude<DispatchMode, "connection">,
  busy: readonly number[],
  capacity: number,
  cursor: { next: number },
): number {
  const n = busy.length;
  if (mode === "round-robin") {
    for (let k = 0; k < n; k++) {
      const i = (cursor.next + k) % n;
      if (busy[i] < capacity) {
        cursor.next = (i + 1) % n;
        return i;
      }
    }
    return -1;
  }
  let best = -1;
  let bestBusy = capacity;
  for (let i = 0; i < n; i++) {
    if (busy[i] < bestBusy) {
      best = i;
      bestBusy = busy[i];
    }
  }
  return best;
}

/**
 * The slot that always serves a connection in `connection` mode.
 *
 * @example
 * ```ts
 * import { connectionSlot } from "./dispatch.ts";
 * import assert from "node:assert/strict";
 * assert.equal(connectionSlot(7, 4), 3);
 * ```
 */
export function connectionSlot(connId: number, slotCount: number): number {
  return connId % slotCount;
}
