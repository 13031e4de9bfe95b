/**
 * The `tasks` map of a `serve --config` file: what each task name the operator declares does.
 * {@linkcode parseTasks} checks every key and value and resolves paths against the config file's
 * directory, so that a mistake stops startup with the file, the key and the fix.
 *
 * ```json
 * {
 *   "tasks": {
 *     "sms":   { "kind": "command", "command": ["./send-sms.sh"], "retries": 3, "timeout": "30s",
 *                "schema": { "type": "string", "pattern": "^\\+?[0-9]{5,20}$" } },
 *     "email": { "kind": "webhook", "url": "https://mailer.internal/send", "secret-env": "MAILER_SECRET" },
 *     "thumb": { "kind": "module", "module": "./thumbnail.ts", "concurrency": 2 }
 *   }
 * }
 * ```
 *
 * @module
 */
import { dirname, isAbsolute, join, resolve } from "node:path";
import { compileTemplate, PRIORITY_MAX, PRIORITY_MIN } from "./timing.ts";
import { parseRateLimits } from "./rate.ts";
import { pathToFileURL } from "node:url";
import { parseDuration, parseSize } from "../cli/units.ts";
import { compileDataSchema } from "./data_schema.ts";
import type { TaskSpec } from "./spec.ts";

/** The handler kinds a declared task can have. */
export const TASK_KINDS = ["command", "webhook", "module", "builtin"] as const;

/** The built-in tasks a `builtin` entry may name. */
export const BUILTIN_TASKS = ["sms", "echo", "sleep"] as const;

/** Default `max-output` of command and webhook tasks: the most bytes of output kept as the result. */
export const DEFAULT_TASK_OUTPUT = 1024 * 1024;
/** Default `concurrency` of command tasks: processes at once, whatever the pool's size. */
export const DEFAULT_COMMAND_CONCURRENCY = 16;

/** What a task name may look like: it travels in `/task <name> …` lines. */
export const TASK_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const COMMON_KEYS = [
  "kind",
  "description",
  "timeout",
  "retries",
  "concurrency",
  "schema",
  "priority",
  "unique",
  "unique-for",
  "rate",
  "rate-key",
];
const KIND_KEYS: Record<(typeof TASK_KINDS)[number], string[]> = {
  command: ["command", "cwd", "env", "max-output"],
  webhook: ["url", "headers", "secret", "secret-env", "max-output"],
  module: ["module"],
  builtin: [],
};

const DURATION = {
  anyOf: [{ type: "integer", minimum: 0 }, { type: "string", pattern: "^\\s*\\d+(\\.\\d+)?\\s*(ms|s|m|h|d)\\s*$" }],
};
const SIZE = {
  anyOf: [{ type: "integer", minimum: 1 }, {
    type: "string",
    pattern: "^\\s*\\d+(\\.\\d+)?\\s*([kKmMgG]i?[bB]?|[bB])?\\s*$",
  }],
};
const STRINGS = { type: "object", additionalProperties: { type: "string" } };

/**
 * The JSON Schema of the `tasks` map, for editors (part of `asynctask.schema.json`). The server
 * itself checks with {@linkcode parseTasks}, whose messages say more.
 *
 * @example
 * ```ts
 * import { TASKS_JSON_SCHEMA } from "./config.ts";
 * import assert from "node:assert/strict";
 * assert.equal(TASKS_JSON_SCHEMA.type, "object");
 * ```
 */
