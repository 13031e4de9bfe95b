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
 * Builds the registry: the built-in `sms`, `echo` and `sleep`, then the handlers exported as
 * `handlers` by each module in `settings.modules`.
 *
 * @example
 * ```ts
 * import { createRegistry } from "./mod.ts";
 * const registry = await createRegistry({ smsDelayMs: 5000 });
 * console.log([...registry.keys()]); // ["sms", "echo", "sleep"]
 * ```
 * @throws {Error} naming the module when one cannot be loaded or does not export valid handlers.
 */
export async function createRegistry(settings: HandlerSettings): Promise<HandlerRegistry> {
  const registry = new Map<string, TaskHandler>();
  const add = (h: TaskHandler, from: string) => {
    if (registry.has(h.name)) throw new Error(`${from}: task "${h.name}" is defined twice`);
    registry.set(h.name, h);
  };
  for (const h of [createSmsHandler(settings), echoHandler, sleepHandler] as TaskHandler[]) add(h, "built-in");
  for (const url of settings.modules ?? []) {
    let mod: { handlers?: unknown };
    try {
      mod = await import(url);
    } catch (e) {
      throw new Error(`cannot load handler module ${url}: ${(e as Error).message} — check the path given to --module`);
    }
    if (!Array.isArray(mod.handlers)) throw new Error(`handler module ${url} must export "handlers", an array`);
    for (const h of mod.handlers as TaskHandler[]) {
      if (typeof h?.name !== "string" || typeof h.validate !== "function" || typeof h.run !== "function") {
        throw new Error(`handler module ${url}: each handler needs a name, validate() and run()`);
      }
      add(h, url);
    }
  }
  return registry;
}
