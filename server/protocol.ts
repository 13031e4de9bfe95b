/**
 * Wire protocol v1: parsing one request line, and formatting every reply, in the text form (for
 * people: `nc`, telnet, the interactive client) and the JSON form (for programs). `PROTOCOL.md` is the
 * user-facing description; this module is its single implementation on the server side.
 *
 * @module
 */
import type { TimingFields } from "../task/timing.ts";

/** Which form a request came in; its replies use the same form. */
export type Format = "text" | "json";

/** A client's tag for a JSON request, echoed in every reply about it. */
export type Tag = string | number;

/** Error codes of immediate `ERROR` replies (nothing was queued). */
/** The states `/tasks` lists. */
export type ListedState = "scheduled" | "queued" | "running" | "failed";
/** The most tasks one `/tasks` reply lists. */
export const MAX_LISTED = 1000;

export type ErrorCode =
  | "bad_json"
  | "bad_request"
  | "unknown_task"
  | "invalid_data"
  | "queue_full"
  | "line_too_long"
  | "too_many_connections"
  | "unauthorized"
  | "idle_timeout"
  | "shutting_down"
  | "not_found"
  | "conflict"
  | "store_unavailable";

/** A parsed request line. */
export type Request =
  | {
    kind: "submit";
    format: Format;
    task: string | undefined;
    data: unknown;
    tag?: Tag;
    /** The scheduling fields as sent (`priority`, `delay`, `run_at`, `unique_key`), read by the desk. */
    timing?: TimingFields;
  }
  | { kind: "status"; format: Format; taskId: number; tag?: Tag }
  | { kind: "stats"; format: Format; tag?: Tag }
  | { kind: "ping"; format: Format; tag?: Tag }
  | { kind: "quit"; format: Format; tag?: Tag }
  | { kind: "auth"; format: Format; token: string; tag?: Tag }
  /** `/cancel`, `/retry`, `/discard`: an operation on one task. */
  | { kind: "cancel" | "retry" | "discard"; format: Format; taskId: number; tag?: Tag }
  /** `/pause [task]`, `/resume [task]`: stop or go on starting tasks of one name, or of all. */
  | { kind: "pause" | "resume"; format: Format; task?: string; tag?: Tag }
  /** `/tasks <queued|running|failed> [n]` (and `/failed [n]`): the newest `limit` tasks in that state. */
  | { kind: "tasks"; format: Format; state: ListedState; limit: number; tag?: Tag }
  | { kind: "invalid"; format: Format; code: ErrorCode; message: string; tag?: Tag };

/** Task states reported by `/status`. */
export type TaskState = "scheduled" | "queued" | "running" | "done" | "failed" | "unknown";

/** The longest client tag (`"id"`) accepted, in characters. */
export const MAX_TAG_LENGTH = 256;
/** How deep a request's JSON may nest. Deeper data cannot be copied to a worker (the clone recurses). */
export const MAX_JSON_DEPTH = 64;

/** Whether `value` nests arrays and objects deeper than `limit` (walked without recursion). */
function nestsDeeperThan(value: unknown, limit: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    if (depth >= limit) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (typeof child === "object" && child !== null) stack.push([child, depth + 1]);
    }
  }
  return false;
}

/**
 * Whether `value` holds a number JSON cannot carry back: `1e999999` parses as `Infinity`, which
 * would be written out again as `null`.
 */
function hasNonFinite(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === "number") {
      if (!Number.isFinite(v)) return true;
    } else if (typeof v === "object" && v !== null) {
      for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push(child);
    }
  }
  return false;
}

const TEXT_COMMANDS =
  "/task, /status, /stats, /ping, /quit, /cancel, /retry, /discard, /tasks, /failed, /pause, /resume";
const LISTED: readonly ListedState[] = ["scheduled", "queued", "running", "failed"];

/** `/tasks failed 20`, `/failed`: the state and how many, or why not. */
function parseList(state: string | undefined, count: string | undefined): [ListedState, number] | string {
  if (!LISTED.includes(state as ListedState)) return `usage: /tasks <scheduled|queued|running|failed> [n]`;
  const n = count === undefined || count === "" ? 20 : Number(count);
  if (!Number.isInteger(n) || n < 1 || n > MAX_LISTED) return `n must be a whole number from 1 to ${MAX_LISTED}`;
  return [state as ListedState, n];
}
// C0 controls other than tab, and DEL: they have no place in a request and usually mean binary junk.
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;

