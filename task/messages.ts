/**
 * The messages between the server (main isolate) and its pool workers. Both directions carry
 * batches: one `postMessage` per worker per event-loop turn, not one per task (measured: a batch
 * of 64 is ~4x cheaper per task than single messages).
 *
 * A successful result crosses as JSON text, made in the worker ({@linkcode encodeResult}): a result
 * that cannot become JSON fails its own task there, and the main isolate never formats a value
 * that a handler built.
 *
 * @module
 */
import type { TaskLogLevel } from "./types.ts";
import type { HandlerSettings } from "./spec.ts";

/** Values per job in a `run` message: id, attempt, task, data. */
export const JOB_FIELDS = 4;
/** Values per successful run in a `settled` message's `done`: id, attempt, ms, the result's JSON text. */
export const DONE_FIELDS = 4;
/** The default largest result, as JSON text, that a worker sends back (`--max-result`): 8 MiB. */
export const DEFAULT_MAX_RESULT_BYTES = 8 * 1024 * 1024;
/** How many command process groups one worker can have alive at once in its {@linkcode ChildGroups} table. */
export const CHILD_SLOTS = 1024;

/** A task as a worker sees it: its data is already validated and normalised by the handler. */
export interface JobMessage {
  id: number;
  task: string;
  data: unknown;
  attempt: number;
}

/**
 * Main → worker. `run` carries a batch of jobs flattened into one array, {@linkcode JOB_FIELDS}
 * values per job (`id, attempt, task, data, …`): measured, cloning one flat array costs less than
 * cloning an object per job. `abort` asks the handlers of those tasks to stop (their signal is aborted).
 */
export type ToWorker =
  | {
    type: "init";
    settings: HandlerSettings;
    /** Results longer than this, as JSON text in UTF-8 bytes, fail their task (`--max-result`). */
    maxResultBytes: number;
    /** Heap plus external memory (ArrayBuffers) above which the worker reports itself (`--worker-heap`). */
    memoryLimit: number;
  }
  | { type: "run"; jobs: unknown[] }
  | { type: "abort"; ids: number[]; reason?: "timeout" | "shutdown" };

/** Codes a task can end with besides success. */
export type FailureCode = "handler_error" | "timeout" | "worker_crashed" | "shutting_down" | "cancelled";

/**
 * How one run of a task ended. `ms` is the handler's own run time. `permanent` marks a failure the
 * handler said retrying cannot fix (`PermanentError` in `types.ts`); `retryAfterMs` a delay the
 * handler asked for before the retry (`RetryLaterError`).
 */
export type Outcome =
  /** `json`: the result as JSON text, made by the worker (`undefined` became `null`). */
  | { id: number; attempt?: number; ok: true; json: string; ms: number }
  | {
    id: number;
    /** Which run of the task this is: a late outcome of an earlier run is not taken for a later one's. */
    attempt?: number;
    ok: false;
    code: FailureCode;
    message: string;
    ms: number;
    permanent?: boolean;
    retryAfterMs?: number;
  };

/** A running task's latest `ctx.progress()` report. */
export interface ProgressReport {
  id: number;
  attempt?: number;
  percent: number;
  message?: string;
}

/** A line a handler logged through `ctx.logger`. */
export interface TaskLogRecord {
  id: number;
  attempt?: number;
  level: TaskLogLevel;
  message: string;
  properties?: Record<string, unknown>;
}

/** One run of a task: a task id and its attempt. */
export interface RunRef {
  id: number;
  attempt: number;
}

/**
 * Worker → main. `settled` carries the runs that ended in a turn — successes flattened in `done`
 * ({@linkcode DONE_FIELDS} values each), failures as `outcomes` — with the progress reports and
 * log lines made before them (the server handles those first, so a task's PROGRESS always precedes
 * its final reply). `aborted` acknowledges an `abort`: it proves the worker's event loop still
 * turns. `fatal` reports an error that escaped a handler; the worker then ends itself. `blame`
 * names the run whose code threw (or closed the worker), when the worker could tell.
 */
