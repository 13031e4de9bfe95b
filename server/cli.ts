/**
 * `asynctask serve`: its flags, and the process around a {@linkcode TaskServer} — logging,
 * signals, graceful stop and exit codes.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { type FlagSpec, HELP_FLAG, parseFlags, readFlagFile, renderHelp, UsageError } from "../cli/flags.ts";
import { closeLogging, flushLogging, LOG_FORMATS, LOG_LEVELS, type LogOptions, setupLogging } from "../cli/log.ts";
import { formatDuration } from "../cli/units.ts";
import { DISPATCH_MODES, type DispatchMode } from "../task/dispatch.ts";
import type { JournalSync } from "./journal.ts";
import { DEFAULT_SERVE_OPTIONS as D, type ServeOptions, TaskServer } from "./server.ts";

/**
 * A stop signal that comes again sooner than this after the first is the same one delivered twice
 * (a terminal's Ctrl-C reaches both `deno task` and the server, and `deno task` forwards it), not
 * a person asking to stop at once.
 */
export const SAME_SIGNAL_MS = 500;

/** The flags of `asynctask serve`. */
export const SERVE_FLAGS: readonly FlagSpec[] = [
  {
    name: "host",
    kind: "string",
    default: D.host,
    valueName: "addr",
    help: "address to listen on; 0.0.0.0 for every interface",
  },
  { name: "port", kind: "int", default: D.port, min: 0, max: 65535, help: "TCP port; 0 picks a free one" },
  { name: "workers", kind: "int", default: D.workers, min: 1, max: 256, help: "worker threads in the task pool" },
  {
    name: "concurrency",
    kind: "int",
    default: D.concurrency,
    min: 1,
    max: 100_000,
    help: "tasks in flight per worker",
  },
  { name: "dispatch", kind: "string", default: D.dispatch, choices: DISPATCH_MODES, help: "which worker gets a task" },
  {
    name: "queue-size",
    kind: "int",
    default: D.queueSize,
    min: 0,
    max: 100_000_000,
    help: "tasks that may wait for a worker; beyond it: ERROR queue_full",
  },
  {
    name: "max-tasks-per-worker",
    kind: "int",
    default: D.maxTasksPerWorker,
    min: 0,
    help: "replace a worker after this many tasks; 0 = never",
  },
  {
    name: "worker-heap",
    kind: "size",
    default: D.workerHeap,
    min: 16 * 1024 * 1024,
    help: "heap limit of each worker; a handler that exhausts it stalls only its own worker",
  },
  {
    name: "worker-nice",
    kind: "int",
    default: D.workerNice,
    min: 0,
    max: 19,
    help: "CPU niceness of the worker threads (Linux): busy handlers yield to the network loop; 0 = same as it",
  },
  { name: "max-line", kind: "size", default: D.maxLine, min: 64, max: 64 * 1024 * 1024, help: "longest request line" },
  {
    name: "max-conns",
    kind: "int",
    default: D.maxConns,
    min: 1,
    help: "most connections at once; beyond it a new one gets ERROR too_many_connections",
  },
  {
    name: "idle-timeout",
    kind: "duration",
    default: D.idleTimeoutMs,
    min: 0,
    help: "close a connection silent this long with no task outstanding; 0 = never",
  },
  {
    name: "max-output",
    kind: "size",
    default: D.maxOutput,
    min: 1024,
    help: "replies that may wait for a client that does not read; beyond it the connection is closed",
  },
  {
    name: "task",
    kind: "string",
    default: D.defaultTask,
    valueName: "name",
    help: "task of text lines that name none",
  },
  {
    name: "module",
    kind: "list",
    valueName: "path",
    help: "load extra task handlers from a TypeScript/JavaScript module exporting `handlers` (repeatable)",
  },
  { name: "sms-delay", kind: "duration", default: D.smsDelayMs, min: 0, help: "how long the sms task takes" },
  {
    name: "result-ttl",
    kind: "duration",
    default: D.resultTtlMs,
    min: 0,
    help: "how long /status keeps a finished task",
  },
  { name: "max-results", kind: "int", default: D.maxResults, min: 0, help: "most finished tasks kept for /status" },
  {
    name: "task-timeout",
    kind: "duration",
    default: D.taskTimeoutMs,
    min: 0,
    help: "a task running longer ends FAILED timeout (or is retried); its handler's signal is aborted; 0 = no limit",
  },
  {
    name: "retries",
    kind: "int",
    default: D.retries,
    min: 0,
    max: 100,
    help: "run a failed task again up to this many times",
  },
  {
    name: "retry-backoff",
    kind: "duration",
    default: D.retryBackoffMs,
    min: 0,
    help: "delay before the first retry; doubles each time, with jitter",
  },
  {
    name: "retry-max-delay",
    kind: "duration",
    default: D.retryMaxDelayMs,
    min: 0,
    help: "longest delay between retries",
  },
  {
    name: "stats-interval",
    kind: "duration",
    default: D.statsIntervalMs,
    min: 0,
    help: "log a summary of activity this often (info); 0 = never",
  },
  {
    name: "shutdown-timeout",
    kind: "duration",
    default: 30_000,
    min: 0,
    help: "on SIGINT/SIGTERM, how long to wait for tasks",
  },
  {
    name: "journal",
    kind: "string",
    valueName: "file.db",
    help: "keep accepted tasks in this SQLite file: they survive crashes and restarts",
  },
  {
    name: "journal-sync",
    kind: "string",
    default: "full",
    choices: ["full", "normal"],
    help: "full: fsync every commit; normal: faster, the last moments may be lost on power loss",
  },
  {
    name: "token",
    kind: "string",
    env: "ASYNCTASK_TOKEN",
    valueName: "secret",
    help:
      "require `/auth <secret>` as each connection's first request (prefer the environment variable: argv is visible to other users)",
  },
  {
    name: "tls-cert",
    kind: "string",
    valueName: "cert.pem",
    help: "serve TLS with this PEM certificate (chain); needs --tls-key",
  },
  { name: "tls-key", kind: "string", valueName: "key.pem", help: "the PEM private key of --tls-cert" },
  {
    name: "log-level",
    kind: "string",
    default: "info",
    choices: LOG_LEVELS,
    help: "least severe level shown; debug shows each task's start and end",
  },
  {
    name: "log-format",
    kind: "string",
    default: "text",
    choices: LOG_FORMATS,
    help: "text for people, json for machines",
  },
  { name: "log-file", kind: "string", valueName: "path", help: "append logs to this file instead of stderr" },
  {
    name: "config",
    kind: "string",
    valueName: "file.json",
    help:
      "read flags, and the tasks map (command, webhook and module tasks), from a JSON file; flags on the command line win",
  },
  HELP_FLAG,
];

