/**
 * Declarative command-line flags: one table per subcommand gives each flag's kind, default and
 * help; {@linkcode parseFlags} reads argv (and, optionally, a JSON config file) against it with
 * `node:util`'s `parseArgs`, and {@linkcode renderHelp} prints the same table as `--help`.
 *
 * Every mistake is a {@linkcode UsageError} that names the flag and suggests the fix.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { formatDuration, formatSize, parseDuration, parseSize } from "./units.ts";
import { commandFor } from "./invocation.ts";

/** How a flag's text is read. */
export type FlagKind = "string" | "int" | "size" | "duration" | "boolean" | "list";

/** A flag value after parsing: sizes and durations are numbers (bytes, milliseconds). */
export type FlagValue = string | number | boolean | string[];

/** One flag of a subcommand. */
export interface FlagSpec {
  /** Long name without dashes, kebab-case: `max-line`. */
  name: string;
  kind: FlagKind;
  help: string;
  default?: FlagValue;
  /** Allowed values for a string flag. */
  choices?: readonly string[];
  /** Inclusive bounds for int, size and duration flags. */
  min?: number;
  max?: number;
  short?: string;
  /** Shown in help: `--port <port>`. */
  valueName?: string;
  /** A typical value, for hints such as "--send needs a value, e.g. --send 13800138000" (else the default). */
  example?: string;
  /** May also come from this environment variable: the command line wins over it, it wins over the config file. */
  env?: string;
  /** Not accepted in a config file. */
  commandLineOnly?: boolean;
}

/** The `-h`/`--help` flag every subcommand has. */
export const HELP_FLAG: FlagSpec = { name: "help", kind: "boolean", short: "h", help: "show this help" };

/** A command-line mistake: printed with a hint, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Parsed flags with typed accessors. */
export class Flags {
  constructor(
    readonly values: Record<string, FlagValue | undefined>,
    readonly positionals: string[],
    /** The `--config` file, if one was given, and its sections that are not flags (`tasks`). */
    readonly config: { path?: string; sections: Record<string, unknown> } = { sections: {} },
    /** Flags that took their default: given neither on the command line, nor in the environment, nor in the file. */
    readonly defaulted: ReadonlySet<string> = new Set(),
  ) {}
  /** A string flag's value (or `undefined`). */
  str(name: string): string | undefined {
    const v = this.values[name];
    return v === undefined ? undefined : String(v);
  }
  /** A number flag's value (int, size, duration); throws if it has no value or default. */
  num(name: string): number {
    const v = this.values[name];
    if (typeof v !== "number") throw new Error(`flag --${name} has no numeric value`);
    return v;
  }
  /** A boolean flag's value. */
  bool(name: string): boolean {
    return this.values[name] === true;
  }
  /** A repeatable flag's values. */
  list(name: string): string[] {
    const v = this.values[name];
    return Array.isArray(v) ? v : [];
  }
}

/** Levenshtein distance, for "did you mean" hints. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length];
}

/**
 * The closest of `candidates` to `word`, if it is close enough to be a likely typo.
 *
 * @example
 * ```ts
 * import { suggest } from "./flags.ts";
 * import assert from "node:assert/strict";
 * assert.equal(suggest("prot", ["port", "host"]), "port");
 * ```
 */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = distance(word, c);
    if (d < bestD) [best, bestD] = [c, d];
  }
  return bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

/** `what` names the value as the user wrote it: `--port`, `PORT for --port`, `config file x.json: key "port"`. */
function convert(spec: FlagSpec, raw: unknown, what: string): FlagValue {
  if (spec.kind === "boolean") {
    if (typeof raw === "boolean") return raw;
    throw new UsageError(`${what} takes true or false, not ${JSON.stringify(raw)}`);
  }
  if (spec.kind === "list") {
    if (Array.isArray(raw) && raw.every((x) => typeof x === "string")) return raw;
    if (typeof raw === "string") return [raw];
    throw new UsageError(`${what} takes text values, not ${JSON.stringify(raw)}`);
  }
  if (typeof raw !== "string" && typeof raw !== "number") {
    throw new UsageError(`${what} takes a value like ${example(spec)}, not ${JSON.stringify(raw)}`);
  }
  const text = String(raw);
  if (spec.kind === "string") {
    if (spec.choices && !spec.choices.includes(text)) {
      const hint = suggest(text, spec.choices);
      throw new UsageError(
        `${what}: "${text}" is not one of ${spec.choices.join(", ")}` + (hint ? ` (did you mean "${hint}"?)` : ""),
      );
    }
    return text;
  }
  let n: number;
  try {
    if (spec.kind === "int") {
      if (!/^\s*-?\d+\s*$/.test(text)) throw new RangeError(`"${text}" is not a whole number`);
      n = Number(text);
    } else if (spec.kind === "size") {
      n = typeof raw === "number" ? raw : parseSize(text);
    } else {
      // A bare number in a JSON config file is milliseconds; on the command line a unit is required.
      n = typeof raw === "number" ? raw : parseDuration(text);
    }
  } catch (e) {
    throw new UsageError(`${what}: ${(e as Error).message}`);
  }
  if (!Number.isSafeInteger(n)) throw new UsageError(`${what}: ${text} is out of range`);
  if (spec.min !== undefined && n < spec.min) {
    throw new UsageError(`${what}: ${text} is below the minimum ${show(spec, spec.min)}`);
  }
  if (spec.max !== undefined && n > spec.max) {
    throw new UsageError(`${what}: ${text} is above the maximum ${show(spec, spec.max)}`);
  }
  return n;
}