export type FromWorker =
  | { type: "settled"; done?: unknown[]; outcomes: Outcome[]; progress?: ProgressReport[]; logs?: TaskLogRecord[] }
  | { type: "aborted"; ids: number[] }
  /** The worker's OS thread id (Linux), so that the pool can lower the priority of a blocked worker. */
  | { type: "thread"; tid: number }
  /** The worker has loaded its handlers (or failed to): its tasks' timeouts count from now. */
  | { type: "ready" }
  | { type: "fatal"; message: string; blame?: RunRef }
  /** A handler is closing its own worker (`self.close()`): the `exit` that follows is that run's doing. */
  | { type: "closing"; blame?: RunRef }
  /**
   * The worker's heap plus external memory (ArrayBuffers, which the heap limit does not bound) is
   * over `memoryLimit`: the pool replaces it. Sent only while handlers run.
   */
  | { type: "memory"; bytes: number }
  /** What the worker's isolate holds now (heap and external memory), every few seconds: for /stats and the dashboard. */
  | { type: "usage"; bytes: number };

/**
 * A byte count for messages, rounded: `1.1 GiB`, `300 MiB`, `12 KiB`, `512 bytes`.
 *
 * @example
 * ```ts
 * import { sizeText } from "./messages.ts";
 * import assert from "node:assert/strict";
 * assert.equal(sizeText(1.1 * 1024 ** 3), "1.1 GiB");
 * assert.equal(sizeText(512 * 1024 ** 2), "512 MiB");
 * ```
 */
