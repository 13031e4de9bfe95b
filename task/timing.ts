/**
 * The scheduling fields of a task request, read and checked before the task is accepted:
 *
 * | field        | what                                                                            | default |
 * | ------------ | ------------------------------------------------------------------------------- | ------- |
 * | `priority`   | a whole number from -100 to 100; higher runs sooner                             | `0`     |
 * | `delay`      | how long to wait before the task may start: `"30s"`, `"2m"`, `"1h30m"`, or ms   | none    |
 * | `run_at`     | when the task may start: RFC 3339 with an offset, `"2026-12-02T10:00:00+08:00"` | none    |
 * | `unique_key` | 1 to 256 characters: at most one task with this key is waiting or running       | none    |
 *
 * `delay` and `run_at` exclude each other, and neither may reach past `now` + `--max-delay` (30 days by
 * default). A `run_at` in the past is due at once.
 *
 * Every reader returns a {@linkcode Result}: the value, or a message that says what is wrong and what to
 * send instead, made to follow `ERROR invalid_data `.
 *
 * The module also renders **key templates** from the config file, such as `"{phone}"` or
 * `"sms:{data.to}"`, over a task's data (see {@linkcode compileTemplate}): the keys of rate limits and
 * of unique tasks.
 *
 * @module
 */
import { formatDuration } from "../cli/units.ts";

/** A value, or a message saying what is wrong with the input and what to send instead. */
export type Result<T> = { ok: true; value: T } | { ok: false; message: string };

/** The lowest `priority` a task may have. */
export const PRIORITY_MIN = -100;
/** The highest `priority` a task may have. */
export const PRIORITY_MAX = 100;
/** The `priority` of a task that gives none. */
export const DEFAULT_PRIORITY = 0;
/** The default `--max-delay`: how far ahead `delay` and `run_at` may reach (30 days). */
export const DEFAULT_MAX_DELAY_MS = 30 * 86_400_000;
/** The longest key (`unique_key`, or a rendered key template), in UTF-16 code units. */
export const MAX_KEY_LENGTH = 256;

const DURATION_UNITS: ReadonlyArray<readonly [string, number]> = [
  ["d", 86_400_000],
  ["h", 3_600_000],
  ["m", 60_000],
  ["s", 1000],
  ["ms", 1],
];
const DURATION_PART = /(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)/y;

/**
 * Reads a `priority`: a whole number from {@linkcode PRIORITY_MIN} to {@linkcode PRIORITY_MAX}, as a
 * number or as text (`"5"`, `"-3"`). `undefined` gives {@linkcode DEFAULT_PRIORITY}.
 *
 * @example
 * ```ts
 * import { parsePriority } from "./timing.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parsePriority(5), { ok: true, value: 5 });
 * assert.deepEqual(parsePriority(undefined), { ok: true, value: 0 });
 * const bad = parsePriority(101);
 * assert.equal(bad.ok, false);
 * assert.match(!bad.ok ? bad.message : "", /from -100 to 100/);
 * ```
 */
export function parsePriority(value: unknown): Result<number> {
  if (value === undefined) return { ok: true, value: DEFAULT_PRIORITY };
  let n: number | undefined;
  if (typeof value === "number") n = value;
  else if (typeof value === "string" && /^\s*[+-]?\d{1,10}\s*$/.test(value)) n = Number(value);
  if (n !== undefined && Number.isInteger(n) && n >= PRIORITY_MIN && n <= PRIORITY_MAX) {
    return { ok: true, value: n === 0 ? 0 : n }; // no -0
  }
  const range = `from ${PRIORITY_MIN} to ${PRIORITY_MAX} (higher runs sooner; default ${DEFAULT_PRIORITY})`;
  return fail(`"priority" must be a whole number ${range}, not ${show(value)}`);
}

/**
 * Reads a duration: text made of numbers with units from the largest to the smallest (`"30s"`,
 * `"1.5s"`, `"2m"`, `"1h30m"`, `"1d 12h"`; units `d`, `h`, `m`, `s`, `ms`), or a whole number of
 * milliseconds. Text needs its unit (except `"0"`), so that `"5"` is never silently 5 ms.
 * `field` names the value in the message.
 *
 * @example
 * ```ts
 * import { parseDuration } from "./timing.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseDuration("1h30m"), { ok: true, value: 5_400_000 });
 * assert.deepEqual(parseDuration(250), { ok: true, value: 250 });
 * assert.equal(parseDuration("-5s").ok, false);
 * ```
 */