function show(spec: FlagSpec, v: FlagValue): string {
  if (spec.kind === "size" && typeof v === "number") return formatSize(v);
  if (spec.kind === "duration" && typeof v === "number") return formatDuration(v);
  if (Array.isArray(v)) return v.join(", ");
  return String(v);
}

/** A value to show in a hint: the spec's example, else its default, else one of the right kind. */
function example(spec: FlagSpec): string {
  if (spec.example !== undefined) return spec.example;
  if (spec.choices && spec.choices.length > 0) return spec.choices[0];
  const d = spec.default;
  if (d !== undefined && typeof d !== "boolean" && !(Array.isArray(d) && d.length === 0) && d !== "") {
    const text = show(spec, Array.isArray(d) ? d[0] : d);
    if (!/\s/.test(text)) return text;
  }
  return spec.kind === "duration" ? "5s" : spec.kind === "size" ? "1MiB" : spec.kind === "int" ? "4" : "text";
}

/**
 * Reads `args` against `specs`. Values come from, in order of precedence: the command line,
 * the environment variable named in a spec, the JSON config file named by `--config` (when the
 * table has a `config` flag), then the spec's default.
 *
 * @example
 * ```ts
 * import { parseFlags } from "./flags.ts";
 * import assert from "node:assert/strict";
 * const flags = parseFlags("serve", [
 *   { name: "port", kind: "int", default: 9501, help: "TCP port" },
 *   { name: "sms-delay", kind: "duration", default: 5000, help: "SMS wait" },
 * ], ["--port", "7000", "--sms-delay", "300ms"]);
 * assert.equal(flags.num("port"), 7000);
 * assert.equal(flags.num("sms-delay"), 300);
 * ```
 * @throws {UsageError} for an unknown flag, a missing or bad value, or a bad config file.
 */
export function parseFlags(
  command: string,
  specs: readonly FlagSpec[],
  args: string[],
  opts: {
    allowPositionals?: boolean;
    env?: (name: string) => string | undefined;
    /** Keys of the config file that are not flags, handed back raw in {@linkcode Flags.config}. */
    configSections?: readonly string[];
    /** The command as the user types it, for hints, when it is not `commandFor(command)`. */
    typed?: string;
  } = {},
): Flags {
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = {};
  for (const s of specs) {
    options[s.name] = {
      type: s.kind === "boolean" ? "boolean" : "string",
      ...(s.kind === "list" ? { multiple: true } : {}),
      ...(s.short ? { short: s.short } : {}),
    };
  }
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: opts.allowPositionals ?? false });
  } catch (e) {
    const typed = opts.typed;
    const as = typed === undefined ? (args: string) => commandFor(command, args) : (args: string) => `${typed} ${args}`;
    throw translateParseError(as, specs, e as Error & { code?: string });
  }
  const values: Record<string, FlagValue | undefined> = {};
  const configPath = typeof parsed.values["config"] === "string" ? parsed.values["config"] : undefined;
  const config = configPath ? readConfig(configPath, specs, opts.configSections ?? []) : {};
  const env = opts.env ?? ((name: string) => Deno.env.get(name));
  const defaulted = new Set<string>();
  for (const s of specs) {
    const cli = parsed.values[s.name];
    const fromEnv = s.env ? env(s.env) : undefined;
    if (cli !== undefined) values[s.name] = convert(s, cli, `--${s.name}`);
    else if (fromEnv !== undefined && fromEnv !== "") values[s.name] = convert(s, fromEnv, `${s.env} for --${s.name}`);
    else if (s.name in config) {
      values[s.name] = convert(s, config[s.name], `config file ${configPath}: key "${s.name}"`);
    } else {
      values[s.name] = s.default;
      defaulted.add(s.name);
    }
  }
  const sections: Record<string, unknown> = {};
  for (const key of opts.configSections ?? []) if (key in config) sections[key] = config[key];
  return new Flags(values, parsed.positionals, { path: configPath, sections }, defaulted);
}

