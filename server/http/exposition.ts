/**
 * `/metrics`: the server's counts, gauges and histograms in the Prometheus text exposition format
 * (version 0.0.4): `# HELP` and `# TYPE` before each family, counters ending in `_total`, times in
 * seconds, sizes in bytes, label values escaped. Everything is read when scraped: nothing here runs
 * per task.
 *
 * The counts by task (`asynctask_tasks_total`, `…_accepted_total`, `…_retries_total`) and every
 * gauge come from the server's `/stats`; the times and the failure codes come from
 * {@linkcode Metrics}, and are left out until something reports them.
 *
 * @module
 */
import process from "node:process";
import { VERSION } from "../../cli/version.ts";
import type { Histogram, Metrics } from "../metrics.ts";
import type { ServerStats } from "../stats.ts";

/** The `Content-Type` of the text exposition format. */
export const EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Record<string, string | number>;

/** A label value with `\`, `"` and line breaks escaped. */
function labelValue(v: string | number): string {
  return String(v).replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`);
}

/** A number as the format writes it: `+Inf`, `-Inf`, `NaN`, or JavaScript's shortest form. */
function num(v: number): string {
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/**
 * Writes families in the text format.
 *
 * @example
 * ```ts
 * import { ExpositionWriter } from "./exposition.ts";
 * import assert from "node:assert/strict";
 * const w = new ExpositionWriter();
 * w.family("jobs_total", "counter", "Jobs done.");
 * w.sample("jobs_total", { queue: 'say "hi"' }, 3);
 * assert.equal(w.text(), '# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\njobs_total{queue="say \\"hi\\""} 3\n');
 * ```
 */
export class ExpositionWriter {
  readonly #lines: string[] = [];

  /** Starts a family: its help text and type. */
  family(name: string, type: "counter" | "gauge" | "histogram", help: string): void {
    this.#lines.push(`# HELP ${name} ${help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`, `# TYPE ${name} ${type}`);
  }

  /** One sample of the current family. */
  sample(name: string, labels: Labels | undefined, value: number): void {
    const keys = labels ? Object.keys(labels) : [];
    const l = keys.length === 0 ? "" : `{${keys.map((k) => `${k}="${labelValue(labels![k])}"`).join(",")}}`;
    this.#lines.push(`${name}${l} ${num(value)}`);
  }

  /** A family of one unlabelled sample: its help, type and value. */
  single(name: string, type: "counter" | "gauge", help: string, value: number): void {
    this.family(name, type, help);
    this.sample(name, undefined, value);
  }

  /** The samples of one histogram: cumulative `_bucket`s (`le`), `_sum` and `_count`. */
  histogram(name: string, labels: Labels, h: Histogram): void {
    const cumulative = h.cumulative();
    for (let i = 0; i < cumulative.length; i++) {
      const le = i < h.bounds.length ? num(h.bounds[i]) : "+Inf";
      this.sample(`${name}_bucket`, { ...labels, le }, cumulative[i]);
    }
    this.sample(`${name}_sum`, labels, h.sum);
    this.sample(`${name}_count`, labels, h.count);
  }

  /** The whole text, ending in a line break. */
  text(): string {
    return this.#lines.join("\n") + "\n";
  }
}

/** What the process itself uses: memory, CPU, file descriptors, when it started. */
export interface ProcessUsage {
  residentBytes: number;
  virtualBytes?: number;
  heapUsedBytes: number;
  cpuSeconds: number;
  openFds?: number;
  maxFds?: number;
  startTimeSeconds: number;
}

function readText(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined; // not Linux, or not allowed to read it
  }
}

/**
 * What the process uses at the moment: resident and virtual memory from `/proc/self/status` (else
 * `Deno.memoryUsage()`), CPU time from `getrusage` (user and system, every thread), open file
 * descriptors from `/proc/self/fd` and their limit from `/proc/self/limits` (Linux only).
 *
 * @example
 * ```ts
 * import { processUsage } from "./exposition.ts";
 * import assert from "node:assert/strict";
 * const p = processUsage();
 * assert.ok(p.residentBytes > 0 && p.cpuSeconds > 0);
 * ```
 */