/**
 * Parses one line (without its line ending). Returns `undefined` for a blank line, which the
 * protocol ignores. `task` of a text payload is `undefined`: the server's default task.
 *
 * @example
 * ```ts
 * import { parseRequest } from "./protocol.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseRequest("13800138000"), { kind: "submit", format: "text", task: undefined, data: "13800138000" });
 * assert.deepEqual(parseRequest('{"task":"echo","data":[1],"id":"a"}'), {
 *   kind: "submit",
 *   format: "json",
 *   task: "echo",
 *   data: [1],
 *   tag: "a",
 * });
 * ```
 */
export function parseRequest(line: string): Request | undefined {
  const text = line.trim();
  if (text === "") return undefined;
  if (text[0] === "{") return parseJsonRequest(text);
  const bad = CONTROL.exec(text);
  if (bad) {
    const code = bad[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, "0");
    return invalid(
      "text",
      "bad_request",
      `the line holds the control character U+${code} at column ${bad.index + 1}; send text or a JSON request`,
    );
  }
  if (text[0] !== "/") return { kind: "submit", format: "text", task: undefined, data: text };
  const space = text.indexOf(" ");
  const command = space < 0 ? text : text.slice(0, space);
  const rest = space < 0 ? "" : text.slice(space + 1).trim();
  switch (command) {
    case "/task": {
      const usage = "usage: /task <name> [--priority N] [--delay D | --run-at T] [--unique KEY] <payload>";
      // The usual `/task <name> <payload>` (a printable ASCII name, one space, the payload) is split
      // without the expression below, whose match array and captures cost an allocation each per task.
      let name: string;
      let payload: string;
      const sp = rest.indexOf(" ");
      if (sp > 0 && printable(rest, 0, sp) && printable(rest, sp + 1, sp + 2)) {
        name = rest.slice(0, sp);
        payload = rest.slice(sp + 1);
      } else {
        const m = /^(\S+)\s*([\s\S]*)$/.exec(rest);
        if (!m) return invalid("text", "bad_request", usage);
        name = m[1];
        payload = m[2];
      }
      // Options first, each with its value: --priority 5 --delay 30s …; the rest is the payload.
      let timing: TimingFields | undefined;
      // Options only when the payload starts with "--" (the plain case pays one comparison).
      if (payload.startsWith("--")) {
        for (
          let opt = /^(--[\w-]+)\s+(\S+)\s*([\s\S]*)$/.exec(payload);
          opt;
          opt = /^(--[\w-]+)\s+(\S+)\s*([\s\S]*)$/.exec(payload)
        ) {
          const field = TEXT_OPTIONS[opt[1]];
          if (!field) return invalid("text", "bad_request", `unknown option ${opt[1].slice(0, 40)} of /task; ${usage}`);
          (timing ??= {})[field] = opt[2];
          payload = opt[3];
        }
      }
      if (/^--[\w-]+$/.test(payload)) return invalid("text", "bad_request", `${payload} needs a value; ${usage}`);
      return timing
        ? { kind: "submit", format: "text", task: name, data: payload, timing }
        : { kind: "submit", format: "text", task: name, data: payload };
    }
    case "/status": {
      const id = parseTaskId(rest);
      if (id === undefined) {
        return invalid("text", "bad_request", `usage: /status <task_id>, where task_id is a positive whole number`);
      }
      return { kind: "status", format: "text", taskId: id };
    }
    case "/stats":
    case "/ping":
    case "/quit":
      if (rest !== "") return invalid("text", "bad_request", `${command} takes no argument`);
      return { kind: command.slice(1) as "stats" | "ping" | "quit", format: "text" };
    case "/auth":
      if (rest === "") return invalid("text", "bad_request", "usage: /auth <token>");
      return { kind: "auth", format: "text", token: rest };
    case "/cancel":
    case "/retry":
    case "/discard": {
      const id = parseTaskId(rest);
      if (id === undefined) return invalid("text", "bad_request", `usage: ${command} <task_id>`);
      return { kind: command.slice(1) as "cancel" | "retry" | "discard", format: "text", taskId: id };
    }
    case "/pause":
    case "/resume": {
      if (/\s/.test(rest)) return invalid("text", "bad_request", `usage: ${command} [task]`);
      const kind = command.slice(1) as "pause" | "resume";
      return rest === "" ? { kind, format: "text" } : { kind, format: "text", task: rest };
    }
    case "/tasks":
    case "/failed": {
      const words = rest === "" ? [] : rest.split(/\s+/);
      const list = command === "/failed" ? parseList("failed", words[0]) : parseList(words[0], words[1]);
      if (typeof list === "string") return invalid("text", "bad_request", list);
      return { kind: "tasks", format: "text", state: list[0], limit: list[1] };
    }
    default:
      return invalid("text", "bad_request", `unknown command ${command.slice(0, 40)}; commands are ${TEXT_COMMANDS}`);
  }
}