export function parseDuration(value: unknown, field = "delay"): Result<number> {
  const example = `a duration such as "30s", "2m" or "1h30m", or a whole number of milliseconds`;
  if (typeof value === "number") {
    if (Number.isInteger(value) && value >= 0 && value <= Number.MAX_SAFE_INTEGER) {
      return { ok: true, value: value === 0 ? 0 : value };
    }
    if (value < 0) return fail(`"${field}" is negative (${value}); send 0 or more: ${example}`);
    return fail(`"${field}" must be ${example}, not ${show(value)}`);
  }
  if (typeof value !== "string") return fail(`"${field}" must be ${example}, not ${show(value)}`);
  const text = value.trim();
  if (text === "0") return { ok: true, value: 0 };
  if (text === "") return fail(`"${field}" must be ${example}, not ${show(value)}`);
  if (/^-/.test(text)) return fail(`"${field}" is negative (${show(value)}); send 0 or more: ${example}`);
  if (/^\d+(?:\.\d+)?$/.test(text)) {
    return fail(`"${field}" ${show(value)} needs a unit: send "${text}s" or "${text}ms", or the number ${text} for ms`);
  }
  let total = 0;
  let at = 0;
  let lastUnit = -1;
  while (at < text.length) {
    DURATION_PART.lastIndex = at;
    const m = DURATION_PART.exec(text);
    if (!m) return fail(`"${field}" must be ${example}, not ${show(value)}`);
    const unit = DURATION_UNITS.findIndex(([u]) => u === m[2]);
    if (unit <= lastUnit) {
      return fail(`"${field}" ${show(value)}: give each unit once, from the largest to the smallest, e.g. "1h30m"`);
    }
    lastUnit = unit;
    total += Number(m[1]) * DURATION_UNITS[unit][1];
    at = DURATION_PART.lastIndex;
    while (text[at] === " ") at++;
  }
  const ms = Math.round(total);
  if (!Number.isSafeInteger(ms)) return fail(`"${field}" ${show(value)} is too long`);
  return { ok: true, value: ms };
}

/**
 * Reads a `run_at`: an RFC 3339 date and time with an offset or `Z` (`"2026-12-02T10:00:00+08:00"`,
 * `"2026-12-02T02:00:00.250Z"`), into milliseconds since the epoch. A time without an offset is refused:
 * the server cannot guess the client's time zone.
 *
 * @example
 * ```ts
 * import { parseRunAt } from "./timing.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseRunAt("2026-12-02T10:00:00+08:00"), { ok: true, value: Date.UTC(2026, 11, 2, 2) });
 * assert.equal(parseRunAt("2026-12-02 10:00").ok, false);
 * ```
 */
export function parseRunAt(value: unknown): Result<number> {
  const example = `an RFC 3339 time with its offset, such as "2026-12-02T10:00:00+08:00" or "2026-12-02T02:00:00Z"`;
  if (typeof value !== "string") return fail(`"run_at" must be ${example}, not ${show(value)}`);
  const m = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/.exec(
    value.trim(),
  );
  if (!m) {
    const noOffset = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(value.trim());
    return fail(
      noOffset
        ? `"run_at" ${show(value)} has no offset: add one, such as "+08:00", or "Z" for UTC`
        : `"run_at" must be ${example}, not ${show(value)}`,
    );
  }
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  const ms = m[7] === undefined ? 0 : Math.floor(Number(`0.${m[7]}`) * 1000);
  const offsetHours = m[10] === undefined ? 0 : Number(m[10]);
  const offsetMinutes = m[11] === undefined ? 0 : Number(m[11]);
  const daysInMonth = month >= 1 && month <= 12 ? new Date(Date.UTC(year, month, 0)).getUTCDate() : 0;
  if (
    day < 1 || day > daysInMonth || hour > 23 || minute > 59 || second > 60 || offsetHours > 23 || offsetMinutes > 59
  ) {
    return fail(`"run_at" ${show(value)} is not a real date and time; send ${example}`);
  }
  const utc = new Date(0);
  utc.setUTCFullYear(year, month - 1, day); // setUTCFullYear, not Date.UTC: years 0-99 stay as given
  utc.setUTCHours(hour, minute, second, ms); // a leap second (:60) is read as the next second
  const sign = m[9] === "-" ? -1 : 1;
  return { ok: true, value: utc.getTime() - sign * (offsetHours * 60 + offsetMinutes) * 60_000 };
}

/**
 * Reads a `unique_key`: text of 1 to {@linkcode MAX_KEY_LENGTH} characters. `undefined` gives
 * `undefined` (no key).
 *
 * @example
 * ```ts
 * import { parseUniqueKey } from "./timing.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseUniqueKey("order-17"), { ok: true, value: "order-17" });
 * assert.equal(parseUniqueKey("").ok, false);
 * ```
 */