export function processUsage(): ProcessUsage {
  const mem = Deno.memoryUsage();
  const status = readText("/proc/self/status");
  const kib = (field: string) => {
    const m = status === undefined ? null : new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
    return m ? Number(m[1]) * 1024 : undefined;
  };
  let openFds: number | undefined;
  try {
    openFds = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) openFds++;
    openFds--; // the descriptor of the listing itself
  } catch {
    openFds = undefined;
  }
  const limit = /^Max open files\s+(\d+)/m.exec(readText("/proc/self/limits") ?? "");
  const cpu = process.cpuUsage();
  return {
    residentBytes: kib("VmRSS") ?? mem.rss,
    virtualBytes: kib("VmSize"),
    heapUsedBytes: mem.heapUsed,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    openFds,
    maxFds: limit ? Number(limit[1]) : undefined,
    startTimeSeconds: Math.floor(performance.timeOrigin / 1000),
  };
}

/** What `/metrics` is made from. */
export interface ExpositionInput {
  stats: ServerStats;
  metrics: Metrics;
  process: ProcessUsage;
  /** Whether the server keeps a journal (its commit times are shown even before the first commit). */
  journal: boolean;
  /** Dashboard live feeds open now. */
  dashboardClients: number;
  /** 1 when `/readyz` would say ready. */
  ready: boolean;
}

/**
 * The whole `/metrics` text.
 *
 * @example
 * ```ts
 * import { exposition } from "./exposition.ts";
 * import { Metrics } from "../metrics.ts";
 * import assert from "node:assert/strict";
 * const stats = {
 *   connections: 2, connections_total: 5, accepted: 3, refused: 0, queued: 1, running: 1, done: 1, failed: 0,
 *   retrying: 0, retained_results: 1, worker_messages: { to_workers: 2, from_workers: 2 }, uptime_s: 1,
 *   tasks: ["echo"], by_task: { echo: { accepted: 3, done: 1, failed: 0, retried: 0 } },
 *   workers: [{ id: 1, running: 1, done: 1, failed: 0, restarts: 0, memory_bytes: 8 << 20, state: "busy" as const }],
 * };
 * const text = exposition({
 *   stats, metrics: new Metrics(), journal: false, dashboardClients: 0, ready: true,
 *   process: { residentBytes: 1, heapUsedBytes: 1, cpuSeconds: 0.5, startTimeSeconds: 1 },
 * });
 * assert.match(text, /^asynctask_tasks_total\{task="echo",outcome="done"\} 1$/m);
 * assert.match(text, /^asynctask_queue_depth 1$/m);
 * ```
 */
