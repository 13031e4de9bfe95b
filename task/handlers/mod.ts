/**
 * The handler registry: every task name the server knows, built from the operator's settings. The
 * server uses it to validate data before accepting a task; each pool worker builds the same
 * registry to run it.
 *
 * @module
 */
import { InvalidDataError, type TaskHandler } from "../types.ts";
import type { HandlerSettings, TaskSpec } from "../spec.ts";
import { echoHandler } from "./echo.ts";
import { sleepHandler } from "./sleep.ts";
import { createSmsHandler } from "./sms.ts";

/** Task names to handlers. */
export type HandlerRegistry = ReadonlyMap<string, TaskHandler>;

/**
 * Builds the registry: the operator's tasks from the config file (`settings.tasks`) — or, without
 * a `tasks` map, the built-in `sms`, `echo` and `sleep` — then the handlers exported as `handlers`
 * by each module in `settings.modules`. With a `tasks` map, clients can name only what it
 * declares (a built-in is declared with `"kind": "builtin"`), and `--module` handlers.
 *
 * @example
 * ```ts
 * import { createRegistry } from "./mod.ts";
 * import assert from "node:assert/strict";
 * const registry = await createRegistry({ smsDelayMs: 5000 });
 * assert.deepEqual([...registry.keys()], ["sms", "echo", "sleep"]);
 * ```
 * @throws {Error} naming the module when one cannot be loaded or does not export valid handlers.
 */
export async function createRegistry(
  settings: HandlerSettings,
  opts: { validate?: boolean } = {},
): Promise<HandlerRegistry> {
  const registry = new Map<string, TaskHandler>();
  const add = (h: TaskHandler, from: string) => {
    if (registry.has(h.name)) throw new Error(`${from}: task "${h.name}" is defined twice`);
    registry.set(h.name, h);
  };
  if (settings.tasks === undefined) { for (const h of builtins(settings)) add(h, "built-in"); }
  // Data is validated on the server only: workers (opts.validate false) never load the schema
  // compiler, whose many CommonJS files would be read while the server may be short of descriptors.
  const compile = opts.validate !== false && settings.tasks?.some((t) => t.schema !== undefined)
    ? (await import("../data_schema.ts")).compileDataSchema
    : undefined;
  for (const spec of settings.tasks ?? []) {
    const handler = await createTaskHandler(spec, settings);
    add(compile ? withSchema(handler, spec, compile) : handler, "config");
  }
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

/**
 * Makes the handler of a task declared in the config file.
 *
 * @example
 * ```ts
 * import { createTaskHandler } from "./mod.ts";
 * import assert from "node:assert/strict";
 * const h = await createTaskHandler({ kind: "command", name: "upper", command: ["tr", "a-z", "A-Z"], maxOutput: 1024 });
 * assert.equal(h.name, "upper");
 * ```
 */
export async function createTaskHandler(
  spec: TaskSpec,
  settings: HandlerSettings = { smsDelayMs: 5000 },
): Promise<TaskHandler> {
  // Loaded on demand: a server without declared tasks (and each of its workers) stays lean.
  switch (spec.kind) {
    case "builtin": {
      const builtin = builtins(settings).find((h) => h.name === spec.name);
      if (!builtin) throw new Error(`${spec.where ?? spec.name}: there is no built-in task "${spec.name}"`);
      return {
        ...builtin,
        ...(spec.description !== undefined ? { description: spec.description } : {}),
        timeoutMs: spec.timeoutMs,
        retries: spec.retries,
        concurrency: spec.concurrency,
      };
    }
    case "command":
      return (await import("./command.ts")).createCommandHandler(spec);
    case "webhook":
      return (await import("./webhook.ts")).createWebhookHandler(spec);
    case "module":
      return (await import("./module.ts")).createModuleHandler(spec);
  }
}

/** The built-in tasks. */
function builtins(settings: HandlerSettings): TaskHandler[] {
  return [createSmsHandler(settings), echoHandler, sleepHandler] as TaskHandler[];
}

/** Checks the data against the task's JSON Schema (compiled on first use) before its own validate. */
function withSchema(
  handler: TaskHandler,
  spec: TaskSpec,
  compile: (schema: Record<string, unknown> | boolean) => (data: unknown) => string | undefined,
): TaskHandler {
  if (spec.schema === undefined) return handler;
  const schema = spec.schema;
  let check: ((data: unknown) => string | undefined) | undefined;
  return {
    ...handler,
    validate(data) {
      check ??= compile(schema);
      const why = check(data);
      if (why !== undefined) throw new InvalidDataError(`${spec.name}: ${why}`);
      return handler.validate(data);
    },
  };
}