/** The `--help` text of `asynctask serve`. */
export const SERVE_HELP = renderHelp(
  "asynctask serve [flags]",
  "Runs the task server: answers every request at once, runs tasks in a pool of worker threads,\n" +
    "and sends each result back to the client that asked. Stop it with Ctrl-C (SIGINT) or SIGTERM:\n" +
    "it finishes queued and running tasks first; a second signal stops it at once. SIGHUP replaces\n" +
    "the workers one at a time (handler modules loaded anew) without losing or refusing a task.",
  SERVE_FLAGS,
);

/**
 * Runs `asynctask serve` until it is stopped; returns the process exit code.
 *
 * @example
 * ```ts ignore
 * Deno.exit(await runServe(["--port", "9501", "--workers", "4"]));
 * ```
 */
export async function runServe(args: string[]): Promise<number> {
  const flags = parseFlags("serve", SERVE_FLAGS, args, { configSections: ["tasks"] });
  if (flags.bool("help")) {
    console.log(SERVE_HELP);
    return 0;
  }
  const options: ServeOptions = {
    host: flags.str("host")!,
    port: flags.num("port"),
    workers: flags.num("workers"),
    concurrency: flags.num("concurrency"),
    dispatch: flags.str("dispatch") as DispatchMode,
    queueSize: flags.num("queue-size"),
    maxTasksPerWorker: flags.num("max-tasks-per-worker"),
    workerHeap: flags.num("worker-heap"),
    workerNice: flags.num("worker-nice"),
    maxLine: flags.num("max-line"),
    maxConns: flags.num("max-conns"),
    idleTimeoutMs: flags.num("idle-timeout"),
    maxOutput: flags.num("max-output"),
    defaultTask: flags.str("task")!,
    smsDelayMs: flags.num("sms-delay"),
    resultTtlMs: flags.num("result-ttl"),
    maxResults: flags.num("max-results"),
    statsIntervalMs: flags.num("stats-interval"),
    modules: flags.list("module").map((p) => p.startsWith("file:") ? p : pathToFileURL(resolve(p)).href),
    taskTimeoutMs: flags.num("task-timeout"),
    retries: flags.num("retries"),
    retryBackoffMs: flags.num("retry-backoff"),
    retryMaxDelayMs: flags.num("retry-max-delay"),
  };
  if (flags.config.sections.tasks !== undefined) {
    // Loaded only for a config with tasks: it brings the JSON Schema compiler (Ajv) along.
    const { parseTasks, TaskConfigError } = await import("../task/config.ts");
    try {
      options.tasks = parseTasks(flags.config.sections.tasks, flags.config.path!);
      // The built-in default, sms, exists only if the map declares it: otherwise text lines must
      // name their task (an explicit --task must name a declared one).
      if (flags.defaulted.has("task") && !options.tasks.some((t) => t.name === options.defaultTask)) {
        delete options.defaultTask;
      }
    } catch (e) {
      if (e instanceof TaskConfigError) throw new UsageError(e.message);
      throw e;
    }
  }
  const journal = flags.str("journal");
  if (journal !== undefined) options.journal = { path: journal, sync: flags.str("journal-sync") as JournalSync };
  const token = flags.str("token");
  if (token !== undefined) options.token = token;
  const tlsCert = flags.str("tls-cert");
  const tlsKey = flags.str("tls-key");
  if ((tlsCert === undefined) !== (tlsKey === undefined)) {
    throw new UsageError("asynctask serve: --tls-cert and --tls-key go together: give both, or neither for plain TCP");
  }
  if (tlsCert && tlsKey) {
    options.tls = { cert: readFlagFile(tlsCert, "--tls-cert"), key: readFlagFile(tlsKey, "--tls-key") };
  }
  const shutdownTimeout = flags.num("shutdown-timeout");
  await setupLogging({
    level: flags.str("log-level") as LogOptions["level"],
    format: flags.str("log-format") as LogOptions["format"],
    file: flags.str("log-file"),
  });
  const log = getLogger(["asynctask", "server"]);
  const server = await TaskServer.start(options);

  const stopped = Promise.withResolvers<number>();
  let firstSignalAt: number | undefined;
  const onSignal = (name: Deno.Signal) => async () => {
    if (firstSignalAt !== undefined) {
      const after = performance.now() - firstSignalAt;
      if (after < SAME_SIGNAL_MS) {
        // One Ctrl-C on `deno task serve` arrives twice: from the terminal (which signals the
        // whole foreground process group) and forwarded by `deno task`; a service manager that
        // signals the whole group does the same. That is one request to stop, not two.
        log.debug("{signal} again {ms} ms after the first: taken as the same one, delivered twice", {
          signal: name,
          ms: Math.round(after),
        });
        return;
      }
      log.error("second {signal}: stopping now; {tasks} unfinished task(s) get no final reply", {
        signal: name,
        tasks: server.unfinished,
      });
      flushLogging();
      Deno.exit(130);
    }
    firstSignalAt = performance.now();
    log.info(
      "{signal}: stopping — no new tasks; finishing {tasks} queued and running (up to {timeout}); send {signal} again to stop now",
      {
        signal: name,
        tasks: server.unfinished,
        timeout: formatDuration(shutdownTimeout),
      },
    );
    const report = await server.shutdown(shutdownTimeout);
    if (report.unfinished > 0) {
      log.error(
        "stopped with {tasks} task(s) unfinished after --shutdown-timeout; they were failed with shutting_down",
        {
          tasks: report.unfinished,
        },
      );
      stopped.resolve(1);
    } else {
      log.info("stopped: every accepted task finished and was answered");
      stopped.resolve(0);
    }
  };
  const onHangup = () => {
    log.info("SIGHUP: reloading — replacing the workers one at a time with fresh ones (handler modules loaded anew)");
    server.reload();
  };
  const handlers = [
    ...(["SIGINT", "SIGTERM"] as const).map((s) => [s, onSignal(s)] as const),
    ["SIGHUP", onHangup] as const,
  ];
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  const code = await stopped.promise;
  for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
  await closeLogging();
  return code;
}
