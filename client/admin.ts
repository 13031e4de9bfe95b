/**
 * The operator's subcommands: `asynctask status`, `asynctask tasks`, `asynctask retry` and
 * `asynctask cancel`. Each connects the way `asynctask client` does (the same `--host`, `--port`,
 * `--token`, `--tls`, `--ca`, `--connect-timeout`), asks over the line protocol (`/stats`,
 * `/tasks`, `/retry`, `/cancel` as JSON requests, each tagged so that its reply is found among the
 * others), and prints a readable form, or with `--json` the server's JSON as it is.
 *
 * Exit codes: 0 when everything asked was done, 1 when the server refused some of it (or a retried
 * task failed again), 2 when it could not connect, the server refused the token, or the command
 * line is wrong.
 *
 * @module
 */
import {
  type Flags,
  type FlagSpec,
  HELP_FLAG,
  parseFlags,
  readFlagFile,
  renderHelp,
  UsageError,
} from "../cli/flags.ts";
import { commandFor } from "../cli/invocation.ts";
import { CLIENT_FLAGS } from "./cli.ts";
import { ClientConnection, ConnectError } from "./connection.ts";
import { MESSAGES } from "./messages.ts";
import { alignColumns, cutToWidth, displayWidth, renderReply } from "./render.ts";

/** The connection flags of `asynctask client`, as its table has them: the admin commands connect the same way. */
const CONNECTION_FLAG_NAMES: readonly string[] = ["host", "port", "connect-timeout", "token", "tls", "ca"];

/** `--host`, `--port`, `--connect-timeout`, `--token`, `--tls`, `--ca`: the specs of {@linkcode CLIENT_FLAGS}. */
export const CONNECTION_FLAGS: readonly FlagSpec[] = CLIENT_FLAGS.filter((f) => CONNECTION_FLAG_NAMES.includes(f.name));

const JSON_FLAG: FlagSpec = {
  name: "json",
  kind: "boolean",
  help: "print the server's JSON as it is, for scripts",
};

/** The flags of `asynctask status`. */
export const STATUS_FLAGS: readonly FlagSpec[] = [...CONNECTION_FLAGS, JSON_FLAG, HELP_FLAG];

/** The states `asynctask tasks` lists, one flag each. */
const LISTED = ["failed", "running", "queued", "scheduled"] as const;
type Listed = (typeof LISTED)[number];

/** The flags of `asynctask tasks`. */
export const TASKS_FLAGS: readonly FlagSpec[] = [
  { name: "failed", kind: "boolean", help: "list failed tasks, newest first, with their error and data" },
  { name: "running", kind: "boolean", help: "list running tasks" },
  { name: "queued", kind: "boolean", help: "list queued tasks, in queue order" },
  {
    name: "scheduled",
    kind: "boolean",
    help: "list delayed tasks waiting for their time (a request's delay or run_at)",
  },
  { name: "limit", kind: "int", default: 20, min: 1, max: 1000, help: "list at most this many" },
  ...CONNECTION_FLAGS,
  JSON_FLAG,
  HELP_FLAG,
];

/** The flags of `asynctask retry`. */
export const RETRY_FLAGS: readonly FlagSpec[] = [
  { name: "no-wait", kind: "boolean", help: "print the new ids, and do not wait for the new tasks' results" },
  ...CONNECTION_FLAGS,
  JSON_FLAG,
  HELP_FLAG,
];

/** The flags of `asynctask cancel`. */
export const CANCEL_FLAGS: readonly FlagSpec[] = [...CONNECTION_FLAGS, JSON_FLAG, HELP_FLAG];

/** The `--help` text of `asynctask status`, in the words the user runs it with. */
export const statusHelp = (): string =>
  renderHelp(
    commandFor("status", "[flags]"),
    "Shows a running server's counters (its /stats): uptime, connections, tasks accepted, refused,\n" +
      "done and failed, what is queued, running and waiting to retry, then a table per task name and\n" +
      "one per worker. --json prints the server's object as it is.\n\n" +
      "Exits 0, or 2 when it cannot connect or the server refused the token.",
    STATUS_FLAGS,
  );

/** The `--help` text of `asynctask tasks`. */
export const tasksHelp = (): string =>
  renderHelp(
    commandFor("tasks", "--failed|--running|--queued|--scheduled [flags]"),
    "Lists a running server's tasks in one state (its /tasks): failed ones newest first, with their\n" +
      "error and data (a server keeps them for serve --keep-failed); running and queued ones in queue\n" +
      "order; scheduled ones with the time left until they run. The age is the time since the task\n" +
      "failed, or else since it was accepted. --json prints the server's array as it is.\n\n" +
      `Then \`${commandFor("retry", "<id>")}\` runs a failed task again, and \`${
        commandFor("cancel", "<id>")
      }\` stops a\nrunning or queued one.\n\n` +
      "Exits 0, or 2 when it cannot connect, the server refused the token, or the flags are wrong.",
    TASKS_FLAGS,
  );

