/**
 * Logging set-up for the server: `@logtape/logtape` with levelled, structured records, written as
 * text (coloured on a terminal) or JSON Lines, to stderr or a file, through a buffered sink that
 * writes once per event-loop turn instead of once per record.
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
  constructor(private out: { writeSync(p: Uint8Array): number }, private format: TextFormatter) {}
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

let active: { sink: BufferedSink; file?: Deno.FsFile } | undefined;

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
  let file: Deno.FsFile | undefined;
  if (opts.file) {
    try {
      file = Deno.openSync(opts.file, { append: true, create: true });
    } catch (e) {
      throw new Error(
        `cannot open log file ${opts.file}: ${(e as Error).message} — check the directory exists and is writable`,
      );
    }
  }
  const out = file ?? Deno.stderr;
  const format: TextFormatter = opts.format === "json"
    ? jsonLines
    : !file && Deno.stderr.isTerminal()
    ? getAnsiColorFormatter({ timestamp: "time", category: ".", value: plain })
    : getTextFormatter({ timestamp: "date-time-timezone", category: ".", value: plain });
  const sink = new BufferedSink(out, format);
  active = { sink, file };
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
  active.file?.close();
  active = undefined;
  await reset();
}

/** Writes pending records now (before `Deno.exit`). */
export function flushLogging(): void {
  active?.sink.flush();
}