export const TASKS_JSON_SCHEMA = {
  type: "object",
  description: "Task names to what they do: a command, a webhook or a module (see README, Declaring tasks)",
  propertyNames: { pattern: TASK_NAME.source },
  additionalProperties: {
    type: "object",
    required: ["kind"],
    properties: {
      kind: {
        enum: [...TASK_KINDS],
        description: "builtin: one of sms, echo, sleep, by its own name (with a tasks map, only declared tasks exist)",
      },
      description: { type: "string", description: "one line for /stats and the logs" },
      timeout: { ...DURATION, description: "this task's limit on a run; else --task-timeout" },
      retries: { type: "integer", minimum: 0, maximum: 100, description: "this task's retries; else --retries" },
      concurrency: { type: "integer", minimum: 1, maximum: 100000, description: "most runs of this task at once" },
      schema: { type: ["object", "boolean"], description: "a JSON Schema the task's data must match" },
      priority: {
        type: "integer",
        minimum: -100,
        maximum: 100,
        description: "the priority of its tasks that give none (higher runs first); default 0",
      },
      unique: {
        type: "string",
        description:
          'a key template over the data, such as "{phone}": one task per key at a time; a duplicate joins it',
      },
      "unique-for": {
        ...DURATION,
        description: "after a unique task ends, how long a duplicate still gets its result",
      },
      rate: {
        description: 'starts allowed: "100/s", "10/min", "1000/h"; or { limit, key, burst }, or a list of these',
        anyOf: [
          { type: "string", pattern: "^\\s*\\d+\\s*/\\s*(s|min|h)\\s*$" },
          { type: "object" },
          { type: "array" },
        ],
      },
      "rate-key": {
        type: "string",
        description: 'with a "rate": a key template, such as "{phone}": the limit is per key',
      },
      command: {
        type: "array",
        items: { type: "string", minLength: 1 },
        minItems: 1,
        description: "command: program and arguments, no shell",
      },
      cwd: { type: "string", description: "command: working directory (relative to this file)" },
      env: { ...STRINGS, description: "command: extra environment variables" },
      "max-output": { ...SIZE, description: "command, webhook: most bytes of output kept as the result" },
      url: { type: "string", pattern: "^https?://", description: "webhook: where to POST" },
      headers: { ...STRINGS, description: "webhook: extra request headers" },
      secret: { type: "string", description: "webhook: HMAC-SHA256 key of the X-Asynctask-Signature header" },
      "secret-env": { type: "string", description: "webhook: the environment variable that holds the secret" },
      module: { type: "string", description: "module: path of the module (relative to this file)" },
    },
    additionalProperties: false,
    allOf: TASK_KINDS.map((k) => ({
      if: { properties: { kind: { const: k } } },
      then: {
        required: k === "module" ? ["module"] : k === "webhook" ? ["url"] : k === "command" ? ["command"] : [],
        propertyNames: { enum: [...COMMON_KEYS, ...KIND_KEYS[k]] },
      },
    })),
  },
} as const;

/** A mistake in the config file's `tasks`: the message names the file, the key and the fix. */
export class TaskConfigError extends Error {
  override name = "TaskConfigError";
}

/** Where to look things up while reading: the environment (for `secret-env`, PATH) and the file system. */
export interface TaskConfigHost {
  env(name: string): string | undefined;
  /** Whether `path` is a file this process may execute. */
  isExecutable(path: string): boolean;
  exists(path: string): boolean;
}

const realHost: TaskConfigHost = {
  env: (name) => Deno.env.get(name),
  isExecutable(path) {
    try {
      const st = Deno.statSync(path);
      return st.isFile && (st.mode === null || (st.mode & 0o111) !== 0);
    } catch {
      return false;
    }
  },
  exists(path) {
    try {
      Deno.statSync(path);
      return true;
    } catch {
      return false;
    }
  },
};

/**
 * Reads the `tasks` section of the config file at `file`.
 *
 * @example
 * ```ts
 * import { parseTasks } from "./config.ts";
 * import assert from "node:assert/strict";
 * const [sms] = parseTasks({ sms: { kind: "command", command: ["cat"], retries: 2, timeout: "30s" } }, "/etc/asynctask.json");
 * assert.equal(sms.kind, "command");
 * assert.equal(sms.retries, 2);
 * assert.equal(sms.timeoutMs, 30000);
 * ```
 * @throws {TaskConfigError} naming the file and the key of the first mistake.
 */