/** The `--help` text of `asynctask retry`. */
export const retryHelp = (): string =>
  renderHelp(
    commandFor("retry", "<id>… [flags]"),
    "Runs failed tasks again (/retry), each with its data, under a new id: prints\n" +
      '"task 7 → retried as task 12", then waits for each new task\'s final reply and prints it\n' +
      "(unless --no-wait). A task is retried once; if the new one fails, retry the new id.\n" +
      `\`${commandFor("tasks", "--failed")}\` lists the failed tasks.\n\n` +
      "Exits 0 when every task was retried (and, waiting, every new task is DONE), 1 when the server\n" +
      "refused one or a new task failed, 2 when it cannot connect, the server refused the token, or\n" +
      "the command line is wrong.",
    RETRY_FLAGS,
  );

/** The `--help` text of `asynctask cancel`. */
export const cancelHelp = (): string =>
  renderHelp(
    commandFor("cancel", "<id>… [flags]"),
    "Stops queued or running tasks (/cancel): a queued one leaves the queue, a running one has its\n" +
      "handler stopped. Each ends FAILED cancelled to the client that submitted it, and is kept as a\n" +
      `failure (\`${commandFor("retry", "<id>")}\` runs it again). Prints "task 7 cancelled", or why not.\n` +
      `\`${commandFor("tasks", "--running")}\` and \`${commandFor("tasks", "--queued")}\` list them.\n\n` +
      "Exits 0 when every task was cancelled, 1 when the server refused one (it had finished, or is\n" +
      "unknown), 2 when it cannot connect, the server refused the token, or the command line is wrong.",
    CANCEL_FLAGS,
  );

/** Ends a command early: the message goes to stderr after the program's prefix, and the code is the exit code. */
class Stop extends Error {
  override name = "Stop";
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

/** One JSON reply line. */
export interface JsonReply {
  type: string;
  /** The reply's fields. */
  value: Record<string, unknown>;
  /** The line as received. */
  line: string;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * A reply line as a {@linkcode JsonReply}, or `undefined` for a line that is not a JSON object with
 * a `type`.
 *
 * @example
 * ```ts
 * import { jsonReply } from "./admin.ts";
 * import assert from "node:assert/strict";
 * assert.equal(jsonReply('{"type":"ok","task_id":7,"state":"cancelled"}')?.value.task_id, 7);
 * assert.equal(jsonReply("OK cancelled 7"), undefined);
 * ```
 */
export function jsonReply(line: string): JsonReply | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const value: unknown = JSON.parse(line);
    if (!isRecord(value) || typeof value.type !== "string") return undefined;
    return { type: value.type, value, line };
  } catch {
    return undefined;
  }
}

/** The `error` of a reply: its code and message. */
function errorOf(reply: JsonReply): { code: string; message: string } {
  const e = reply.value.error;
  return isRecord(e)
    ? { code: String(e.code ?? "error"), message: String(e.message ?? "").replace(/\r?\n|\r/g, " ") }
    : { code: "error", message: "" };
}

/**
 * One connection used by an admin command: tagged JSON requests and their replies, and the final
 * replies of tasks (`done`, `failed`) by task id, kept when they come before they are asked for.
 */
class AdminConnection {
  readonly #conn: ClientConnection;
  readonly #pending = new Map<string, (reply: JsonReply | undefined) => void>();
  readonly #finals = new Map<number, JsonReply>();
  readonly #finalWaiters = new Map<number, ((reply: JsonReply | undefined) => void)[]>();
  #closed = false;
  /** The last reply that answered none of our requests (an `ERROR` the server sent before closing). */
  untagged: JsonReply | undefined;
  /** The first line that was not JSON: the port may not be an asynctask server's. */
  foreign: string | undefined;
  /** Whether a request went unanswered for {@linkcode answerMs}. */
  timedOut = false;