/** Whether `s[from..to)` is non-empty and printable ASCII (no whitespace), which `\S` matches too. */
function printable(s: string, from: number, to: number): boolean {
  if (to > s.length || from >= to) return false;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c <= 32 || c >= 127) return false;
  }
  return true;
}

function invalid(format: Format, code: ErrorCode, message: string, tag?: Tag): Request {
  return tag === undefined
    ? { kind: "invalid", format, code, message }
    : { kind: "invalid", format, code, message, tag };
}

function parseTaskId(value: unknown): number | undefined {
  const n = typeof value === "string" && /^\d{1,16}$/.test(value) ? Number(value) : value;
  return typeof n === "number" && Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/** Every field a JSON task request may have (a command has `cmd` instead). */
export const TASK_REQUEST_FIELDS: readonly string[] = [
  "task",
  "data",
  "id",
  "priority",
  "delay",
  "run_at",
  "unique_key",
];
const SUBMIT_FIELDS = new Set(TASK_REQUEST_FIELDS);
const TIMING_FIELDS = ["priority", "delay", "run_at", "unique_key"] as const;
/** `"task", "data", "id", …, "run_at" and "unique_key"`: every field a task request may have, for errors. */
const SUBMIT_FIELD_LIST = [...SUBMIT_FIELDS].map((f) => `"${f}"`).join(", ").replace(/, ([^,]+)$/, " and $1");
/** The text form's options of `/task`, and the field each sets. */
const TEXT_OPTIONS: Record<string, keyof TimingFields> = {
  "--priority": "priority",
  "--delay": "delay",
  "--run-at": "run_at",
  "--unique": "unique_key",
};
const COMMAND_FIELDS: Record<string, Set<string>> = {
  stats: new Set(["cmd", "id"]),
  ping: new Set(["cmd", "id"]),
  quit: new Set(["cmd", "id"]),
  status: new Set(["cmd", "id", "task_id"]),
  auth: new Set(["cmd", "id", "token"]),
  cancel: new Set(["cmd", "id", "task_id"]),
  retry: new Set(["cmd", "id", "task_id"]),
  discard: new Set(["cmd", "id", "task_id"]),
  tasks: new Set(["cmd", "id", "state", "limit"]),
  pause: new Set(["cmd", "id", "task"]),
  resume: new Set(["cmd", "id", "task"]),
};

function parseJsonRequest(text: string): Request {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return invalid("json", "bad_json", `not valid JSON: ${(e as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return invalid("json", "bad_json", "a JSON request must be an object");
  }
  const obj = value as Record<string, unknown>;
  if (nestsDeeperThan(obj, MAX_JSON_DEPTH)) {
    return invalid("json", "bad_request", `the request nests deeper than ${MAX_JSON_DEPTH} levels`);
  }
  let tag: Tag | undefined;
  if ("id" in obj) {
    const id = obj.id;
    const ok = typeof id === "number" ? Number.isFinite(id) : typeof id === "string" && id.length <= MAX_TAG_LENGTH;
    if (!ok) {
      return invalid(
        "json",
        "bad_request",
        `"id" must be a string of at most ${MAX_TAG_LENGTH} characters or a finite number`,
      );
    }
    tag = id as Tag;
  }
  if ("cmd" in obj) {
    const cmd = obj.cmd;
    const fields = typeof cmd === "string" ? COMMAND_FIELDS[cmd] : undefined;
    if (!fields) {
      return invalid(
        "json",
        "bad_request",
        `unknown "cmd" ${JSON.stringify(cmd)?.slice(0, 40)}; use ${Object.keys(COMMAND_FIELDS).join(", ")}`,
        tag,
      );
    }
    const extra = Object.keys(obj).find((k) => !fields.has(k));
    if (extra) {
      return invalid(
        "json",
        "bad_request",
        `unknown field "${extra.slice(0, 40)}" for cmd "${cmd}"; it takes ${[...fields].join(", ")}`,
        tag,
      );
    }
    if (cmd === "status") {
      const id = parseTaskId(obj.task_id);
      if (id === undefined) return invalid("json", "bad_request", `"task_id" must be a positive whole number`, tag);
      return withTag({ kind: "status", format: "json", taskId: id }, tag);
    }
    if (cmd === "cancel" || cmd === "retry" || cmd === "discard") {
      const id = parseTaskId(obj.task_id);
      if (id === undefined) return invalid("json", "bad_request", `"task_id" must be a positive whole number`, tag);
      return withTag({ kind: cmd, format: "json", taskId: id }, tag);
    }
    if (cmd === "pause" || cmd === "resume") {
      if ("task" in obj && typeof obj.task !== "string") {
        return invalid("json", "bad_request", `"task" must be a task's name`, tag);
      }
      const req: Request = { kind: cmd, format: "json" };
      if (typeof obj.task === "string") req.task = obj.task;
      return withTag(req, tag);
    }
    if (cmd === "tasks") {
      const list = parseList(
        typeof obj.state === "string" ? obj.state : undefined,
        obj.limit === undefined ? undefined : String(obj.limit),
      );
      if (typeof list === "string") {
        return invalid("json", "bad_request", list.replace("usage: /tasks", '"state" must be one of'), tag);
      }
      return withTag({ kind: "tasks", format: "json", state: list[0], limit: list[1] }, tag);
    }
    if (cmd === "auth") {
      if (typeof obj.token !== "string") return invalid("json", "bad_request", `"token" must be a string`, tag);
      return withTag({ kind: "auth", format: "json", token: obj.token }, tag);
    }
    return withTag({ kind: cmd as "stats" | "ping" | "quit", format: "json" }, tag);
  }
  const extra = Object.keys(obj).find((k) => !SUBMIT_FIELDS.has(k));
  if (extra) {
    return invalid(
      "json",
      "bad_request",
      `unknown field "${extra.slice(0, 40)}"; a task request has ${SUBMIT_FIELD_LIST}, a command has "cmd"`,
      tag,
    );
  }
  if ("task" in obj && typeof obj.task !== "string") {
    return invalid("json", "bad_request", `"task" must be a string naming a task`, tag);
  }
  if (hasNonFinite(obj.data)) {
    return invalid(
      "json",
      "invalid_data",
      `"data" holds a number too large for a 64-bit float (such as 1e999999); send it as a string`,
      tag,
    );
  }
  const task = typeof obj.task === "string" ? obj.task : undefined;
  const req: Request = { kind: "submit", format: "json", task, data: obj.data ?? null };
  for (const f of TIMING_FIELDS) if (f in obj) (req.timing ??= {})[f] = obj[f];
  return withTag(req, tag);
}