export function parseTasks(section: unknown, file: string, host: TaskConfigHost = realHost): TaskSpec[] {
  const base = dirname(resolve(file));
  const fail = (key: string, what: string): never => {
    throw new TaskConfigError(`config file ${file}: ${key}: ${what}`);
  };
  if (!isObject(section)) fail("tasks", 'must be an object of task names to task settings, e.g. {"sms": {…}}');
  const specs: TaskSpec[] = [];
  for (const [name, raw] of Object.entries(section as Record<string, unknown>)) {
    const at = `tasks.${name}`;
    if (!TASK_NAME.test(name)) {
      fail(at, "a task name is 1 to 64 letters, digits, '_', '-' or '.', starting with a letter or digit");
    }
    if (!isObject(raw)) fail(at, 'must be an object, e.g. {"kind": "command", "command": ["./send.sh"]}');
    const t = raw as Record<string, unknown>;
    const kind = t.kind;
    if (typeof kind !== "string" || !(TASK_KINDS as readonly string[]).includes(kind)) {
      fail(`${at}.kind`, `must be one of ${TASK_KINDS.map((k) => `"${k}"`).join(", ")}`);
    }
    const k = kind as (typeof TASK_KINDS)[number];
    const allowed = [...COMMON_KEYS, ...KIND_KEYS[k]];
    for (const key of Object.keys(t)) {
      if (!allowed.includes(key)) {
        fail(`${at}.${key}`, `is not a setting of a ${k} task; its settings are ${allowed.join(", ")}`);
      }
    }
    const common: Omit<TaskSpec, "kind"> = { name, where: `config file ${file}: ${at}` };
    if (t.description !== undefined) common.description = str(t.description, `${at}.description`, fail);
    if (t.timeout !== undefined) common.timeoutMs = measure(t.timeout, `${at}.timeout`, fail, DURATION_VALUE);
    if (t.retries !== undefined) common.retries = int(t.retries, `${at}.retries`, 0, 100, fail);
    if (t.concurrency !== undefined) common.concurrency = int(t.concurrency, `${at}.concurrency`, 1, 100_000, fail);
    if (t.priority !== undefined) common.priority = int(t.priority, `${at}.priority`, PRIORITY_MIN, PRIORITY_MAX, fail);
    if (t.unique !== undefined) {
      const source = str(t.unique, `${at}.unique`, fail);
      const compiled = compileTemplate(source, `${at}.unique`);
      if (!compiled.ok) fail(`${at}.unique`, compiled.message);
      common.unique = source;
    }
    if (t["unique-for"] !== undefined) {
      if (t.unique === undefined) fail(`${at}.unique-for`, 'goes with "unique" (the key template)');
      common.uniqueForMs = measure(t["unique-for"], `${at}.unique-for`, fail, DURATION_VALUE);
    }
    if (t["rate-key"] !== undefined && t.rate === undefined) {
      fail(`${at}.rate-key`, 'goes with "rate", such as "1/min"');
    }
    if (t.rate !== undefined) {
      const raw = t["rate-key"] !== undefined && typeof t.rate === "string"
        ? { limit: t.rate, key: str(t["rate-key"], `${at}.rate-key`, fail) }
        : t.rate;
      const parsed = parseRateLimits(raw, `${at}.rate`);
      if (!parsed.ok) fail(`${at}.rate`, parsed.message.replace(`${at}.rate: `, "").replace(`${at}.rate`, ""));
      const list = Array.isArray(raw) ? raw : [raw];
      common.rate = list.map((r) =>
        typeof r === "string" ? { limit: r } : {
          limit: String(r.limit),
          ...(r.key ? { key: String(r.key) } : {}),
          ...(r.burst ? { burst: Number(r.burst) } : {}),
        }
      );
    }
    if (t.schema !== undefined) {
      if (!isObject(t.schema) && typeof t.schema !== "boolean") fail(`${at}.schema`, "must be a JSON Schema object");
      try {
        compileDataSchema(t.schema as Record<string, unknown> | boolean);
      } catch (e) {
        fail(`${at}.schema`, `is not a valid JSON Schema: ${(e as Error).message}`);
      }
      common.schema = t.schema as Record<string, unknown> | boolean;
    }
    const maxOutput = t["max-output"] === undefined
      ? DEFAULT_TASK_OUTPUT
      : measure(t["max-output"], `${at}.max-output`, fail, SIZE_VALUE);
    if (k === "command") {
      const argv = t.command;
      if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === "string" && a !== "")) {
        fail(
          `${at}.command`,
          'must be a non-empty array: the program and its arguments, e.g. ["./send-sms.sh", "--gateway", "main"] (no shell is used)',
        );
      }
      const [program, ...args] = argv as string[];
      const cwd = t.cwd === undefined ? undefined : resolve(base, str(t.cwd, `${at}.cwd`, fail));
      if (cwd !== undefined && !host.exists(cwd)) fail(`${at}.cwd`, `no such directory ${cwd}`);
      const found = findProgram(program, base, host);
      if (!found) {
        fail(
          `${at}.command`,
          program.includes("/")
            ? `${
              resolve(base, program)
            } is not an executable file — check the path (relative to the config file) and chmod +x`
            : `"${program}" was not found in PATH — give its full path, or a path relative to the config file`,
        );
      }
      specs.push({
        ...common,
        kind: "command",
        command: [found!, ...args],
        ...(cwd !== undefined ? { cwd } : {}),
        ...(t.env !== undefined ? { env: strings(t.env, `${at}.env`, fail) } : {}),
        maxOutput,
        concurrency: common.concurrency ?? DEFAULT_COMMAND_CONCURRENCY,
      });
    } else if (k === "webhook") {
      const url = str(t.url, `${at}.url`, fail);
      let parsed: URL | undefined;
      try {
        parsed = new URL(url);
      } catch {
        // below
      }
      if (!parsed || (parsed.protocol !== "http:" && parsed.protocol !== "https:")) {
        fail(`${at}.url`, `"${url}" is not an http:// or https:// URL`);
      }
      if (t.secret !== undefined && t["secret-env"] !== undefined) {
        fail(`${at}.secret`, 'give "secret" or "secret-env", not both');
      }
      let secret: string | undefined;
      if (t.secret !== undefined) secret = str(t.secret, `${at}.secret`, fail);
      if (t["secret-env"] !== undefined) {
        const variable = str(t["secret-env"], `${at}.secret-env`, fail);
        secret = host.env(variable);
        if (!secret) fail(`${at}.secret-env`, `the environment variable ${variable} is not set (or empty)`);
      }
      specs.push({
        ...common,
        kind: "webhook",
        url,
        headers: t.headers === undefined ? {} : strings(t.headers, `${at}.headers`, fail),
        ...(secret !== undefined ? { secret } : {}),
        maxOutput,
      });
    } else if (k === "builtin") {
      if (!(BUILTIN_TASKS as readonly string[]).includes(name)) {
        fail(`${at}.kind`, `"builtin" is for the built-in tasks, by their own name: ${BUILTIN_TASKS.join(", ")}`);
      }
      specs.push({ ...common, kind: "builtin" });
    } else {
      const path = resolve(base, str(t.module, `${at}.module`, fail));
      if (!host.exists(path)) fail(`${at}.module`, `no such file ${path} (paths are relative to the config file)`);
      specs.push({ ...common, kind: "module", module: pathToFileURL(path).href });
    }
  }
  // The secrets that webhooks read from the environment are not for the programs of command tasks.
  const secrets = Object.values(section as Record<string, Record<string, unknown>>)
    .map((t) => t["secret-env"])
    .filter((v): v is string => typeof v === "string");
  if (secrets.length > 0) { for (const s of specs) if (s.kind === "command") s.hideEnv = secrets; }
  return specs;
}