  constructor(conn: ClientConnection, readonly answerMs: number) {
    this.#conn = conn;
    conn.onLine = (line) => this.#received(line);
    conn.closed.then(() => {
      this.#closed = true;
      for (const resolve of this.#pending.values()) resolve(undefined);
      this.#pending.clear();
      for (const waiters of this.#finalWaiters.values()) for (const resolve of waiters) resolve(undefined);
      this.#finalWaiters.clear();
    });
  }

  get speaksTls(): boolean {
    return this.#conn.speaksTls;
  }

  /**
   * Sends each `[tag, body]` with its tag as `id`, all in one write (so they reach the server in
   * this order); each resolves with its reply, `undefined` when the connection closed first, or
   * `"timeout"` when no reply came within {@linkcode answerMs} of the write.
   */
  requests(list: readonly [string, Record<string, unknown>][]): Promise<JsonReply | undefined | "timeout">[] {
    if (this.#closed) return list.map(() => Promise.resolve(undefined));
    const answers = list.map(([tag]) =>
      new Promise<JsonReply | undefined>((resolve) => this.#pending.set(tag, resolve))
    );
    // A broken connection closes, and its requests are answered undefined.
    const sent = this.#conn.send(list.map(([tag, body]) => JSON.stringify({ ...body, id: tag }))).catch(() => {});
    return answers.map(async (answered, i) => {
      await sent;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), this.answerMs));
      try {
        const reply = await Promise.race([answered, late]);
        if (reply === "timeout") {
          this.timedOut = true;
          this.#pending.delete(list[i][0]);
        }
        return reply;
      } finally {
        clearTimeout(timer);
      }
    });
  }

  /** The final reply (`done` or `failed`) of task `id`, or `undefined` when the connection closes first. */
  final(id: number): Promise<JsonReply | undefined> {
    const known = this.#finals.get(id);
    if (known) return Promise.resolve(known);
    if (this.#closed) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const waiters = this.#finalWaiters.get(id) ?? [];
      waiters.push(resolve);
      this.#finalWaiters.set(id, waiters);
    });
  }

  close(): void {
    this.#conn.close();
  }

  #received(line: string): void {
    const reply = jsonReply(line);
    if (!reply) {
      if (line.trim() !== "") this.foreign ??= line;
      return;
    }
    const taskId = reply.value.task_id;
    if ((reply.type === "done" || reply.type === "failed") && typeof taskId === "number") {
      this.#finals.set(taskId, reply);
      for (const resolve of this.#finalWaiters.get(taskId) ?? []) resolve(reply);
      this.#finalWaiters.delete(taskId);
      return;
    }
    if (reply.type === "progress") return;
    const tag = reply.value.id;
    const resolve = typeof tag === "string" ? this.#pending.get(tag) : undefined;
    if (resolve) {
      this.#pending.delete(String(tag));
      resolve(reply);
    } else {
      this.untagged = reply;
    }
  }
}

/** An admin command's connection, once it is open and authenticated. */
interface Opened {
  conn: AdminConnection;
  /** `host:port`. */
  address: string;
  /** Sends one request and returns its reply, or ends the command (exit 2) when none comes. */
  ask(tag: string, body: Record<string, unknown>): Promise<JsonReply>;
  /**
   * Sends requests in one write and returns their replies in order, `undefined` where none came;
   * ends the command (exit 2) when the first gets none.
   */
  askAll(list: readonly [string, Record<string, unknown>][]): Promise<(JsonReply | undefined)[]>;
}

/**
 * Connects as `flags` say, and sends `/auth` first when there is a token. Ends the command with
 * exit 2 (a {@linkcode Stop}) when it cannot.
 */
async function open(flags: Flags): Promise<Opened> {
  const host = flags.str("host") ?? "127.0.0.1";
  const port = flags.num("port");
  const ca = flags.str("ca");
  const tls = flags.bool("tls") || ca !== undefined
    ? { caCerts: ca ? [readFlagFile(ca, "--ca")] : undefined }
    : undefined;
  const timeoutMs = flags.num("connect-timeout");
  let client: ClientConnection;
  try {
    client = await ClientConnection.connect(host, port, timeoutMs, tls);
  } catch (e) {
    if (e instanceof ConnectError) throw new Stop(2, e.message);
    throw e;
  }
  const address = `${host}:${port}`;
  const conn = new AdminConnection(client, timeoutMs);
  const token = flags.str("token");
  /** Ends the command (exit 2) when the server did not answer, or refused the token. */
  const check = (reply: JsonReply | undefined | "timeout"): JsonReply => {
    if (reply === "timeout") {
      conn.close();
      throw new Stop(
        2,
        conn.foreign !== undefined
          ? notAsynctask(address, conn.foreign)
          : `${address} did not answer within ${timeoutMs} ms — is it an asynctask server? Check --port, or raise --connect-timeout`,
      );
    }
    if (reply === undefined) throw new Stop(2, closedWhy(conn, address));
    if (reply.type === "error" && errorOf(reply).code === "unauthorized") {
      conn.close();
      throw new Stop(
        2,
        token === undefined ? MESSAGES.en.tokenNeeded(address) : MESSAGES.en.tokenRefused,
      );
    }
    return reply;
  };
  const askAll = async (list: readonly [string, Record<string, unknown>][]) => {
    const [first, ...rest] = conn.requests(list);
    // The first is checked: a server that answers nothing, or wants a token, ends the command there.
    const out: (JsonReply | undefined)[] = [check(await first)];
    for (const pending of rest) {
      const reply = await pending;
      out.push(reply === "timeout" ? undefined : reply);
    }
    return out;
  };
  const ask = async (tag: string, body: Record<string, unknown>) => check(await conn.requests([[tag, body]])[0]);
  if (token !== undefined) await ask("auth", { cmd: "auth", token });
  return { conn, address, ask, askAll };
}