export function exposition(input: ExpositionInput): string {
  const { stats, metrics } = input;
  const w = new ExpositionWriter();
  const names = [...new Set([...stats.tasks, ...Object.keys(stats.by_task)])];
  const counts = (task: string) => stats.by_task[task] ?? { accepted: 0, done: 0, failed: 0, retried: 0 };

  w.family("asynctask_build_info", "gauge", "Always 1: the asynctask version and the Deno it runs on.");
  w.sample("asynctask_build_info", { version: VERSION, deno: Deno.version.deno }, 1);
  w.single(
    "asynctask_ready",
    "gauge",
    "1 when /readyz answers 200 (listening, workers up, store writable), else 0.",
    input.ready ? 1 : 0,
  );

  // --- tasks
  w.family("asynctask_tasks_accepted_total", "counter", "Tasks accepted (answered ACCEPTED), by task name.");
  for (const t of names) w.sample("asynctask_tasks_accepted_total", { task: t }, counts(t).accepted);
  w.family(
    "asynctask_tasks_total",
    "counter",
    "Tasks that ended, by task name and outcome (done or failed); retried attempts are not ends.",
  );
  for (const t of names) {
    w.sample("asynctask_tasks_total", { task: t, outcome: "done" }, counts(t).done);
    w.sample("asynctask_tasks_total", { task: t, outcome: "failed" }, counts(t).failed);
  }
  w.family("asynctask_task_retries_total", "counter", "Failed attempts that were run again, by task name.");
  for (const t of names) w.sample("asynctask_task_retries_total", { task: t }, counts(t).retried);
  w.single("asynctask_requests_refused_total", "counter", "Requests answered ERROR (nothing queued).", stats.refused);

  if (metrics.observed) {
    const measured = [...metrics.tasks()];
    w.family("asynctask_task_failures_total", "counter", "Tasks that ended failed, by task name and failure code.");
    for (const [task, t] of measured) {
      for (const [code, n] of t.outcomes) w.sample("asynctask_task_failures_total", { task, code }, n);
    }
    w.family(
      "asynctask_task_duration_seconds",
      "histogram",
      "How long a task's last run took in its handler, by task name.",
    );
    for (const [task, t] of measured) w.histogram("asynctask_task_duration_seconds", { task }, t.duration);
    w.family(
      "asynctask_task_wait_seconds",
      "histogram",
      "How long a task waited in the queue before a worker started it (each attempt), by task name.",
    );
    for (const [task, t] of measured) w.histogram("asynctask_task_wait_seconds", { task }, t.wait);
  }

  // --- now
  w.single("asynctask_queue_depth", "gauge", "Tasks waiting for a worker.", stats.queued);
  w.single("asynctask_tasks_running", "gauge", "Tasks running on workers.", stats.running);
  w.single("asynctask_tasks_retrying", "gauge", "Tasks waiting out a retry backoff.", stats.retrying);
  w.single("asynctask_results_retained", "gauge", "Finished tasks kept for /status.", stats.retained_results);
  w.single("asynctask_connections", "gauge", "Open client connections (line protocol).", stats.connections);
  w.single(
    "asynctask_connections_accepted_total",
    "counter",
    "Client connections accepted since the start.",
    stats.connections_total,
  );
  w.single(
    "asynctask_dashboard_clients",
    "gauge",
    "Dashboard live feeds (server-sent events) open.",
    input.dashboardClients,
  );

  // --- workers
  w.single("asynctask_workers", "gauge", "Worker slots in the pool.", stats.workers.length);
  w.family("asynctask_worker_tasks_running", "gauge", "Tasks running on each worker slot.");
  for (const s of stats.workers) w.sample("asynctask_worker_tasks_running", { worker: s.id }, s.running);
  w.family("asynctask_worker_runs_total", "counter", "Runs that ended on each worker slot, by outcome.");
  for (const s of stats.workers) {
    w.sample("asynctask_worker_runs_total", { worker: s.id, outcome: "done" }, s.done);
    w.sample("asynctask_worker_runs_total", { worker: s.id, outcome: "failed" }, s.failed);
  }
  w.family(
    "asynctask_worker_restarts_total",
    "counter",
    "Workers replaced, by reason (crashed, recycled, killed); unclassified: replacements the pool counted that no reason was reported for.",
  );
  let classified = 0;
  for (const [reason, n] of metrics.restarts) {
    classified += n;
    w.sample("asynctask_worker_restarts_total", { reason }, n);
  }
  const restarts = stats.workers.reduce((n, s) => n + s.restarts, 0);
  if (restarts > classified || metrics.restarts.size === 0) {
    w.sample("asynctask_worker_restarts_total", { reason: "unclassified" }, Math.max(0, restarts - classified));
  }
  w.family("asynctask_worker_messages_total", "counter", "Messages between the server and its workers, by direction.");
  w.sample("asynctask_worker_messages_total", { direction: "to_workers" }, stats.worker_messages.to_workers);
  w.sample("asynctask_worker_messages_total", { direction: "from_workers" }, stats.worker_messages.from_workers);

  // --- the journal
  if (input.journal || metrics.journalCommits.count > 0) {
    w.family(
      "asynctask_journal_commit_seconds",
      "histogram",
      "How long a journal group commit took, from its hand-off to the journal thread to its fsync.",
    );
    w.histogram("asynctask_journal_commit_seconds", {}, metrics.journalCommits);
  }

  // --- the process
  const p = input.process;
  w.single(
    "process_cpu_seconds_total",
    "counter",
    "User and system CPU time of the process (every thread).",
    p.cpuSeconds,
  );
  w.single("process_resident_memory_bytes", "gauge", "Resident memory of the process.", p.residentBytes);
  if (p.virtualBytes !== undefined) {
    w.single("process_virtual_memory_bytes", "gauge", "Virtual memory of the process.", p.virtualBytes);
  }
  w.single(
    "asynctask_heap_used_bytes",
    "gauge",
    "JavaScript heap in use on the main thread (not the workers').",
    p.heapUsedBytes,
  );
  if (p.openFds !== undefined) {
    w.single("process_open_fds", "gauge", "Open file descriptors.", p.openFds);
  }
  if (p.maxFds !== undefined) {
    w.single("process_max_fds", "gauge", "The limit of open file descriptors (soft).", p.maxFds);
  }
  w.single(
    "process_start_time_seconds",
    "gauge",
    "When the process started, in seconds since the Unix epoch.",
    p.startTimeSeconds,
  );
  return w.text();
}