function withTag<T extends Request>(req: T, tag: Tag | undefined): T {
  if (tag !== undefined) req.tag = tag;
  return req;
}

/** Renders a result or message as one line of text: strings as they are (line breaks escaped), anything else as JSON. */
export function oneLine(value: unknown): string {
  if (typeof value === "string") return value.replace(/\r?\n|\r/g, "\\n");
  return JSON.stringify(value) ?? "null";
}

function json(obj: Record<string, unknown>): string {
  return JSON.stringify(obj);
}

function tagged(type: string, tag: Tag | undefined): Record<string, unknown> {
  return tag === undefined ? { type } : { type, id: tag };
}

/**
 * Reply formatters: one function per reply type, each returning one line without its `\n`.
 *
 * @example
 * ```ts
 * import { reply } from "./protocol.ts";
 * import assert from "node:assert/strict";
 * assert.equal(reply.accepted("text", 17, undefined, "queued"), "ACCEPTED 17 queued");
 * assert.equal(reply.accepted("json", 17, "a", "queued"), '{"type":"accepted","id":"a","task_id":17}');
 * ```
 */
export const reply = {
  accepted(format: Format, taskId: number, tag: Tag | undefined, message: string): string {
    return format === "text" ? `ACCEPTED ${taskId} ${message}` : json({ ...tagged("accepted", tag), task_id: taskId });
  },
  /** `json` is the result's JSON text, as the worker serialized it: it is copied in, not parsed again. */
  done(
    format: Format,
    taskId: number,
    tag: Tag | undefined,
    json: string,
    meta: { worker: number; attempts: number; ms: number },
  ): string {
    if (format === "text") {
      // A string result is written as it is: without escapes, its JSON text is the string in quotes.
      if (json.charCodeAt(0) !== 34) return `DONE ${taskId} ${json}`;
      return `DONE ${taskId} ${json.indexOf("\\") < 0 ? json.slice(1, -1) : oneLine(JSON.parse(json))}`;
    }
    const head = JSON.stringify({ ...tagged("done", tag), task_id: taskId });
    return `${head.slice(0, -1)},"result":${json},"worker":${meta.worker},"attempts":${meta.attempts},"ms":${meta.ms}}`;
  },
  failed(
    format: Format,
    taskId: number,
    tag: Tag | undefined,
    code: string,
    message: string,
    meta: { attempts: number },
  ): string {
    return format === "text"
      ? `FAILED ${taskId} ${code} ${oneLine(message)}`
      : json({ ...tagged("failed", tag), task_id: taskId, error: { code, message }, ...meta });
  },
  progress(format: Format, taskId: number, tag: Tag | undefined, percent: number, message?: string): string {
    if (format === "json") {
      return json({ ...tagged("progress", tag), task_id: taskId, progress: percent, ...(message ? { message } : {}) });
    }
    return message ? `PROGRESS ${taskId} ${percent} ${oneLine(message)}` : `PROGRESS ${taskId} ${percent}`;
  },
  error(format: Format, tag: Tag | undefined, code: ErrorCode, message: string): string {
    return format === "text"
      ? `ERROR ${code} ${oneLine(message)}`
      : json({ ...tagged("error", tag), error: { code, message } });
  },
  status(
    format: Format,
    tag: Tag | undefined,
    taskId: number,
    state: TaskState,
    detail?: {
      result?: unknown;
      error?: { code: string; message: string };
      attempts?: number;
      retried_as?: number;
      run_at?: string;
      /** Why a queued task waits (a rate limit, a pause). */
      waiting?: string;
      /** With the broker: the server that runs it, or ran it. */
      instance?: string;
    },
  ): string {
    if (format === "json") return json({ ...tagged("status", tag), task_id: taskId, state, ...detail });
    const extra = detail?.run_at
      ? ` ${detail.run_at}`
      : detail?.waiting
      ? ` ${oneLine(detail.waiting)}`
      : detail?.error
      ? ` ${detail.error.code} ${oneLine(detail.error.message)}`
      : detail && "result" in detail
      ? ` ${oneLine(detail.result)}`
      : "";
    return `STATUS ${taskId} ${state}${extra}`;
  },
  stats(format: Format, tag: Tag | undefined, stats: object): string {
    return format === "text" ? `STATS ${JSON.stringify(stats)}` : json({ ...tagged("stats", tag), ...stats });
  },
  pong(format: Format, tag: Tag | undefined): string {
    return format === "text" ? "PONG" : json(tagged("pong", tag));
  },
  bye(format: Format, tag: Tag | undefined): string {
    return format === "text" ? "BYE" : json(tagged("bye", tag));
  },
  ok(format: Format, tag: Tag | undefined): string {
    return format === "text" ? "OK" : json(tagged("ok", tag));
  },
  /** A task operation done: `OK cancelled 7` / `{"type":"ok","task_id":7,"state":"cancelled"}`. */
  opDone(format: Format, tag: Tag | undefined, taskId: number, state: string): string {
    return format === "text" ? `OK ${state} ${taskId}` : json({ ...tagged("ok", tag), task_id: taskId, state });
  },
  /** `/pause`, `/resume`: `OK paused sms` / `{"type":"ok","paused":["sms"]}`, with what is paused now. */
  paused(
    format: Format,
    tag: Tag | undefined,
    kind: "pause" | "resume",
    task: string | undefined,
    paused: string[],
  ): string {
    return format === "text"
      ? `OK ${kind === "pause" ? "paused" : "resumed"} ${task ?? "*"}; paused now: ${
        paused.length ? paused.join(" ") : "nothing"
      }`
      : json({ ...tagged("ok", tag), paused });
  },
  /** `/tasks`: `TASKS [...]` / `{"type":"tasks","state":…,"tasks":[…]}`. */
  tasks(format: Format, tag: Tag | undefined, state: ListedState, tasks: object[]): string {
    return format === "text" ? `TASKS ${JSON.stringify(tasks)}` : json({ ...tagged("tasks", tag), state, tasks });
  },
};