function notAsynctask(address: string, line: string): string {
  return `${address} answered ${JSON.stringify(cutToWidth(line, 60))}, not the asynctask protocol — check --port`;
}

/** Why the connection closed without an answer, and what to do. */
function closedWhy(conn: AdminConnection, address: string): string {
  if (conn.speaksTls) return MESSAGES.en.speaksTls(address);
  if (conn.timedOut) return `${address} did not answer within ${conn.answerMs} ms — raise --connect-timeout`;
  if (conn.foreign !== undefined) return notAsynctask(address, conn.foreign);
  if (conn.untagged?.type === "error") {
    const { code, message } = errorOf(conn.untagged);
    return `the server closed the connection: ${code} ${message}`;
  }
  return "the server closed the connection before it answered";
}

/**
 * Runs an admin command's body with its connection; a {@linkcode Stop} is printed after the
 * program's prefix (`asynctask retry: …`) and becomes the exit code.
 */
async function withConnection(
  sub: string,
  flags: Flags,
  body: (opened: Opened) => Promise<number>,
): Promise<number> {
  let opened: Opened | undefined;
  try {
    opened = await open(flags);
    return await body(opened);
  } catch (e) {
    if (!(e instanceof Stop)) throw e;
    console.error(`${commandFor(sub)}: ${e.message}`);
    return e.code;
  } finally {
    opened?.conn.close();
  }
}

/** Parses an admin command's flags; `--help` prints `help` and returns undefined. */
function flagsOf(sub: string, specs: readonly FlagSpec[], args: string[], help: () => string): Flags | undefined {
  const flags = parseFlags(sub, specs, args, {
    allowPositionals: ["retry", "cancel", "pause", "resume"].includes(sub),
  });
  if (flags.bool("help")) {
    console.log(help());
    return undefined;
  }
  return flags;
}

/**
 * Task ids as typed: positive whole numbers, each once, in the order given.
 *
 * @example
 * ```ts
 * import { taskIds } from "./admin.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(taskIds("retry", ["7", "12", "7"]), [7, 12]);
 * assert.throws(() => taskIds("retry", ["seven"]), /"seven" is not a task id/);
 * assert.throws(() => taskIds("cancel", []), /name the task/);
 * ```
 * @throws {UsageError} for no id, or one that is not a positive whole number.
 */
export function taskIds(sub: string, words: readonly string[]): number[] {
  const list = sub === "retry" ? "--failed" : "--running";
  if (words.length === 0) {
    throw new UsageError(
      `name the task(s) to ${sub}, e.g. \`${commandFor(sub, "7")}\`; \`${commandFor("tasks", list)}\` lists them`,
    );
  }
  const ids: number[] = [];
  for (const w of words) {
    const id = /^\d{1,16}$/.test(w) ? Number(w) : NaN;
    if (!Number.isSafeInteger(id) || id <= 0) {
      throw new UsageError(
        `"${w}" is not a task id: ids are whole numbers like 7, as \`${commandFor("tasks", list)}\` shows them`,
      );
    }
    if (!ids.includes(id)) ids.push(id);
  }
  return ids;
}

// --- status

/**
 * Runs `asynctask status`; returns the exit code.
 *
 * @example
 * ```ts ignore
 * Deno.exit(await runStatus(["--port", "9501"]));
 * ```
 */
