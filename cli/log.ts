/**
 * Logging set-up for the server: `@logtape/logtape` with levelled, structured records, written as
 * text (coloured on a terminal) or JSON Lines, to stderr or a file, through a buffered sink that
 * writes once per event-loop turn instead of once per record. A log file can be reopened at its path
 * ({@linkcode reopenLogFile}, on SIGUSR1), for log rotation.
 *
 * Modules log with `getLogger(["asynctask", ...])`; nothing is printed until {@linkcode setupLogging}.
 *
 * @module
 */
import {
  configure,
  getAnsiColorFormatter,
  getTextFormatter,
  type LogLevel,
  type LogRecord,
  reset,
  type Sink,
  type TextFormatter,
} from "@logtape/logtape";

/** Levels accepted by `--log-level`. */
export const LOG_LEVELS = ["debug", "info", "warning", "error"] as const;
/** Formats accepted by `--log-format`. */
export const LOG_FORMATS = ["text", "json"] as const;

/** What `--log-level`, `--log-format` and `--log-file` set. */
export interface LogOptions {
  level: (typeof LOG_LEVELS)[number];
  format: (typeof LOG_FORMATS)[number];
  /** Append to this file instead of writing to stderr. */
  file?: string;
}

/** A sink that gathers formatted records and writes them in one `writeSync` per turn. */
class BufferedSink {
  #pending: string[] = [];
  #scheduled = false;
  #encoder = new TextEncoder();
  /** Where the lines go; replaced when the log file is reopened. */
  out: { writeSync(p: Uint8Array): number };
  constructor(out: { writeSync(p: Uint8Array): number }, private format: TextFormatter) {
    this.out = out;
  }
  readonly sink: Sink = (record: LogRecord) => {
    this.#pending.push(this.format(record));
    if (!this.#scheduled) {
      this.#scheduled = true;
      setTimeout(() => this.flush(), 0);
    }
  };
  flush(): void {
    this.#scheduled = false;
    if (this.#pending.length === 0) return;
    let data = this.#encoder.encode(this.#pending.join(""));
    this.#pending = [];
    try {
      while (data.length > 0) data = data.subarray(this.out.writeSync(data));
    } catch {
      // stderr or the log file is gone (closed pipe, full disk): drop the records, keep serving.
    }
  }
}

/** Strings as they are (no quotes) in text logs; anything else as Deno shows it. */
const plain = (v: unknown): string => typeof v === "string" ? v : Deno.inspect(v, { colors: false });

/**
 * JSON Lines: `@timestamp`, `level`, `message` (values inserted as in text logs, strings unquoted),
 * `logger`, and the structured `properties`.
 */
const jsonLines: TextFormatter = (r: LogRecord) =>
  JSON.stringify({
    "@timestamp": new Date(r.timestamp).toISOString(),
    level: r.level === "warning" ? "WARN" : r.level.toUpperCase(),
    message: r.message.map((part, i) => (i % 2 === 0 ? String(part) : plain(part))).join(""),
    logger: r.category.join("."),
    properties: r.properties,
  }) + "\n";

let active: { sink: BufferedSink; file?: { path: string; handle: Deno.FsFile } } | undefined;

/** Opens a log file for appending (created if missing), or throws an error that says what to check. */
function openLogFile(path: string, doing: string): Deno.FsFile {
  try {
    return Deno.openSync(path, { append: true, create: true });
  } catch (e) {
    throw new Error(
      `cannot ${doing} log file ${path}: ${(e as Error).message} — check the directory exists and is writable`,
    );
  }
}

/**
 * Configures logging for the whole process. Call {@linkcode closeLogging} before exiting.
 *
 * @example
 * ```ts
 * import { closeLogging, setupLogging } from "./log.ts";
 * import { getLogger } from "@logtape/logtape";
 * await setupLogging({ level: "info", format: "json" });
 * getLogger(["asynctask", "demo"]).info("listening on {addr}", { addr: "127.0.0.1:9501" });
 * await closeLogging();
 * ```
 */
export async function setupLogging(opts: LogOptions): Promise<void> {
  await closeLogging();
  const file = opts.file ? openLogFile(opts.file, "open") : undefined;
  const out = file ?? Deno.stderr;
  const format: TextFormatter = opts.format === "json"
    ? jsonLines
    : !file && Deno.stderr.isTerminal()
    ? getAnsiColorFormatter({ timestamp: "time", category: ".", value: plain })
    : getTextFormatter({ timestamp: "date-time-timezone", category: ".", value: plain });
  const sink = new BufferedSink(out, format);
  active = { sink, file: file && opts.file ? { path: opts.file, handle: file } : undefined };
  await configure({
    reset: true,
    sinks: { main: sink.sink },
    loggers: [
      { category: ["asynctask"], lowestLevel: opts.level as LogLevel, sinks: ["main"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["main"] },
    ],
  });
}

/** Flushes pending records and closes the log file, if any. */
export async function closeLogging(): Promise<void> {
  if (!active) return;
  active.sink.flush();
  active.file?.handle.close();
  active = undefined;
  await reset();
}

/** Writes pending records now (before `Deno.exit`). */
export function flushLogging(): void {
  active?.sink.flush();
}

/**
 * Opens the log file anew at its path and writes there from now on; the file written so far is
 * closed once the records pending for it are written. After `mv asynctask.log asynctask.log.1`, this
 * starts a new `asynctask.log` (the server does it on SIGUSR1). Returns the path reopened, or
 * `undefined` when logs go to stderr.
 *
 * @example
 * ```ts
 * import { closeLogging, reopenLogFile, setupLogging } from "./log.ts";
 * import { getLogger } from "@logtape/logtape";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await setupLogging({ level: "info", format: "text", file: `${dir}/app.log` });
 * const log = getLogger(["asynctask", "demo"]);
 * log.info("before the rotation");
 * await Deno.rename(`${dir}/app.log`, `${dir}/app.log.1`);
 * assert.equal(reopenLogFile(), `${dir}/app.log`);
 * log.info("after the rotation");
 * await closeLogging();
 * assert.match(await Deno.readTextFile(`${dir}/app.log.1`), /before the rotation/);
 * assert.match(await Deno.readTextFile(`${dir}/app.log`), /after the rotation/);
 * await Deno.remove(dir, { recursive: true });
 * ```
 * @throws {Error} when the path cannot be opened; logs then go on to the file open so far.
 */
export function reopenLogFile(): string | undefined {
  const file = active?.file;
  if (!active || !file) return undefined;
  const handle = openLogFile(file.path, "reopen");
  active.sink.flush();
  active.sink.out = handle;
  active.file = { path: file.path, handle };
  file.handle.close();
  return file.path;
}
