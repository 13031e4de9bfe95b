/**
 * `echo`: returns its data at once. For health checks and benchmarks.
 *
 * @module
 */
import type { TaskHandler } from "../types.ts";

/**
 * The `echo` handler.
 *
 * @example
 * ```ts
 * import { echoHandler } from "./echo.ts";
 * import { testContext } from "../testing.ts";
 * console.log(await echoHandler.run("hi", testContext()));
 * ```
 */
export const echoHandler: TaskHandler<unknown, unknown> = {
  name: "echo",
  description: "returns its data at once (health checks, benchmarks)",
  validate: (data) => data,
  accepted: () => "echo queued",
  run: (data) => data,
};
