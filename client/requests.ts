/**
 * What the client sends for a line the user typed or piped: the line itself in text mode (with
 * `/task <name>` put in front when `--task` is given), or the matching JSON request with `--json`.
 * With `--task`, a line that is a JSON object but not a request (it has a field no request has) is
 * that task's data: `{"to":…}` is sent as `{"task":<name>,"data":{"to":…}}`; a JSON request is sent
 * as it is, with `"task":<name>` added when it names no task.
 *
 * @module
 */
import { TASK_REQUEST_FIELDS } from "../server/protocol.ts";

/** How lines become requests. */
export interface RequestOptions {
  /** Task for plain payloads; the server's default task when absent. */
  task?: string;
  /** Send JSON requests (and so get JSON replies). */
  json: boolean;
}

/**
 * Turns one input line into one request line.
 *
 * @example
 * ```ts
 * import { toRequest } from "./requests.ts";
 * import assert from "node:assert/strict";
 * assert.equal(toRequest("13800138000", { json: false }), "13800138000");
 * assert.equal(toRequest("hi", { task: "echo", json: false }), "/task echo hi");
 * assert.equal(toRequest("/status 4", { json: true }), '{"cmd":"status","task_id":4}');
 * assert.equal(toRequest('{"to":"a@b.c"}', { task: "email", json: false }), '{"task":"email","data":{"to":"a@b.c"}}');
 * assert.equal(toRequest('{"data":1}', { task: "echo", json: false }), '{"task":"echo","data":1}');
 * assert.equal(toRequest('{"cmd":"ping"}', { task: "echo", json: false }), '{"cmd":"ping"}');
 * assert.equal(toRequest('{"id":7}', { task: "echo", json: false }), '{"task":"echo","data":{"id":7}}');
 * ```
 */
export function toRequest(line: string, opts: RequestOptions): string {
  const text = line.trim();
  if (text.startsWith("{")) return opts.task === undefined ? text : dataRequest(text, opts.task);
  if (!opts.json) {
    if (text.startsWith("/") || opts.task === undefined) return text;
    return `/task ${opts.task} ${text}`;
  }
  if (!text.startsWith("/")) {
    return JSON.stringify(opts.task === undefined ? { data: text } : { task: opts.task, data: text });
  }
  const [command, ...args] = text.split(/\s+/);
  const arg = text.slice(command.length).trim();
  switch (command) {
    case "/task":
      return JSON.stringify({ task: args[0] ?? "", data: arg.slice((args[0] ?? "").length).trim() });
    case "/status":
      return JSON.stringify({ cmd: "status", task_id: /^\d+$/.test(arg) ? Number(arg) : arg });
    case "/auth":
      return JSON.stringify({ cmd: "auth", token: arg });
    default:
      // /stats, /ping, /quit — and unknown commands, which the server then names in its error.
      return JSON.stringify({ cmd: command.slice(1) });
  }
}

/**
 * A JSON object line sent with `--task`: a command (`{"cmd":…}`) as it is; a task request (`task` or
 * `data`, and only the fields of a request) as it is, with the task added when it names none; any other object is the task's
 * data. A line that does not parse as a JSON object is sent as it is, for the server to say what is
 * wrong with it.
 */
function dataRequest(text: string, task: string): string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return text;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return text;
  const fields = Object.keys(value);
  if (fields.includes("cmd")) return text;
  // A request names its task or its data; `{}` or `{"id":7}` alone is data.
  const request = ("task" in value || "data" in value) && fields.every((f) => TASK_REQUEST_FIELDS.includes(f));
  if (request) {
    return "task" in value ? text : JSON.stringify({ task, ...value });
  }
  return JSON.stringify({ task, data: value });
}

/** What a request asks for: a task to run, or a command (`/status`, `/stats`, `/ping`, `/quit`, `/auth`). */
export type RequestKind = "task" | "command";

/**
 * Whether a request line (as sent) submits a task or is a command: the server's refusal of the
 * one is a refused task, of the other a refused command.
 *
 * @example
 * ```ts
 * import { requestKind } from "./requests.ts";
 * import assert from "node:assert/strict";
 * assert.equal(requestKind("13800138000"), "task");
 * assert.equal(requestKind("/task echo hi"), "task");
 * assert.equal(requestKind("/stats"), "command");
 * assert.equal(requestKind('{"cmd":"ping"}'), "command");
 * assert.equal(requestKind('{"task":"echo","data":1}'), "task");
 * ```
 */
export function requestKind(request: string): RequestKind {
  const text = request.trim();
  if (text.startsWith("{")) {
    try {
      const value: unknown = JSON.parse(text);
      return typeof value === "object" && value !== null && "cmd" in value ? "command" : "task";
    } catch {
      return "task";
    }
  }
  return text.startsWith("/") && !/^\/task(\s|$)/.test(text) ? "command" : "task";
}

/** The commands a person may type, and the arguments each takes (`/help` is the client's own). */
export const COMMANDS: Readonly<Record<string, "none" | "some">> = {
  "/task": "some",
  "/status": "some",
  "/stats": "none",
  "/ping": "none",
  "/quit": "none",
  "/auth": "some",
  "/help": "none",
};

/** A line the client can tell is a mistake without asking the server: nothing is sent. */
export type LocalMistake =
  | { kind: "usage"; command: string }
  | { kind: "no_argument"; command: string }
  | { kind: "unknown_command"; command: string }
  | { kind: "bad_json"; why: string };

/**
 * Checks a typed line before it is sent: a command the server does not have, a command without
 * the argument it needs (or with one it does not take), JSON that does not parse. Returns the
 * mistake, or `undefined` when the line may go to the server.
 *
 * @example
 * ```ts
 * import { localMistake } from "./requests.ts";
 * import assert from "node:assert/strict";
 * assert.equal(localMistake("13800138000"), undefined);
 * assert.equal(localMistake("/status 17"), undefined);
 * assert.deepEqual(localMistake("/status"), { kind: "usage", command: "/status" });
 * assert.deepEqual(localMistake("/status first"), { kind: "usage", command: "/status" });
 * assert.deepEqual(localMistake("/stat"), { kind: "unknown_command", command: "/stat" });
 * assert.deepEqual(localMistake("/ping now"), { kind: "no_argument", command: "/ping" });
 * assert.equal(localMistake('{"cmd":"ping"'.slice(0, 5))?.kind, "bad_json");
 * ```
 */
export function localMistake(line: string): LocalMistake | undefined {
  const text = line.trim();
  if (text.startsWith("{")) {
    try {
      const value: unknown = JSON.parse(text);
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        return { kind: "bad_json", why: "a JSON request is an object, {…}" };
      }
      return undefined;
    } catch (e) {
      return { kind: "bad_json", why: e instanceof Error ? e.message : String(e) };
    }
  }
  if (!text.startsWith("/")) return undefined;
  const [command, ...args] = text.split(/\s+/);
  const takes = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (takes === undefined) return { kind: "unknown_command", command };
  if (takes === "none" && args.length > 0) return { kind: "no_argument", command };
  if (takes === "some" && args.length === 0) return { kind: "usage", command };
  // Task ids are positive whole numbers (the server's own rule).
  if (command === "/status" && (args.length > 1 || !/^\d{1,16}$/.test(args[0]) || Number(args[0]) === 0)) {
    return { kind: "usage", command };
  }
  return undefined;
}