/** A program's path: as given when it holds a `/` (relative to `base`), else looked up in PATH. */
function findProgram(program: string, base: string, host: TaskConfigHost): string | undefined {
  if (program.includes("/")) {
    const path = isAbsolute(program) ? program : resolve(base, program);
    return host.isExecutable(path) ? path : undefined;
  }
  for (const dir of (host.env("PATH") ?? "").split(":")) {
    if (dir && host.isExecutable(join(dir, program))) return join(dir, program);
  }
  return undefined;
}

type Fail = (key: string, what: string) => never;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(v: unknown, key: string, fail: Fail): string {
  if (typeof v !== "string" || v === "") fail(key, `must be a non-empty string, not ${JSON.stringify(v)}`);
  return v as string;
}

function strings(v: unknown, key: string, fail: Fail): Record<string, string> {
  if (!isObject(v) || !Object.values(v).every((x) => typeof x === "string")) {
    fail(key, 'must be an object of names to text values, e.g. {"NAME": "value"}');
  }
  return v as Record<string, string>;
}

function int(v: unknown, key: string, min: number, max: number, fail: Fail): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    fail(key, `must be a whole number from ${min} to ${max}, not ${JSON.stringify(v)}`);
  }
  return v as number;
}

/** A duration or a size: a whole number (ms, bytes) at least `min`, or text that `parse` reads. */
function measure(
  v: unknown,
  key: string,
  fail: Fail,
  how: { min: number; parse: (text: string) => number; example: string },
): number {
  if (typeof v === "number" && Number.isInteger(v) && v >= how.min) return v;
  if (typeof v === "string") {
    try {
      return how.parse(v);
    } catch (e) {
      fail(key, (e as Error).message);
    }
  }
  return fail(key, `must be ${how.example}, not ${JSON.stringify(v)}`);
}

const DURATION_VALUE = { min: 0, parse: parseDuration, example: 'a duration such as "30s" or "2m" (or milliseconds)' };
const SIZE_VALUE = { min: 1, parse: parseSize, example: 'a size such as "64KiB" or "1MiB" (or bytes)' };
