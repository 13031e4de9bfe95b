/**
 * How the interactive client shows replies to a person: text replies as they come, JSON replies in
 * the same form as their text twins (with what only JSON carries — the request's id, the worker,
 * the run time — after them), `/stats` as an aligned block instead of one long line, and progress
 * as a bar. With `--json` every reply but progress is shown raw.
 *
 * @module
 */
import { type ClientMessages, MESSAGES } from "./messages.ts";

/**
 * Columns a string takes on a terminal: East Asian wide and full-width characters take two.
 *
 * @example
 * ```ts
 * import { displayWidth } from "./render.ts";
 * import assert from "node:assert/strict";
 * assert.equal(displayWidth("phone> "), 7);
 * assert.equal(displayWidth("请输入手机号："), 14);
 * ```
 */
export function displayWidth(text: string): number {
  let width = 0;
  for (const ch of text) width += isWide(ch.codePointAt(0)!) ? 2 : 1;
  return width;
}

function isWide(cp: number): boolean {
  return (cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf && cp !== 0x303f) ||
    (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0xfe30 && cp <= 0xfe4f) ||
    (cp >= 0xff00 && cp <= 0xff60) || (cp >= 0xffe0 && cp <= 0xffe6) || (cp >= 0x1f300 && cp <= 0x1f64f) ||
    (cp >= 0x1f900 && cp <= 0x1f9ff) || (cp >= 0x20000 && cp <= 0x3fffd);
}

/** `text` cut to at most `columns` terminal columns, ending in `…` when cut. */
export function cutToWidth(text: string, columns: number): string {
  if (displayWidth(text) <= columns) return text;
  let out = "";
  let width = 0;
  for (const ch of text) {
    const w = isWide(ch.codePointAt(0)!) ? 2 : 1;
    if (width + w > columns - 1) break;
    out += ch;
    width += w;
  }
  return `${out}…`;
}

/** Pads `text` with spaces to `columns` terminal columns (on the right, or on the left for numbers). */
function pad(text: string, columns: number, right = false): string {
  const fill = " ".repeat(Math.max(0, columns - displayWidth(text)));
  return right ? fill + text : text + fill;
}

/**
 * Rows of cells as aligned columns: the first column left-aligned, the others right-aligned (they
 * hold numbers, and their headers sit over them).
 *
 * @example
 * ```ts
 * import { alignColumns } from "./render.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(alignColumns([["", "done"], ["sms", "17"], ["echo", "2"]]), ["      done", "sms     17", "echo     2"]);
 * ```
 */
export function alignColumns(rows: readonly (readonly string[])[], gap = 2): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, displayWidth(c))));
  return rows.map((row) => row.map((c, i) => pad(c, widths[i], i > 0)).join(" ".repeat(gap)).trimEnd());
}

const ESC = "\x1b[";
/** The colour of each reply type on a terminal. */
export const COLORS: Readonly<Record<string, string>> = {
  accepted: `${ESC}36m`,
  done: `${ESC}32m`,
  failed: `${ESC}31m`,
  error: `${ESC}31m`,
  progress: `${ESC}33m`,
};

/**
 * A `PROGRESS` reply (text or JSON) as a live line with a bar, cut to the terminal's width.
 *
 * @example
 * ```ts
 * import { progressLine } from "./render.ts";
 * import assert from "node:assert/strict";
 * assert.equal(progressLine("PROGRESS 17 40 dialing", 80, false), "  task 17 [████░░░░░░]  40% dialing");
 * assert.equal(progressLine('{"type":"progress","task_id":17,"progress":40,"message":"dialing"}', 80, false),
 *   "  task 17 [████░░░░░░]  40% dialing");
 * ```
 */
export function progressLine(
  line: string,
  columns: number,
  color: boolean,
  msgs: ClientMessages = MESSAGES.en,
): string {
  let id = "?", percent = 0, message = line;
  const json = objectOf(line);
  if (json) {
    [id, percent, message] = [String(json.task_id), Number(json.progress ?? 0), String(json.message ?? "")];
  } else {
    const m = /^PROGRESS (\d+) (\d+)(?: (.*))?$/.exec(line);
    if (m) [id, percent, message] = [m[1], Number(m[2]), m[3] ?? ""];
  }
  const filled = Math.round(Math.min(100, Math.max(0, percent)) / 10);
  const bar = `[${"█".repeat(filled)}${"░".repeat(10 - filled)}]`;
  const text = cutToWidth(
    `  ${msgs.task(id)} ${bar} ${String(percent).padStart(3)}%${message ? ` ${message}` : ""}`,
    Math.max(10, columns - 1),
  );
  return color ? `${COLORS.progress}${text}${ESC}0m` : text;
}

/** The object of a JSON line, or `undefined` for any other line. */
function objectOf(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? { ...value } : undefined;
  } catch {
    return undefined;
  }
}

/** A result or message on one line, as the server's text replies show it. */
function oneLine(value: unknown): string {
  if (typeof value === "string") return value.replace(/\r?\n|\r/g, "\\n");
  return JSON.stringify(value) ?? "null";
}

function num(value: unknown): number | undefined {
  return typeof value === "number" ? value : undefined;
}

