/**
 * Tasks and the pool that runs them: the public face of `task/`.
 *
 * - the handler contract a task module implements (`types.ts`): {@linkcode TaskHandler}, its
 *   {@linkcode TaskContext}, and the errors that steer retries;
 * - the built-in and declared handlers (`handlers/`), and the config file's `tasks` map (`config.ts`);
 * - {@linkcode WorkerPool}: worker threads that run tasks (`pool.ts` → `pool_worker.ts` → `worker.ts`).
 *
 * @example
 * ```ts
 * import { InvalidDataError, type TaskHandler, testContext } from "./mod.ts";
 * import assert from "node:assert/strict";
 * const shout: TaskHandler<string, string> = {
 *   name: "shout",
 *   description: "upper-cases its text",
 *   validate(data) {
 *     if (typeof data !== "string") throw new InvalidDataError("shout needs text");
 *     return data;
 *   },
 *   run: (text) => text.toUpperCase(),
 * };
 * assert.equal(await shout.run(shout.validate("hi"), testContext()), "HI");
 * ```
 *
 * @module
 */
export {
  abortableDelay,
  InvalidDataError,
  PermanentError,
  RetryLaterError,
  type TaskContext,
  type TaskHandler,
  type TaskLogger,
  type TaskLogLevel,
} from "./types.ts";
export { testContext } from "./testing.ts";
export type { HandlerSettings, TaskSpec } from "./spec.ts";
export { createRegistry, type HandlerRegistry } from "./handlers/mod.ts";
export { type PoolEvents, type PoolOptions, type TaskLimits, WorkerPool, type WorkerStats } from "./pool.ts";
