/**
 * The options of `asynctask serve`, declared once. From this table come the flags and their
 * parsing (`server/cli.ts`), the typed {@linkcode ServeOptions} the server runs with, `--help`,
 * the config file's JSON Schema (`asynctask.schema.json`) and `docs/configuration.md`
 * (`deno task docs`). Durations are milliseconds and sizes bytes once parsed.
 *
 * @example
 * ```ts
 * import { DEFAULT_SERVE_OPTIONS } from "./options.ts";
 * import assert from "node:assert/strict";
 * assert.equal(DEFAULT_SERVE_OPTIONS.port, 9501);
 * assert.equal(DEFAULT_SERVE_OPTIONS.idleTimeoutMs, 300_000);
 * ```
 *
 * @module
 */
import { defaults, defineOptions, type OptionValues } from "../cli/options.ts";
import { LOG_FORMATS, LOG_LEVELS } from "../cli/log.ts";
import { DISPATCH_MODES } from "../task/dispatch.ts";
import type { TaskSpec } from "../task/spec.ts";
import type { ScheduleSpec } from "../task/schedule.ts";

const MiB = 1024 * 1024;

/** Every option of `asynctask serve`. */
export const SERVE_OPTIONS = defineOptions({
  // --- listening
  host: {
    flag: "host",
    kind: "string",
    default: "127.0.0.1",
    valueName: "addr",
    group: "Listening",
    help: "address to listen on; 0.0.0.0 for every interface",
  },
  port: {
    flag: "port",
    kind: "int",
    default: 9501,
    min: 0,
    max: 65535,
    group: "Listening",
    help: "TCP port; 0 picks a free one",
  },
  maxConns: {
    flag: "max-conns",
    kind: "int",
    default: 10_000,
    min: 1,
    group: "Listening",
    help: "most connections at once; beyond it a new one gets ERROR too_many_connections",
  },
  acceptHoldMs: {
    flag: "accept-hold",
    kind: "duration",
    default: 2,
    min: 0,
    max: 100,
    group: "Listening",
    help:
      "how long an ACCEPTED may wait to go out in one write with its task's final reply, when the client has that one task in flight (request–response): a fast task then costs one socket write instead of two; 0 = write it at once",
  },
  idleTimeoutMs: {
    flag: "idle-timeout",
    kind: "duration",
    default: 300_000,
    min: 0,
    group: "Listening",
    help: "close a connection silent this long with no task outstanding; 0 = never",
  },
  maxLine: {
    flag: "max-line",
    kind: "size",
    default: MiB,
    min: 64,
    max: 64 * MiB,
    group: "Listening",
    help: "longest request line",
  },
  maxOutput: {
    flag: "max-output",
    kind: "size",
    default: 8 * MiB,
    min: 1024,
    group: "Listening",
    help: "replies that may wait for a client that does not read; beyond it the connection is closed",
  },
  handshakeTimeoutMs: {
    flag: "handshake-timeout",
    kind: "duration",
    default: 10_000,
    min: 1,
    group: "Listening",
    help: "close a TLS connection that has not finished its handshake after this long",
  },
  authTimeoutMs: {
    flag: "auth-timeout",
    kind: "duration",
    default: 10_000,
    min: 0,
    group: "Security",
    help: "with --token, close a connection that has not sent a good /auth after this long; 0 = never",
  },
  maxUnauthConns: {
    flag: "max-unauth-conns",
    kind: "int",
    default: 1000,
    min: 1,
    group: "Security",
    help:
      "with --token, most connections at once that have not authenticated yet; beyond it a new one is refused, so that strangers cannot fill --max-conns",
  },
  token: {
    flag: "token",
    kind: "string",
    env: "ASYNCTASK_TOKEN",
    valueName: "secret",
    group: "Security",
    help:
      "require `/auth <secret>` as each connection's first request (prefer the environment variable: argv is visible to other users)",
  },
  tokenFile: {
    flag: "token-file",
    kind: "string",
    valueName: "path",
    group: "Security",
    help:
      "read the token from this file's first line: unlike --token and ASYNCTASK_TOKEN, it is then in neither the command line nor the environment that /proc shows to processes of the same user, command tasks included",
  },
  tlsCert: {
    flag: "tls-cert",
    kind: "string",
    valueName: "cert.pem",
    group: "Security",
    help: "serve TLS with this PEM certificate (chain); needs --tls-key",
  },
  tlsKey: {
    flag: "tls-key",
    kind: "string",
    valueName: "key.pem",
    group: "Security",
    help: "the PEM private key of --tls-cert",
  },
  // --- the pool
  workers: {
    flag: "workers",
    kind: "int",
    default: 4,
    min: 1,
    max: 256,
    group: "Workers",
    help: "worker threads in the task pool",
  },
  concurrency: {
    flag: "concurrency",
    kind: "int",
    default: 64,
    min: 1,
    max: 100_000,
    group: "Workers",
    help: "tasks in flight per worker",
  },
  dispatch: {
    flag: "dispatch",
    kind: "string",
    default: "least-busy",
    choices: DISPATCH_MODES,
    group: "Workers",
    help: "which worker gets a task",
  },
  queueSize: {
    flag: "queue-size",
    kind: "int",
    default: 100_000,
    min: 0,
    max: 100_000_000,
    group: "Workers",
    help: "tasks that may wait for a worker; beyond it: ERROR queue_full",
  },
  maxTasksPerWorker: {
    flag: "max-tasks-per-worker",
    kind: "int",
    default: 0,
    min: 0,
    group: "Workers",
    help: "replace a worker after this many tasks; 0 = never",
  },
  workerHeap: {
    flag: "worker-heap",
    kind: "size",
    default: 512 * MiB,
    min: 16 * MiB,
    group: "Workers",
    help:
      "memory limit of each worker, its heap and ArrayBuffers together; a worker over it is replaced (its suspect task fails worker_crashed)",
  },
  workerNice: {
    flag: "worker-nice",
    kind: "int",
    default: 10,
    min: 0,
    max: 19,
    group: "Workers",
    help: "CPU niceness of the worker threads (Linux): busy handlers yield to the network loop; 0 = same as it",
  },
  // --- tasks
  defaultTask: {
    flag: "task",
    kind: "string",
    default: "sms",
    valueName: "name",
    group: "Tasks",
    help: "task of text lines that name none",
  },
  modules: {
    flag: "module",
    kind: "list",
    default: [],
    valueName: "path",
    group: "Tasks",
    help: "load extra task handlers from a TypeScript/JavaScript module exporting `handlers` (repeatable)",
  },
  smsDelayMs: {
    flag: "sms-delay",
    kind: "duration",
    default: 5000,
    min: 0,
    group: "Tasks",
    help: "how long the sms task takes",
  },
  taskTimeoutMs: {
    flag: "task-timeout",
    kind: "duration",
    default: 60_000,
    min: 0,
    group: "Tasks",
    help: "a task running longer ends FAILED timeout (or is retried); its handler's signal is aborted; 0 = no limit",
  },
  maxDelayMs: {
    flag: "max-delay",
    kind: "duration",
    default: 30 * 24 * 3600_000,
    min: 0,
    group: "Tasks",
    help: 'the furthest ahead a task may be put ("delay", "run_at"); beyond it: ERROR invalid_data',
  },
  retries: {
    flag: "retries",
    kind: "int",
    default: 0,
    min: 0,
    max: 100,
    group: "Tasks",
    help: "run a failed task again up to this many times",
  },
  retryBackoffMs: {
    flag: "retry-backoff",
    kind: "duration",
    default: 1000,
    min: 0,
    group: "Tasks",
    help: "delay before the first retry; doubles each time, with jitter",
  },
  retryMaxDelayMs: {
    flag: "retry-max-delay",
    kind: "duration",
    default: 60_000,
    min: 0,
    group: "Tasks",
    help: "longest delay between retries",
  },
  // --- results
  resultTtlMs: {
    flag: "result-ttl",
    kind: "duration",
    default: 600_000,
    min: 0,
    group: "Results",
    help: "how long /status keeps a finished task",
  },
  maxResults: {
    flag: "max-results",
    kind: "int",
    default: 100_000,
    min: 0,
    group: "Results",
    help: "most finished tasks kept for /status (oldest forgotten first)",
  },
  maxResultsSize: {
    flag: "max-results-size",
    kind: "size",
    default: 256 * MiB,
    min: 0,
    group: "Results",
    help: "most bytes of finished tasks' results and errors kept for /status (oldest forgotten first)",
  },
  maxResultBytes: {
    flag: "max-result",
    kind: "size",
    default: 8 * MiB,
    min: 1024,
    group: "Results",
    help:
      "largest result of one task, as JSON; a bigger one fails its task with handler_error (at most --max-output, so that every result fits a connection's replies)",
  },
  maxQueueBytes: {
    flag: "max-queue-bytes",
    kind: "size",
    default: 256 * MiB,
    min: 0,
    group: "Workers",
    help: "most bytes of request data held by unfinished tasks; beyond it: ERROR queue_full; 0 = no limit",
  },
  keepFailedMs: {
    flag: "keep-failed",
    kind: "duration",
    default: 7 * 24 * 3600_000,
    min: 0,
    group: "Results",
    help:
      "how long a failed task is kept, with its data, to be listed (/tasks failed), retried (/retry) or discarded; in the journal too",
  },
  keepFailedSize: {
    flag: "keep-failed-size",
    kind: "size",
    default: 64 * MiB,
    min: 0,
    group: "Results",
    help: "most bytes of failed tasks (data and error) kept in memory (oldest forgotten first)",
  },
  // --- the journal
  journal: {
    flag: "journal",
    kind: "string",
    valueName: "file.db",
    group: "Journal",
    help: "keep accepted tasks in this SQLite file: they survive crashes and restarts",
  },
  journalSync: {
    flag: "journal-sync",
    kind: "string",
    default: "full",
    choices: ["full", "normal"],
    group: "Journal",
    help: "full: fsync every commit; normal: faster, the last moments may be lost on power loss",
  },
  journalReset: {
    flag: "journal-reset",
    kind: "boolean",
    default: false,
    commandLineOnly: true,
    group: "Journal",
    help:
      "start with an empty journal when the one at --journal is damaged, keeping the damaged file renamed beside it",
  },
  // --- the broker
  broker: {
    flag: "broker",
    kind: "string",
    valueName: "redis://host:port/db",
    group: "Broker",
    help:
      "share one queue with every server on this Redis (redis://[user:password@]host:port/db, rediss:// for TLS; the password may be in ASYNCTASK_BROKER_PASSWORD instead): a task accepted by any server runs on whichever has room",
  },
  brokerPrefix: {
    flag: "broker-prefix",
    kind: "string",
    default: "asynctask",
    valueName: "name",
    group: "Broker",
    help: "prefix of the broker's Redis keys: servers with the same prefix share their tasks",
  },
  brokerVisibilityMs: {
    flag: "broker-visibility",
    kind: "duration",
    default: 30_000,
    min: 300,
    group: "Broker",
    help:
      "how long a server may stay silent before another one takes over its tasks (they run again); running tasks are renewed every third of it",
  },
  brokerCa: {
    flag: "broker-ca",
    kind: "string",
    valueName: "ca.pem",
    group: "Broker",
    help: "CA certificate that signed Redis's certificate, for rediss:// with a private CA",
  },
  reusePort: {
    flag: "reuse-port",
    kind: "boolean",
    default: false,
    group: "Listening",
    help:
      "let several servers listen on the same port (SO_REUSEPORT, Linux): the kernel spreads connections among them; with --broker they share the tasks too",
  },
  // --- HTTP: dashboard, metrics, probes
  http: {
    flag: "http",
    kind: "string",
    valueName: "[host:]port",
    group: "HTTP",
    help:
      "also serve the live dashboard, /metrics (Prometheus), /healthz and /readyz over HTTP on this address (host 127.0.0.1 unless given); they need --token when it is set, and use HTTPS with --tls-cert",
  },
  // --- the process
  shutdownTimeoutMs: {
    flag: "shutdown-timeout",
    kind: "duration",
    default: 30_000,
    min: 0,
    group: "Process",
    help: "on SIGINT/SIGTERM, how long to wait for tasks",
  },
  statsIntervalMs: {
    flag: "stats-interval",
    kind: "duration",
    default: 10_000,
    min: 0,
    group: "Process",
    help: "log a summary of activity this often (info); 0 = never",
  },
  logLevel: {
    flag: "log-level",
    kind: "string",
    default: "info",
    choices: LOG_LEVELS,
    group: "Process",
    help: "least severe level shown; debug shows each task's start and end",
  },
  logFormat: {
    flag: "log-format",
    kind: "string",
    default: "text",
    choices: LOG_FORMATS,
    group: "Process",
    help: "text for people, json for machines",
  },
  logFile: {
    flag: "log-file",
    kind: "string",
    valueName: "path",
    group: "Process",
    help: "append logs to this file instead of stderr",
  },
  config: {
    flag: "config",
    kind: "string",
    valueName: "file.json",
    commandLineOnly: true,
    group: "Process",
    help:
      "read options, and the tasks map (command, webhook and module tasks), from a JSON file; flags on the command line win",
  },
  help: { flag: "help", kind: "boolean", default: false, short: "h", commandLineOnly: true, help: "show this help" },
});

