/**
 * Typed option tables: one table per command declares each option once — its flag, kind, default,
 * unit, help, environment variable and config key — and everything else is derived from it: the
 * flags `parseFlags` reads, the typed options object, `--help`, the config file's JSON Schema and
 * the configuration reference in `docs/`.
 *
 * The table's keys are the option object's property names, so a typo in an option name is a type
 * error, not a string that silently reads nothing.
 *
 * @example
 * ```ts
 * import { defineOptions, parseOptions } from "./options.ts";
 * import assert from "node:assert/strict";
 * const table = defineOptions({
 *   port: { flag: "port", kind: "int", default: 9501, help: "TCP port" },
 *   sync: { flag: "sync", kind: "string", default: "full", choices: ["full", "normal"], help: "fsync" },
 *   journal: { flag: "journal", kind: "string", help: "journal file" },
 * });
 * const { values } = parseOptions("serve", table, ["--port", "7000"]);
 * assert.equal(values.port, 7000); // a number
 * assert.equal(values.sync, "full"); // "full" | "normal"
 * assert.equal(values.journal, undefined); // optional: no default
 * ```
 *
 * @module
 */
import { type FlagSpec, parseFlags } from "./flags.ts";

/** One option of a command. */
export interface OptionSpec extends Omit<FlagSpec, "name" | "default"> {
  /** Its flag, kebab-case without dashes (`max-line`); also its key in a config file. */
  flag: string;
  /** Absent: the option is optional (`undefined` when not given). */
  default?: string | number | boolean | readonly string[];
  /** The reference's section for this option (`docs/configuration.md`). */
  group?: string;
}

/** The value type of one option spec. */
export type OptionValue<S extends OptionSpec> = S["kind"] extends "int" | "size" | "duration" ? number
  : S["kind"] extends "boolean" ? boolean
  : S["kind"] extends "list" ? string[]
  : S["choices"] extends readonly (infer C extends string)[] ? C
  : string;

type Required<T extends Record<string, OptionSpec>> = {
  -readonly [K in keyof T as T[K] extends { default: unknown } ? K : never]: OptionValue<T[K]>;
};
type Optional<T extends Record<string, OptionSpec>> = {
  -readonly [K in keyof T as T[K] extends { default: unknown } ? never : K]?: OptionValue<T[K]>;
};

/** The typed values of a table: options with a default are always there, the others may be missing. */
export type OptionValues<T extends Record<string, OptionSpec>> = Required<T> & Optional<T>;

/**
 * Declares a table. The identity at run time; at compile time it keeps the literal types (choices,
 * whether a default exists) that {@linkcode OptionValues} reads.
 */
export function defineOptions<const T extends Record<string, OptionSpec>>(table: T): T {
  return table;
}

/** A default as a flag value (a list is copied: a table's lists are read-only). */
function copy(v: NonNullable<OptionSpec["default"]>): string | number | boolean | string[] {
  return typeof v === "object" ? [...v] : v;
}

/** The table as the flag parser and help renderer take it. */
export function flagSpecs(table: Record<string, OptionSpec>): FlagSpec[] {
  return Object.values(table).map(({ flag, default: value, group: _group, ...rest }): FlagSpec => ({
    name: flag,
    ...rest,
    ...(value !== undefined ? { default: copy(value) } : {}),
  }));
}

/** Every option's default, typed. */
export function defaults<T extends Record<string, OptionSpec>>(table: T): Required<T> {
  const out: Record<string, unknown> = {};
  for (const [key, o] of Object.entries(table)) {
    if (o.default !== undefined) out[key] = copy(o.default);
  }
  // The keys and value kinds are the table's own, by construction of the loop above.
  return out as Required<T>;
}

/** What {@linkcode parseOptions} returns. */
export interface ParsedOptions<T extends Record<string, OptionSpec>> {
  values: OptionValues<T>;
  /** Options that took their default: given neither on the command line, nor in the environment, nor in the file. */
  defaulted: ReadonlySet<keyof T>;
  /** The `--config` file, if one was given, and its sections that are not options (`tasks`). */
  config: { path?: string; sections: Record<string, unknown> };
  positionals: string[];
}

/**
 * Reads `args` (and the environment, and a `--config` file where the table has a `config` option)
 * against a table. Precedence: command line, environment, config file, default.
 *
 * @throws {import("./flags.ts").UsageError} for an unknown flag or key, a bad value, or a bad config file.
 */
export function parseOptions<T extends Record<string, OptionSpec>>(
  command: string,
  table: T,
  args: string[],
  opts: Parameters<typeof parseFlags>[3] = {},
): ParsedOptions<T> {
  const flags = parseFlags(command, flagSpecs(table), args, opts);
  const values: Record<string, unknown> = {};
  const defaulted = new Set<keyof T>();
  for (const [key, o] of Object.entries(table)) {
    const v = flags.values[o.flag];
    if (v !== undefined) values[key] = v;
    if (flags.defaulted.has(o.flag)) defaulted.add(key);
  }
  // Each value was converted by its own spec's kind (parseFlags), so it has that spec's type.
  return { values: values as OptionValues<T>, defaulted, config: flags.config, positionals: flags.positionals };
}