/** `as(args)` is the command with `args`, as the user types it. */
function translateParseError(
  as: (args: string) => string,
  specs: readonly FlagSpec[],
  e: Error & { code?: string },
): UsageError {
  const help = `run \`${as("--help")}\` for the list of flags`;
  const unknown = /Unknown option '([^']+)'/.exec(e.message);
  if (unknown) {
    const name = unknown[1].replace(/^-+/, "");
    const hint = suggest(name, specs.map((s) => s.name));
    return new UsageError(
      `unknown flag ${unknown[1]}` + (hint ? ` — did you mean --${hint}?` : ` — ${help}`),
    );
  }
  const missing = /Option '(?:-\w, )?--([\w-]+) <value>' argument missing/.exec(e.message);
  if (missing) {
    const spec = specs.find((s) => s.name === missing[1]);
    return new UsageError(
      `--${missing[1]} needs a value` + (spec ? `, e.g. --${spec.name} ${example(spec)}` : ""),
    );
  }
  const positional = /Unexpected argument '([\s\S]*)'(?:\. |$)/.exec(e.message);
  if (positional) {
    // `client 13800138000`: a payload typed without its flag.
    if (specs.some((s) => s.name === "send")) {
      const word = positional[1];
      const quoted = /^[\w+.,:@\/=-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
      return new UsageError(
        `unexpected argument "${word}" — to send it as a payload, use --send: \`${as(`--send ${quoted}`)}\``,
      );
    }
    return new UsageError(`unexpected argument "${positional[1]}" — ${help}`);
  }
  const ambiguous = /Option '(?:-\w, )?--([\w-]+)' argument is ambiguous/.exec(e.message);
  if (ambiguous) {
    return new UsageError(
      `--${ambiguous[1]} needs a value; one that starts with "-" is written --${ambiguous[1]}=-…`,
    );
  }
  const boolValue = /Option '(?:-\w, )?--([\w-]+)' does not take an argument/.exec(e.message);
  if (boolValue) return new UsageError(`--${boolValue[1]} is a switch and takes no value`);
  return new UsageError(`${e.message} — ${help}`);
}

function readConfig(path: string, specs: readonly FlagSpec[], sections: readonly string[]): Record<string, unknown> {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "no such file" : (e as Error).message;
    throw new UsageError(`cannot read config file ${path}: ${why} — check the --config path`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`config file ${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new UsageError(`config file ${path} must hold a JSON object of flag names to values`);
  }
  const names = [...specs.filter((s) => s.name !== "config" && !s.commandLineOnly).map((s) => s.name), ...sections];
  for (const key of Object.keys(data)) {
    if (key === "$schema") continue;
    if (!names.includes(key)) {
      const hint = suggest(key, names);
      throw new UsageError(
        `config file ${path}: unknown key "${key}"` + (hint ? ` — did you mean "${hint}"?` : ` — keys are flag names`),
      );
    }
  }
  return data as Record<string, unknown>;
}

/**
 * The `--help` text of a subcommand: usage line, description, then every flag with its default.
 *
 * @example
 * ```ts
 * import { renderHelp } from "./flags.ts";
 * import assert from "node:assert/strict";
 * const text = renderHelp("asynctask serve", "Runs the server.", [
 *   { name: "port", kind: "int", default: 9501, help: "TCP port" },
 * ]);
 * assert.ok(text.includes("--port <int>"));
 * ```
 */
export function renderHelp(usage: string, description: string, specs: readonly FlagSpec[]): string {
  const rows = specs.map((s) => {
    const value = s.kind === "boolean" ? "" : ` <${s.valueName ?? (s.choices ? s.choices.join("|") : s.kind)}>`;
    const left = `  ${s.short ? `-${s.short}, ` : ""}--${s.name}${value}`;
    const none = s.default === undefined || s.default === false || s.default === "" ||
      (Array.isArray(s.default) && s.default.length === 0);
    const def = none ? "" : ` (default: ${show(s, s.default!)})`;
    const env = s.env ? ` [env ${s.env}]` : "";
    return [left, `${s.help}${def}${env}`];
  });
  const width = Math.min(36, Math.max(...rows.map(([l]) => l.length)) + 2);
  const lines = rows.map(([l, r]) => (l.length >= width ? `${l}\n${" ".repeat(width)}${r}` : l.padEnd(width) + r));
  return `Usage: ${usage}\n\n${description}\n\nFlags:\n${lines.join("\n")}\n`;
}

/**
 * Reads the text file a flag names (a PEM certificate, say), or throws a {@linkcode UsageError}
 * that names the flag and the path. Only a regular file of at most `maxBytes` (1 MiB) is read:
 * `/dev/zero` or a wrong multi-gigabyte path is refused at once, not read until memory runs out.
 *
 * @example
 * ```ts
 * import { readFlagFile } from "./flags.ts";
 * import assert from "node:assert/strict";
 * assert.throws(() => readFlagFile("/nonexistent.pem", "--ca"), {
 *   message: "cannot read --ca /nonexistent.pem: no such file",
 * });
 * ```
 */
export function readFlagFile(path: string, flag: string, maxBytes = 1024 * 1024): string {
  try {
    const info = Deno.statSync(path);
    if (!info.isFile) throw new UsageError(`cannot read ${flag} ${path}: not a regular file`);
    if (info.size > maxBytes) {
      throw new UsageError(
        `cannot read ${flag} ${path}: it is ${formatSize(info.size)}, more than ${formatSize(maxBytes)}`,
      );
    }
    return Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    const why = e instanceof Deno.errors.NotFound ? "no such file" : e instanceof Error ? e.message : String(e);
    throw new UsageError(`cannot read ${flag} ${path}: ${why}`);
  }
}