export function parseUniqueKey(value: unknown): Result<string | undefined> {
  if (value === undefined) return { ok: true, value: undefined };
  if (typeof value !== "string" || value.length < 1 || value.length > MAX_KEY_LENGTH) {
    const what = typeof value === "string" ? `${value.length} characters long` : show(value);
    return fail(`"unique_key" must be text of 1 to ${MAX_KEY_LENGTH} characters, such as "order-17", not ${what}`);
  }
  return { ok: true, value };
}

/** The scheduling fields of one request, as they came (any may be missing). */
export interface TimingFields {
  priority?: unknown;
  delay?: unknown;
  run_at?: unknown;
  unique_key?: unknown;
}

/** The scheduling fields, read. */
export interface Timing {
  /** From -100 to 100; 0 when none was given. */
  priority: number;
  /** When the task may start, in ms since the epoch: `now` when neither `delay` nor `run_at` was given. */
  dueAt: number;
  /** Whether the task waits: `dueAt` is later than `now`. */
  delayed: boolean;
  /** The `unique_key`, if one was given. */
  uniqueKey?: string;
}

/** What {@linkcode parseTiming} reads against. */
export interface TimingOptions {
  /** The current time, in ms since the epoch. */
  now: number;
  /** How far ahead a task may be put (`--max-delay`); default {@linkcode DEFAULT_MAX_DELAY_MS}. */
  maxDelayMs?: number;
}

/**
 * Reads all the scheduling fields of a request: `priority`, `delay` or `run_at`, and `unique_key`.
 *
 * @example
 * ```ts
 * import { parseTiming } from "./timing.ts";
 * import assert from "node:assert/strict";
 * const now = Date.UTC(2026, 11, 1);
 * const got = parseTiming({ priority: 10, delay: "2m" }, { now });
 * assert.deepEqual(got, { ok: true, value: { priority: 10, dueAt: now + 120_000, delayed: true } });
 * const late = parseTiming({ delay: "45d" }, { now });
 * assert.equal(late.ok, false);
 * assert.match(!late.ok ? late.message : "", /past --max-delay 30d/);
 * ```
 */
export function parseTiming(fields: TimingFields, options: TimingOptions): Result<Timing> {
  const { now } = options;
  const maxDelayMs = options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
  const priority = parsePriority(fields.priority);
  if (!priority.ok) return priority;
  const uniqueKey = parseUniqueKey(fields.unique_key);
  if (!uniqueKey.ok) return uniqueKey;
  if (fields.delay !== undefined && fields.run_at !== undefined) {
    return fail(`give "delay" or "run_at", not both: "delay" waits a while, "run_at" names the time`);
  }
  let dueAt = now;
  if (fields.delay !== undefined) {
    const delay = parseDuration(fields.delay, "delay");
    if (!delay.ok) return delay;
    if (delay.value > maxDelayMs) {
      return fail(
        `"delay" ${show(fields.delay)} is past --max-delay ${formatDuration(maxDelayMs)}; send at most ${
          formatDuration(maxDelayMs)
        }`,
      );
    }
    dueAt = now + delay.value;
  } else if (fields.run_at !== undefined) {
    const at = parseRunAt(fields.run_at);
    if (!at.ok) return at;
    if (at.value - now > maxDelayMs) {
      return fail(
        `"run_at" ${show(fields.run_at)} is ${roughly(at.value - now)} ahead, past --max-delay ${
          formatDuration(maxDelayMs)
        }; send a time before ${new Date(now + maxDelayMs).toISOString()}`,
      );
    }
    dueAt = Math.max(now, at.value);
  }
  const value: Timing = { priority: priority.value, dueAt, delayed: dueAt > now };
  if (uniqueKey.value !== undefined) value.uniqueKey = uniqueKey.value;
  return { ok: true, value };
}

/**
 * A compiled key template: text with `{path}` fields filled from a task's data.
 * See {@linkcode compileTemplate}.
 */
export interface Template {
  /** The template as written in the config file. */
  readonly source: string;
  /** The fields it reads, as written (`"phone"`, `"data.to"`). */
  readonly fields: readonly string[];
  /** Fills the fields from `data`: the key, or a message naming the missing field. */
  render(data: unknown): Result<string>;
}

type Piece = string | { field: string; path: readonly string[] };