export async function runStatus(args: string[]): Promise<number> {
  const flags = flagsOf("status", STATUS_FLAGS, args, statusHelp);
  if (!flags) return 0;
  return await withConnection("status", flags, async ({ address, ask }) => {
    const reply = await ask("stats", { cmd: "stats" });
    if (reply.type !== "stats") throw new Stop(2, `the server did not answer /stats: ${renderReply(reply.line)}`);
    const { type: _type, id: _id, ...stats } = reply.value;
    console.log(flags.bool("json") ? JSON.stringify(stats) : renderStatus(stats, address));
    return 0;
  });
}

/**
 * A time in seconds as a person reads it: `45s`, `3m 12s`, `2h 5m`, `1d 3h`.
 *
 * @example
 * ```ts
 * import { formatAge } from "./admin.ts";
 * import assert from "node:assert/strict";
 * assert.equal(formatAge(45.7), "45s");
 * assert.equal(formatAge(192), "3m 12s");
 * assert.equal(formatAge(7500), "2h 5m");
 * assert.equal(formatAge(97_200), "1d 3h");
 * ```
 */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

/** The counters {@linkcode renderStatus} says in its own words; any other is shown as `/stats` shows it. */
const KNOWN_STATS = new Set([
  "connections",
  "connections_total",
  "accepted",
  "refused",
  "queued",
  "running",
  "done",
  "failed",
  "retrying",
  "retained_results",
  "worker_messages",
  "uptime_s",
  "tasks",
  "by_task",
  "workers",
]);

/**
 * A server's `/stats` as `asynctask status` prints it: a line on the server, the counters in
 * words, then a table per task name and one per worker. Counters it does not know are listed
 * after, as the interactive client's `/stats` block shows them.
 *
 * @example
 * ```ts
 * import { renderStatus } from "./admin.ts";
 * import assert from "node:assert/strict";
 * const text = renderStatus({
 *   connections: 1, connections_total: 4, accepted: 9, refused: 1, queued: 2, running: 1, done: 5, failed: 1,
 *   retrying: 0, uptime_s: 192, tasks: ["sms", "echo"],
 *   by_task: { sms: { accepted: 9, done: 5, failed: 1, retried: 0 } },
 *   workers: [{ id: 1, running: 1, done: 5, failed: 1, restarts: 0 }],
 * }, "127.0.0.1:9501");
 * assert.match(text, /^server 127\.0\.0\.1:9501, up 3m 12s, runs sms, echo\n/);
 * assert.match(text, /\n {2}tasks +9 accepted, 1 refused, 5 done, 1 failed\n/);
 * assert.match(text, /\n {2}now +2 queued, 1 running, 0 retrying\n/);
 * assert.match(text, /\n {2}task +accepted +done +failed +retried\n {2}sms +9 +5 +1 +0\n/);
 * ```
 */