/**
 * A reply as the interactive client shows it (one or more lines, no colour). Text replies are
 * shown as they are, but for `STATS`; JSON replies as their text twin, then what only JSON says.
 * With `raw` (the client's `--json`), the line as it came.
 *
 * @example
 * ```ts
 * import { renderReply } from "./render.ts";
 * import assert from "node:assert/strict";
 * assert.equal(renderReply("DONE 3 hi"), "DONE 3 hi");
 * assert.equal(
 *   renderReply('{"type":"done","id":"a","task_id":3,"result":"hi","worker":2,"attempts":1,"ms":5}'),
 *   'DONE 3 hi (id "a", worker 2, 5 ms)',
 * );
 * assert.equal(renderReply('{"type":"error","error":{"code":"bad_json","message":"nope"}}'), "ERROR bad_json nope");
 * assert.equal(renderReply('STATS {"accepted":2,"done":1}'), "STATS\n  accepted  2\n  done      1");
 * ```
 */
export function renderReply(line: string, opts: { raw?: boolean; msgs?: ClientMessages } = {}): string {
  if (opts.raw) return line;
  const msgs = opts.msgs ?? MESSAGES.en;
  if (line.startsWith("STATS {")) {
    const stats = objectOf(line.slice("STATS ".length));
    return stats ? statsBlock("STATS", stats) : line;
  }
  const o = objectOf(line);
  if (!o || typeof o.type !== "string") return line;
  const { type, id: tag, task_id: taskId, ...rest } = o;
  const id = typeof tag === "string" || typeof tag === "number" ? tag : undefined;
  const error = typeof o.error === "object" && o.error !== null ? { ...o.error } : undefined;
  const code = error && "code" in error ? String(error.code) : "";
  const message = error && "message" in error ? oneLine(error.message) : "";
  const meta = (m: { worker?: unknown; attempts?: unknown; ms?: unknown } = {}) =>
    msgs.replyMeta({ id, worker: num(m.worker), attempts: num(m.attempts), ms: num(m.ms) });
  switch (type) {
    case "accepted":
      return `ACCEPTED ${taskId}${meta()}`;
    case "done":
      return `DONE ${taskId} ${oneLine(o.result)}${meta(o)}`;
    case "failed":
      return `FAILED ${taskId} ${code} ${message}${meta({ attempts: o.attempts })}`;
    case "error":
      return `ERROR ${code} ${message}${meta()}`;
    case "status": {
      const detail = error ? ` ${code} ${message}` : "result" in o ? ` ${oneLine(o.result)}` : "";
      return `STATUS ${taskId} ${o.state}${detail}${meta({ attempts: o.attempts })}`;
    }
    case "stats":
      return statsBlock(`STATS${meta()}`, rest);
    case "pong":
    case "bye":
    case "ok":
      return `${type.toUpperCase()}${meta()}`;
    default:
      return line;
  }
}

/**
 * The server's counters as a block: one aligned line per counter, `by_task` and `workers` as
 * tables. Counters this client does not know are shown too, in the same way.
 */
function statsBlock(title: string, stats: Record<string, unknown>): string {
  const rows: [string, string][] = [];
  const tables: string[] = [];
  for (const [key, value] of Object.entries(stats)) {
    const table = tableOf(value);
    if (table) {
      tables.push(`  ${key}:`, ...alignColumns(table).map((l) => `    ${l}`));
    } else {
      rows.push([key, flat(value)]);
    }
  }
  const keyWidth = Math.max(0, ...rows.map(([k]) => displayWidth(k)));
  const lines = rows.map(([k, v]) => `  ${pad(k, keyWidth)}  ${v}`.trimEnd());
  return [title, ...lines, ...tables].join("\n");
}

/** A scalar, a list of scalars, or an object of scalars, on one line. */
function flat(value: unknown): string {
  if (Array.isArray(value)) return value.length === 0 ? "—" : value.map(flat).join(", ");
  if (typeof value === "object" && value !== null) {
    const entries = Object.entries(value);
    return entries.length === 0 ? "—" : entries.map(([k, v]) => `${k} ${flat(v)}`).join(" · ");
  }
  return typeof value === "string" ? value : JSON.stringify(value) ?? "null";
}

/**
 * Rows with a header for an object of objects (`by_task`: one row per name) or an array of objects
 * (`workers`: one row per slot); `undefined` for anything else.
 */
function tableOf(value: unknown): string[][] | undefined {
  const isRecord = (v: unknown): v is Record<string, unknown> =>
    typeof v === "object" && v !== null && !Array.isArray(v);
  let named: [string, Record<string, unknown>][];
  let first: string;
  if (Array.isArray(value) && value.length > 0 && value.every(isRecord)) {
    // `workers`: keyed by their `id` when they have one.
    first = value.every((v) => "id" in v) ? "id" : "#";
    named = value.map((v, i) => [String(first === "id" ? v.id : i + 1), v]);
  } else if (isRecord(value) && Object.keys(value).length > 0 && Object.values(value).every(isRecord)) {
    first = "";
    named = Object.entries(value).filter((e): e is [string, Record<string, unknown>] => isRecord(e[1]));
  } else {
    return undefined;
  }
  const columns = [...new Set(named.flatMap(([, v]) => Object.keys(v)))].filter((c) => c !== first);
  // A column of bytes reads in MiB, with its header saying so.
  const shown = (c: string, x: unknown) =>
    c.endsWith("_bytes") && typeof x === "number" ? `${(x / 1048576).toFixed(0)}` : flat(x ?? "");
  const header = columns.map((c) => c.endsWith("_bytes") ? `${c.slice(0, -"_bytes".length)} MiB` : c);
  return [[first, ...header], ...named.map(([name, v]) => [name, ...columns.map((c) => shown(c, v[c]))])];
}
