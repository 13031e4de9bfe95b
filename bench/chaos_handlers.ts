/**
 * `chaos`: a handler for the soak that misbehaves at random, the way real handlers do on a bad
 * day. Load it with `serve --module bench/chaos_handlers.ts`.
 *
 * Per run: mostly fast successes; some slow ones (honouring the signal); some that throw; and
 * rarely one that never yields, crashes its worker, or closes it.
 *
 * @module
 */
import { abortableDelay, type TaskHandler } from "../task/types.ts";

/**
 * The odds of each behaviour, cumulative, per run. `CHAOS_ODDS` in the environment (JSON, e.g.
 * `{"hang": 0, "crash": 0, "close": 0}`) changes some of them, to take the faults apart.
 */
export const CHAOS_ODDS: Readonly<Record<"hang" | "crash" | "close" | "throw" | "slow", number>> = {
  hang: 0.0001,
  crash: 0.0006,
  close: 0.0008,
  throw: 0.05,
  slow: 0.15,
  ...JSON.parse(Deno.env.get("CHAOS_ODDS") ?? "{}"),
};

const chaos: TaskHandler<unknown, unknown> = {
  name: "chaos",
  description: "misbehaves at random (soak tests)",
  validate: (data) => data,
  async run(data, ctx) {
    const roll = Math.random();
    if (roll < CHAOS_ODDS.hang) {
      while (true) {
        // never yields: only a timeout and a terminated worker end this
      }
    }
    if (roll < CHAOS_ODDS.crash) {
      setTimeout(() => {
        throw new Error("chaos: uncaught error in a callback");
      }, 0);
      return await new Promise(() => {});
    }
    if (roll < CHAOS_ODDS.close) {
      (globalThis as unknown as { close(): void }).close();
      return await new Promise(() => {});
    }
    if (roll < CHAOS_ODDS.throw) throw new Error("chaos: the handler threw");
    if (roll < CHAOS_ODDS.slow) await abortableDelay(20 + Math.random() * 200, ctx.signal);
    return data;
  },
};

/** The handlers of this module. */
export const handlers: TaskHandler[] = [chaos];