export function renderStatus(stats: Record<string, unknown>, address: string): string {
  const n = (key: string) => typeof stats[key] === "number" ? String(stats[key]) : "?";
  const has = (key: string) => typeof stats[key] === "number";
  const head = [`server ${address}`];
  if (has("uptime_s")) head.push(`up ${formatAge(Number(stats.uptime_s))}`);
  if (Array.isArray(stats.tasks)) head.push(stats.tasks.length > 0 ? `runs ${stats.tasks.join(", ")}` : "no tasks");
  const rows: [string, string][] = [
    ["connections", `${n("connections")} open${has("connections_total") ? `, ${n("connections_total")} in all` : ""}`],
    ["tasks", `${n("accepted")} accepted, ${n("refused")} refused, ${n("done")} done, ${n("failed")} failed`],
    ["now", `${n("queued")} queued, ${n("running")} running, ${n("retrying")} retrying`],
  ];
  if (has("retained_results")) rows.push(["results kept", `${n("retained_results")} (for /status)`]);
  const wm = stats.worker_messages;
  if (isRecord(wm)) rows.push(["worker messages", `${wm.to_workers ?? "?"} sent, ${wm.from_workers ?? "?"} received`]);
  const width = Math.max(...rows.map(([k]) => displayWidth(k)));
  const out = [head.join(", "), ...rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`)];
  const others = Object.fromEntries(Object.entries(stats).filter(([k]) => !KNOWN_STATS.has(k)));
  if (Object.keys(others).length > 0) {
    // Counters of a newer server: as the interactive client's /stats block shows them, without its title.
    out.push(...renderReply(`STATS ${JSON.stringify(others)}`).split("\n").slice(1));
  }
  const byTask = stats.by_task;
  if (isRecord(byTask) && Object.keys(byTask).length > 0) {
    const columns = ["accepted", "done", "failed", "retried"];
    const table = [["task", ...columns]];
    for (const [name, c] of Object.entries(byTask)) {
      table.push([name, ...columns.map((col) => isRecord(c) && c[col] !== undefined ? String(c[col]) : "")]);
    }
    out.push("", ...alignColumns(table).map((l) => `  ${l}`));
  }
  const workers = stats.workers;
  if (Array.isArray(workers) && workers.length > 0) {
    const records = workers.filter(isRecord);
    const names = ["running", "done", "failed", "restarts"];
    const state = records.some((w) => typeof w.state === "string");
    const memory = records.some((w) => typeof w.memory_bytes === "number");
    const table = [["worker", ...(state ? ["state"] : []), ...names, ...(memory ? ["memory"] : [])]];
    records.forEach((w, i) => {
      table.push([
        String(w.id ?? i + 1),
        ...(state ? [String(w.state ?? "")] : []),
        ...names.map((col) => w[col] !== undefined ? String(w[col]) : ""),
        ...(memory ? [typeof w.memory_bytes === "number" ? `${(w.memory_bytes / 1048576).toFixed(0)} MiB` : ""] : []),
      ]);
    });
    // Numbers right-aligned under their headers; the id and the state left.
    const right = new Set([...names, ...(memory ? ["memory"] : [])].map((_, i) => i + (state ? 2 : 1)));
    out.push("", ...columns(table, right).map((l) => `  ${l}`));
  }
  return out.join("\n");
}

// --- tasks

/**
 * Runs `asynctask tasks --failed|--running|--queued|--scheduled`; returns the exit code.
 *
 * @example
 * ```ts ignore
 * Deno.exit(await runTasks(["--failed", "--limit", "50"]));
 * ```
 */
export async function runTasks(args: string[]): Promise<number> {
  const flags = flagsOf("tasks", TASKS_FLAGS, args, tasksHelp);
  if (!flags) return 0;
  const chosen = LISTED.filter((s) => flags.bool(s));
  if (chosen.length !== 1) {
    throw new UsageError(
      `${chosen.length === 0 ? "say which tasks to list" : `one state at a time, not ${chosen.join(" and ")}`}: ` +
        `\`${commandFor("tasks", "--failed")}\`, \`--running\`, \`--queued\` or \`--scheduled\``,
    );
  }
  const state = chosen[0];
  const limit = flags.num("limit");
  if (flags.positionals.length > 0) throw new UsageError(`unexpected argument "${flags.positionals[0]}"`);
  return await withConnection("tasks", flags, async ({ ask }) => {
    const reply = await ask("tasks", { cmd: "tasks", state, limit });
    if (reply.type !== "tasks" || !Array.isArray(reply.value.tasks)) {
      const why = reply.type === "error" ? `${errorOf(reply).code} ${errorOf(reply).message}` : reply.line;
      throw new Stop(2, `the server did not list its tasks: ${why} — is it older than /tasks?`);
    }
    const tasks = reply.value.tasks;
    console.log(flags.bool("json") ? JSON.stringify(tasks) : renderTasks(state, tasks.filter(isRecord), limit));
    return 0;
  });
}

/** A scheduled task's time left until it runs (`2m 0s`, `due` once its time has come); "" for any other. */
function runsIn(t: Record<string, unknown>, now: number): string {
  const at = typeof t.run_at === "string" ? Date.parse(t.run_at) : NaN;
  if (Number.isNaN(at)) return "";
  return at <= now ? "due" : formatAge(Math.ceil((at - now) / 1000));
}

/** Rows as columns: those in `right` right-aligned (numbers), the others left-aligned; trailing spaces cut. */
function columns(rows: readonly (readonly string[])[], right: ReadonlySet<number>): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, displayWidth(c))));
  return rows.map((row) =>
    row.map((c, i) => {
      const fill = " ".repeat(widths[i] - displayWidth(c));
      return right.has(i) ? fill + c : c + fill;
    }).join("  ").trimEnd()
  );
}

/** How many columns of a line the error and the data may take. */
const ERROR_COLUMNS = 60;
const DATA_COLUMNS = 32;

/**
 * Tasks as `asynctask tasks` prints them: a table of id, task, state, attempts, age, and (where
 * any task has them) the worker, the error code and message, the data, and the task it retries —
 * long texts clipped with `…`. `now` is the time to count ages from.
 *
 * @example
 * ```ts
 * import { renderTasks } from "./admin.ts";
 * import assert from "node:assert/strict";
 * const text = renderTasks("failed", [{
 *   id: 7, task: "fail", state: "failed", attempts: 1, accepted_at: "2026-01-01T00:00:00.000Z",
 *   finished_at: "2026-01-01T00:00:05.000Z", error: { code: "handler_error", message: "disk full" }, data: "disk full",
 * }], 20, Date.parse("2026-01-01T00:03:05.000Z"));
 * assert.equal(text.split("\n")[0], "id  task  state   attempts    age  error                     data");
 * assert.equal(text.split("\n")[1], ' 7  fail  failed         1  3m 0s  handler_error: disk full  "disk full"');
 * assert.equal(renderTasks("running", [], 20), "no running tasks");
 * ```
 */
