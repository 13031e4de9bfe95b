/**
 * `module` tasks: a TypeScript or JavaScript module the operator names in the config file, one
 * task per module, loaded on the server (for `validate`) and in every worker (to run):
 *
 * ```ts ignore
 * export function validate(data: unknown) { … } // optional: throw to refuse (invalid_data); return normalised data
 * export default async function (data, ctx) { … return result; } // ctx: taskId, attempt, signal, logger, progress
 * ```
 *
 * @module
 */
import { InvalidDataError, type TaskContext, type TaskHandler } from "../types.ts";
import type { TaskSpec } from "../spec.ts";

/** The `module` kind of {@linkcode TaskSpec}. */
export type ModuleSpec = Extract<TaskSpec, { kind: "module" }>;

/**
 * Loads a task module and makes its handler.
 *
 * @example
 * ```ts
 * import { createModuleHandler } from "./module.ts";
 * import { testContext } from "../testing.ts";
 * import assert from "node:assert/strict";
 * const file = await Deno.makeTempFile({ suffix: ".ts" });
 * await Deno.writeTextFile(file, "export default (data: { n: number }) => data.n * 2;");
 * const double = await createModuleHandler({ kind: "module", name: "double", module: `file://${file}` });
 * assert.equal(await double.run({ n: 21 }, testContext()), 42);
 * ```
 * @throws {Error} naming the module when it cannot be loaded or has no default export function.
 */
export async function createModuleHandler(spec: ModuleSpec): Promise<TaskHandler> {
  const where = spec.where ?? `task "${spec.name}"`;
  let mod: { default?: unknown; validate?: unknown };
  try {
    mod = await import(spec.module);
  } catch (e) {
    throw new Error(`${where}: cannot load module ${spec.module}: ${(e as Error).message}`);
  }
  const run = mod.default;
  if (typeof run !== "function") {
    throw new Error(`${where}: module ${spec.module} must export a default function (data, ctx) => result`);
  }
  const check = typeof mod.validate === "function" ? mod.validate as (data: unknown) => unknown : undefined;
  return {
    name: spec.name,
    description: spec.description ?? `runs ${spec.module.split("/").pop()}`,
    validate(data) {
      if (!check) return data;
      try {
        const normalised = check(data);
        return normalised === undefined ? data : normalised;
      } catch (e) {
        if (e instanceof InvalidDataError) throw e;
        throw new InvalidDataError(e instanceof Error ? e.message : String(e));
      }
    },
    timeoutMs: spec.timeoutMs,
    retries: spec.retries,
    concurrency: spec.concurrency,
    run: (data: unknown, ctx: TaskContext) => run(data, ctx),
  };
}
