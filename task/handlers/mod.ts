/**
 * The handler registry: every task name the server knows, built from the operator's settings. The
 * server uses it to validate data before accepting a task; each pool worker builds the same
 * registry to run it.
 *
 * @module
 */
import type { HandlerSettings, TaskHandler } from "../types.ts";
import { echoHandler } from "./echo.ts";
import { sleepHandler } from "./sleep.ts";
import { createSmsHandler } from "./sms.ts";

/** Task names to handlers. */
export type HandlerRegistry = ReadonlyMap<string, TaskHandler>;

/**
 * Builds the registry of built-in tasks: `sms`, `echo`, `sleep`.
 *
 * @example
 * ```ts
 * import { createRegistry } from "./mod.ts";
 * const registry = createRegistry({ smsDelayMs: 5000 });
 * console.log([...registry.keys()]); // ["sms", "echo", "sleep"]
 * ```
 */
export function createRegistry(settings: HandlerSettings): HandlerRegistry {
  const handlers = [createSmsHandler(settings), echoHandler, sleepHandler] as TaskHandler[];
  return new Map(handlers.map((h) => [h.name, h]));
}