export function renderTasks(
  state: Listed,
  tasks: readonly Record<string, unknown>[],
  limit: number,
  now: number = Date.now(),
): string {
  if (tasks.length === 0) return `no ${state} tasks`;
  const age = (t: Record<string, unknown>) => {
    const since = Date.parse(String(t.finished_at ?? t.accepted_at ?? ""));
    return Number.isNaN(since) ? "" : formatAge((now - since) / 1000);
  };
  const error = (t: Record<string, unknown>) => {
    const e = t.error;
    if (!isRecord(e)) return "";
    return cutToWidth(`${e.code}: ${String(e.message ?? "").replace(/\r?\n|\r/g, " ")}`, ERROR_COLUMNS);
  };
  const data = (t: Record<string, unknown>) => {
    if ("data" in t) return cutToWidth(JSON.stringify(t.data) ?? "null", DATA_COLUMNS);
    return typeof t.data_bytes === "number" ? `(${t.data_bytes} bytes)` : "";
  };
  const all: [string, (t: Record<string, unknown>) => string, boolean][] = [
    ["id", (t) => String(t.id ?? ""), true],
    ["task", (t) => String(t.task ?? ""), false],
    ["state", (t) => String(t.state ?? ""), false],
    ["attempts", (t) => String(t.attempts ?? ""), true],
    ["age", age, true],
    ["runs in", (t) => runsIn(t, now), true],
    ["worker", (t) => t.worker === undefined ? "" : String(t.worker), true],
    ["error", error, false],
    ["data", data, false],
    ["retry of", (t) => t.retry_of === undefined ? "" : String(t.retry_of), true],
  ];
  // The first five always; the others where any task has them.
  const shown = all.filter(([, cell], i) => i < 5 || tasks.some((t) => cell(t) !== ""));
  const rows = [shown.map(([name]) => name), ...tasks.map((t) => shown.map(([, cell]) => cell(t)))];
  const right = new Set(shown.flatMap(([, , r], i) => r ? [i] : []));
  const out = columns(rows, right);
  if (tasks.length >= limit) {
    out.push(`(the ${state === "failed" ? "newest" : "first"} ${limit}; there may be more: raise --limit)`);
  }
  return out.join("\n");
}

// --- retry and cancel

/**
 * Runs `asynctask retry <id>…`; returns the exit code.
 *
 * @example
 * ```ts ignore
 * Deno.exit(await runRetry(["7", "12"]));
 * ```
 */
export async function runRetry(args: string[]): Promise<number> {
  const flags = flagsOf("retry", RETRY_FLAGS, args, retryHelp);
  if (!flags) return 0;
  const ids = taskIds("retry", flags.positionals);
  const json = flags.bool("json");
  const wait = !flags.bool("no-wait");
  return await withConnection("retry", flags, async (opened) => {
    const replies = await operate(opened, "retry", ids);
    let ok = true;
    const retried: [number, number][] = [];
    for (const [id, reply] of replies) {
      if (json && reply) console.log(reply.line);
      const newId = reply?.type === "accepted" ? reply.value.task_id : undefined;
      if (typeof newId === "number") {
        retried.push([id, newId]);
        if (!json) console.log(`task ${id} → retried as task ${newId}`);
      } else {
        ok = false;
        refused("retry", `task ${id} was not retried`, reply, opened);
      }
    }
    if (!wait || retried.length === 0) return ok ? 0 : 1;
    const finals = await Promise.all(retried.map(async ([, newId]) => {
      const reply = await opened.conn.final(newId);
      if (reply) console.log(json ? reply.line : renderReply(JSON.stringify(untagged(reply.value))));
      return reply;
    }));
    const lost = retried.filter((_, i) => finals[i] === undefined).map(([, newId]) => newId);
    if (lost.length > 0) {
      console.error(
        `${commandFor("retry")}: the server closed the connection before the result of task ${lost.join(", ")}; ` +
          `look ${lost.length > 1 ? "them" : "it"} up with \`/status ${lost[0]}\` in \`${commandFor("client")}\``,
      );
    }
    return ok && finals.every((f) => f?.type === "done") ? 0 : 1;
  });
}