/** The options as parsed from the table. */
export type ServeOptionValues = OptionValues<typeof SERVE_OPTIONS>;

/**
 * What a server runs with: the table's values, less what only the command line uses, plus what is
 * read from files (the tasks map of `--config`, the PEM texts of `--tls-cert`/`--tls-key`).
 */
export type ServeOptions =
  & Omit<
    ServeOptionValues,
    "config" | "help" | "logLevel" | "logFormat" | "logFile" | "tlsCert" | "tlsKey" | "tokenFile" | "defaultTask"
  >
  & {
    /** The task of text lines and requests that name none; none: they must name one (a config whose tasks map lacks sms). */
    defaultTask?: string;
    /** The operator's tasks: the config file's `tasks` map (see `task/config.ts`). */
    tasks?: TaskSpec[];
    /** Periodic tasks: the config file's `schedules` map (see `task/schedule.ts`). */
    schedules?: ScheduleSpec[];
    /** PEM certificate chain and key: serve TLS instead of plain TCP. */
    tls?: { cert: string; key: string };
    /** The broker's password, from ASYNCTASK_BROKER_PASSWORD (a password in the `--broker` URL wins). */
    brokerPassword?: string;
  };

const { help: _h, logLevel: _l, logFormat: _f, ...serverDefaults } = defaults(SERVE_OPTIONS);

/** The defaults of {@linkcode ServeOptions}: Swoole's example server's values where it had one. */
export const DEFAULT_SERVE_OPTIONS: ServeOptions = serverDefaults;