export function sizeText(bytes: number): string {
  for (const [unit, factor] of [["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]] as const) {
    if (bytes >= factor) {
      const n = bytes / factor;
      return `${n >= 100 ? Math.round(n) : Math.round(n * 10) / 10} ${unit}`;
    }
  }
  return `${bytes} bytes`;
}

/**
 * A successful result as the JSON text that goes back to the server, or why it cannot go:
 * `JSON.stringify` (so `undefined` is `null`, and non-finite numbers become `null`), then the size
 * limit (`maxBytes` of UTF-8). Runs in the worker, where a failure is that task's alone.
 *
 * @example
 * ```ts
 * import { encodeResult } from "./messages.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(encodeResult({ n: 1 }, 1024), { ok: true, json: '{"n":1}' });
 * assert.deepEqual(encodeResult(undefined, 1024), { ok: true, json: "null" });
 * const big = encodeResult({ total: 10n }, 1024);
 * assert.equal(big.ok, false);
 * if (!big.ok) assert.match(big.message, /BigInt value 10n at result\.total/);
 * ```
 */
export function encodeResult(
  result: unknown,
  maxBytes: number,
): { ok: true; json: string } | { ok: false; message: string } {
  let json: string | undefined;
  try {
    json = JSON.stringify(result);
  } catch (e) {
    return { ok: false, message: `the result cannot be sent as JSON: ${whyNotJson(result, e)}` };
  }
  if (json === undefined) {
    if (result !== undefined) {
      const what = typeof result === "function" ? "a function" : `a ${typeof result}`;
      return { ok: false, message: `the result cannot be sent as JSON: it is ${what} — ${PLAIN_DATA}` };
    }
    json = "null";
  }
  // UTF-8 takes at least one byte per UTF-16 unit and at most three: count only when it matters.
  if (json.length * 3 > maxBytes) {
    const bytes = json.length > maxBytes ? json.length : utf8Length(json);
    if (bytes > maxBytes) {
      return {
        ok: false,
        message: `the result is ${sizeText(bytes)}, over the limit of ${sizeText(maxBytes)} (--max-result)`,
      };
    }
  }
  return { ok: true, json };
}

const PLAIN_DATA = "return plain data (objects, arrays, strings, numbers, booleans, null)";

function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

/** A property path for messages: `result.items[3].total`, `result["a b"]`. */
function pathOf(keys: (string | number)[]): string {
  let out = "result";
  for (const k of keys) {
    out += typeof k === "number" ? `[${k}]` : /^[A-Za-z_$][\w$]*$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`;
  }
  return out;
}

/**
 * Why `JSON.stringify(value)` threw, found by walking the value the way it does: the first BigInt,
 * cycle, or throwing `toJSON()` or getter, with where it is. Called only after a failure.
 */
function whyNotJson(value: unknown, error: unknown): string {
  const ancestors: unknown[] = [];
  const keys: (string | number)[] = [];
  const walk = (holderKey: string, v: unknown): string | undefined => {
    if ((typeof v === "object" && v !== null) || typeof v === "bigint") {
      // Cast: any object or BigInt may carry a toJSON, as JSON.stringify looks for it on each.
      const toJSON = (v as { toJSON?: unknown }).toJSON;
      if (typeof toJSON === "function") {
        try {
          v = toJSON.call(v, holderKey);
        } catch (e) {
          return `toJSON() of ${pathOf(keys)} threw: ${e instanceof Error ? e.message : String(e)}`;
        }
      }
    }
    if (v instanceof Number || v instanceof String || v instanceof Boolean) v = v.valueOf();
    if (typeof v === "bigint") return `BigInt value ${v}n at ${pathOf(keys)} — return a string or number instead`;
    if (typeof v !== "object" || v === null) return undefined;
    if (ancestors.includes(v)) {
      const at = ancestors.indexOf(v);
      return `a cycle: ${pathOf(keys)} refers back to ${pathOf(keys.slice(0, at))} — ${PLAIN_DATA}, without cycles`;
    }
    ancestors.push(v);
    try {
      const entries: (string | number)[] = Array.isArray(v) ? [...v.keys()] : Object.keys(v);
      for (const k of entries) {
        let child: unknown;
        try {
          // Cast: v is an object or an array here, and k one of its own keys.
          child = (v as Record<string | number, unknown>)[k];
        } catch (e) {
          return `reading ${pathOf([...keys, k])} threw: ${e instanceof Error ? e.message : String(e)}`;
        }
        keys.push(k);
        const why = walk(String(k), child);
        keys.pop();
        if (why) return why;
      }
      return undefined;
    } finally {
      ancestors.pop();
    }
  };
  let why: string | undefined;
  try {
    why = walk("", value);
  } catch {
    // nested deeper than the stack: what JSON.stringify said is the best there is
  }
  if (why) return why;
  const message = error instanceof Error ? error.message : String(error);
  return error instanceof RangeError ? `it is nested too deeply (${message}) — ${PLAIN_DATA}` : message;
}

/**
 * The process groups of the `command` children a worker has alive, in memory shared with the main
 * isolate: the worker writes a group id when it starts a program and clears it once the program's
 * group is dead; the main isolate reads the table to SIGKILL what is left whenever the worker ends
 * (terminated, crashed) or the process exits — when the worker can no longer run code. Slots hold
 * 0 or a group id; {@linkcode CHILD_SLOTS} of them (a full table only loses that safety net).
 */
export class ChildGroups {
  readonly #slots: Int32Array;

  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(CHILD_SLOTS * 4)) {
    this.#slots = new Int32Array(buffer);
  }

  /** Records a group id (the worker side); false when the table is full. */
  add(pgid: number): boolean {
    for (let i = 0; i < this.#slots.length; i++) {
      if (Atomics.compareExchange(this.#slots, i, 0, pgid) === 0) return true;
    }
    return false;
  }

  /** Forgets a group id (the worker side), once nothing of the group is left. */
  remove(pgid: number): void {
    for (let i = 0; i < this.#slots.length; i++) {
      if (Atomics.compareExchange(this.#slots, i, pgid, 0) === pgid) return;
    }
  }

  /** The group ids recorded now. */
  list(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.#slots.length; i++) {
      const pgid = Atomics.load(this.#slots, i);
      if (pgid !== 0) out.push(pgid);
    }
    return out;
  }

  /** SIGKILLs every recorded group (the main side, synchronously) and clears the table. */
  killAll(): number {
    let killed = 0;
    for (let i = 0; i < this.#slots.length; i++) {
      const pgid = Atomics.exchange(this.#slots, i, 0);
      if (pgid === 0) continue;
      killed++;
      try {
        Deno.kill(-pgid, "SIGKILL");
      } catch {
        // ESRCH: the group is gone already
      }
    }
    return killed;
  }
}
