/**
 * The JSON Schema of `serve --config` files, generated from the flag table, so that editors can
 * check a config file (`"$schema": "./asynctask.schema.json"`). `deno task docs` writes it;
 * a test fails when the committed file no longer matches the flags.
 *
 * @module
 */
import type { FlagSpec } from "../cli/flags.ts";
import { flagSpecs } from "../cli/options.ts";
import { SERVE_OPTIONS } from "./options.ts";
import { TASKS_JSON_SCHEMA } from "../task/config.ts";
import { SCHEDULES_JSON_SCHEMA } from "../task/schedule.ts";

/**
 * The schema object for a flag table.
 *
 * @example
 * ```ts
 * import { configSchema } from "./schema.ts";
 * import { flagSpecs } from "../cli/options.ts";
 * import { SERVE_OPTIONS } from "./options.ts";
 * import assert from "node:assert/strict";
 * assert.ok("workers" in configSchema(flagSpecs(SERVE_OPTIONS)).properties);
 * ```
 */
export function configSchema(
  flags: readonly FlagSpec[],
): { properties: Record<string, unknown> } & Record<string, unknown> {
  const properties: Record<string, unknown> = { $schema: { type: "string" } };
  for (const f of flags) {
    if (f.commandLineOnly) continue;
    const common = { description: f.help, ...(f.default !== undefined ? { default: f.default } : {}) };
    if (f.kind === "boolean") properties[f.name] = { type: "boolean", ...common };
    else if (f.kind === "list") properties[f.name] = { type: "array", items: { type: "string" }, ...common };
    else if (f.kind === "int") {
      properties[f.name] = {
        type: "integer",
        ...(f.min !== undefined ? { minimum: f.min } : {}),
        ...(f.max !== undefined ? { maximum: f.max } : {}),
        ...common,
      };
    } else if (f.kind === "size") {
      properties[f.name] = {
        anyOf: [{ type: "integer", minimum: 0 }, {
          type: "string",
          pattern: "^\\s*\\d+(\\.\\d+)?\\s*([kKmMgG]i?[bB]?|[bB])?\\s*$",
        }],
        description: `${f.help} — bytes, or a size such as "64KiB" or "1MiB"`,
        ...(f.default !== undefined ? { default: f.default } : {}),
      };
    } else if (f.kind === "duration") {
      properties[f.name] = {
        anyOf: [{ type: "integer", minimum: 0 }, {
          type: "string",
          pattern: "^\\s*\\d+(\\.\\d+)?\\s*(ms|s|m|h|d)\\s*$|^\\s*0\\s*$",
        }],
        description: `${f.help} — milliseconds, or a duration such as "500ms", "5s" or "2m"`,
        ...(f.default !== undefined ? { default: f.default } : {}),
      };
    } else {
      properties[f.name] = { type: "string", ...(f.choices ? { enum: [...f.choices] } : {}), ...common };
    }
  }
  properties.tasks = TASKS_JSON_SCHEMA;
  properties.schedules = SCHEDULES_JSON_SCHEMA;
  return {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    title: "asynctask serve configuration",
    description:
      "Options of `asynctask serve`, by flag name (flags on the command line win), and the `tasks` map. See docs/configuration.md.",
    type: "object",
    additionalProperties: false,
    properties,
  };
}

if (import.meta.main) {
  const path = new URL("../asynctask.schema.json", import.meta.url);
  await Deno.writeTextFile(path, JSON.stringify(configSchema(flagSpecs(SERVE_OPTIONS)), null, 2) + "\n");
  console.log(`wrote ${path.pathname}`);
}