/**
 * Compiles a key template such as `"{phone}"` or `"sms:{data.to}"`. A field is a dot path:
 *
 * - a path that starts with `data` is read from the task's data itself: `{data}` is the whole data (a
 *   text payload, say), `{data.to}` its field `to`;
 * - any other path is read in the data: `{phone}` is `{data.phone}`, `{items.0.phone}` the `phone` of
 *   the first item (a field of the data named `data` is `{data.data}`).
 *
 * Text is filled in as it is, numbers and booleans as JSON, objects and arrays as JSON. `{{` and `}}`
 * stand for `{` and `}`. A rendered key must be 1 to {@linkcode MAX_KEY_LENGTH} characters. `what`
 * names the template in messages (default `"the key template"`).
 *
 * @example
 * ```ts
 * import { compileTemplate } from "./timing.ts";
 * import assert from "node:assert/strict";
 * const t = compileTemplate("sms:{data.to}");
 * assert.ok(t.ok);
 * if (t.ok) {
 *   assert.deepEqual(t.value.render({ to: "+33612345678" }), { ok: true, value: "sms:+33612345678" });
 *   const missing = t.value.render({ phone: "+33612345678" });
 *   assert.equal(missing.ok, false);
 *   assert.match(!missing.ok ? missing.message : "", /data\.to/);
 * }
 * assert.equal(compileTemplate("{phone").ok, false);
 * ```
 */
export function compileTemplate(source: string, what = "the key template"): Result<Template> {
  const pieces: Piece[] = [];
  let text = "";
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if ((c === "{" || c === "}") && source[i + 1] === c) {
      text += c;
      i++;
    } else if (c === "}") {
      return fail(`${what} ${show(source)} has a "}" that closes nothing; write "}}" for a literal "}"`);
    } else if (c === "{") {
      const end = source.indexOf("}", i + 1);
      if (end < 0) return fail(`${what} ${show(source)} has a "{" that is never closed; write "{{" for a literal "{"`);
      const field = source.slice(i + 1, end).trim();
      if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(field)) {
        return fail(
          `${what} ${show(source)}: {${
            source.slice(i + 1, end)
          }} is not a field; write a dot path such as {phone} or {data.to}`,
        );
      }
      if (text) pieces.push(text);
      text = "";
      const parts = field.split(".");
      pieces.push({ field, path: parts[0] === "data" ? parts.slice(1) : parts });
      i = end;
    } else {
      text += c;
    }
  }
  if (text) pieces.push(text);
  const fields = pieces.flatMap((p) => typeof p === "string" ? [] : [p.field]);
  if (fields.length === 0) {
    return fail(`${what} ${show(source)} has no field: every task would share one key; add one, such as {phone}`);
  }
  const render = (data: unknown): Result<string> => {
    let out = "";
    for (const p of pieces) {
      if (typeof p === "string") {
        out += p;
        continue;
      }
      let v: unknown = data;
      let depth = 0;
      for (; depth < p.path.length && v !== undefined; depth++) {
        const step = p.path[depth];
        if (typeof v !== "object" || v === null) {
          const at = ["data", ...p.path.slice(0, depth)].join(".");
          const kind = v === null ? "null" : typeof v === "string" ? "text" : typeof v;
          return fail(
            `the data has no data.${p.path.join(".")}, which ${what} ${show(source)} needs: ${at} is ${kind}, ` +
              `not an object with "${step}"`,
          );
        }
        // an own property only, never one of its prototype's; the cast: v is a non-null object (or array)
        v = Object.hasOwn(v, step) ? (v as Record<string, unknown>)[step] : undefined;
      }
      if (v === undefined) {
        const full = ["data", ...p.path].join(".");
        return fail(`the data has no ${full}, which ${what} ${show(source)} needs; send data with it`);
      }
      out += typeof v === "string" ? v : JSON.stringify(v);
    }
    if (out.length < 1 || out.length > MAX_KEY_LENGTH) {
      return fail(
        `${what} ${
          show(source)
        } gives a key of ${out.length} characters from this data; a key has 1 to ${MAX_KEY_LENGTH}`,
      );
    }
    return { ok: true, value: out };
  };
  return { ok: true, value: { source, fields, render } };
}

function fail(message: string): { ok: false; message: string } {
  return { ok: false, message };
}

/** A length of time for a message, to one decimal: `40.5d`, `2.5h`, `30.0m`. */
function roughly(ms: number): string {
  if (ms >= 86_400_000) return `${(ms / 86_400_000).toFixed(1)}d`;
  if (ms >= 3_600_000) return `${(ms / 3_600_000).toFixed(1)}h`;
  return `${(ms / 60_000).toFixed(1)}m`;
}

/** A value for a message: JSON, cut short. */
function show(value: unknown): string {
  let text: string;
  try {
    text = value === undefined
      ? "nothing"
      : typeof value === "number"
      ? String(value)
      : JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