/**
 * Runs `asynctask cancel <id>…`; returns the exit code.
 *
 * @example
 * ```ts ignore
 * Deno.exit(await runCancel(["7"]));
 * ```
 */
export async function runCancel(args: string[]): Promise<number> {
  const flags = flagsOf("cancel", CANCEL_FLAGS, args, cancelHelp);
  if (!flags) return 0;
  const ids = taskIds("cancel", flags.positionals);
  const json = flags.bool("json");
  return await withConnection("cancel", flags, async (opened) => {
    let ok = true;
    for (const [id, reply] of await operate(opened, "cancel", ids)) {
      if (json && reply) console.log(reply.line);
      if (reply?.type === "ok") {
        if (!json) console.log(`task ${id} cancelled`);
      } else {
        ok = false;
        refused("cancel", `task ${id} was not cancelled`, reply, opened);
      }
    }
    return ok ? 0 : 1;
  });
}

/** A reply's fields without the request's tag (ours, not the user's). */
function untagged(value: Record<string, unknown>): Record<string, unknown> {
  const { id: _id, ...rest } = value;
  return rest;
}

/**
 * Sends `/<op> <id>` for every id at once, and returns each id's reply in order (`undefined` where
 * the connection closed first). Ends the command (exit 2) when not one was answered.
 */
async function operate(
  { askAll }: Opened,
  op: "retry" | "cancel",
  ids: readonly number[],
): Promise<[number, JsonReply | undefined][]> {
  const replies = await askAll(ids.map((id) => [`${op} ${id}`, { cmd: op, task_id: id }]));
  return ids.map((id, i) => [id, replies[i]]);
}

/** Prints why an operation was not done (stderr), in the server's words and with what to do. */
function refused(sub: string, what: string, reply: JsonReply | undefined, { conn, address }: Opened): void {
  let why: string;
  if (!reply) why = closedWhy(conn, address);
  else if (reply.type === "error") {
    const { code, message } = errorOf(reply);
    why = `${code} — ${message}`;
    if (code === "not_found") {
      why += ` (\`${commandFor("tasks", sub === "retry" ? "--failed" : "--running")}\` lists ids)`;
    }
  } else why = `the server answered ${renderReply(reply.line)}`;
  console.error(`${commandFor(sub)}: ${what}: ${why}`);
}

/** The flags of `asynctask pause` and `asynctask resume`. */
export const PAUSE_FLAGS: readonly FlagSpec[] = [...CONNECTION_FLAGS, JSON_FLAG, HELP_FLAG];

/** The `--help` text of `asynctask pause` or `asynctask resume`. */
export const pauseHelp = (sub: "pause" | "resume"): string =>
  renderHelp(
    commandFor(sub, "[task…] [flags]"),
    (sub === "pause"
      ? "Stops starting tasks of these names (/pause), or of every task when none is named. They are\n" +
        "still accepted, and wait in the queue; running ones finish. `/status` says a waiting one is paused.\n"
      : "Starts tasks of these names again (/resume), or of every task when none is named.\n") +
      "Prints what is paused afterwards. Exits 0, 1 when the server refused one (no such task), 2 when\n" +
      "it cannot connect, the server refused the token, or the command line is wrong.",
    PAUSE_FLAGS,
  );

/** `asynctask pause [task…]` and `asynctask resume [task…]`: returns the exit code. */
export async function runPauseResume(sub: "pause" | "resume", args: string[]): Promise<number> {
  const flags = flagsOf(sub, PAUSE_FLAGS, args, () => pauseHelp(sub));
  if (!flags) return 0;
  const names: (string | undefined)[] = flags.positionals.length > 0 ? flags.positionals : [undefined];
  const json = flags.bool("json");
  return await withConnection(sub, flags, async (opened) => {
    const replies = await opened.askAll(
      names.map((task): [string, Record<string, unknown>] => [
        `${sub} ${task ?? "*"}`,
        task === undefined ? { cmd: sub } : { cmd: sub, task },
      ]),
    );
    let ok = true;
    let paused: unknown = undefined;
    for (const [i, reply] of replies.entries()) {
      if (json && reply) console.log(reply.line);
      if (reply?.type === "ok") paused = reply.value.paused;
      else {
        ok = false;
        refused(sub, `${names[i] ?? "every task"} was not ${sub}d`, reply, opened);
      }
    }
    if (!json && Array.isArray(paused)) {
      console.log(
        `paused now: ${paused.length === 0 ? "nothing" : paused.includes("*") ? "every task" : paused.join(", ")}`,
      );
    }
    return ok ? 0 : 1;
  });
}
