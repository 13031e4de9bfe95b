/**
 * The asynctask server: listens on TCP, answers every request at once, hands accepted tasks to the
 * worker pool, and sends each task's final reply to the connection that submitted it.
 *
 * The walk of a request: {@linkcode Connection} frames a line → {@linkcode TaskServer} parses it
 * (`protocol.ts`) → validates it with the task's handler → `ACCEPTED` → {@linkcode WorkerPool} →
 * outcome → `DONE`/`FAILED` on the same connection, and the result kept for `/status`.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { createRegistry, type HandlerRegistry } from "../task/handlers/mod.ts";
import type { DispatchMode } from "../task/dispatch.ts";
import type { Outcome } from "../task/messages.ts";
import { type Job, type TaskLimits, WorkerPool } from "../task/pool.ts";
import { type HandlerSettings, InvalidDataError, type TaskSpec } from "../task/types.ts";
import { Connection } from "./connection.ts";
import type { LineEvent } from "./lines.ts";
import { type ErrorCode, type Format, parseRequest, reply, type Request, type Tag } from "./protocol.ts";
import { newRecord, TaskBook, type TaskRecord } from "./tasks.ts";
import { formatDuration, formatSize } from "../cli/units.ts";
import { flushLogging } from "../cli/log.ts";
import { isLoopback, TokenCheck } from "./auth.ts";
import type { JournalSync, JournalTask } from "./journal.ts";
import { PollGate } from "./poll_gate.ts";
import { JournalClient, type LoadedJournal } from "./journal_client.ts";

const log = getLogger(["asynctask", "server"]);
const taskLog = getLogger(["asynctask", "task"]);

/** Everything `asynctask serve` can set. Durations in milliseconds, sizes in bytes. */
export interface ServeOptions {
  host: string;
  /** 0 picks a free port; read it back from {@linkcode TaskServer.addr}. */
  port: number;
  workers: number;
  concurrency: number;
  dispatch: DispatchMode;
  queueSize: number;
  maxTasksPerWorker: number;
  /** Heap limit per worker, bytes. */
  workerHeap: number;
  /** CPU niceness of the worker threads, 0–19 (Linux; elsewhere ignored). */
  workerNice: number;
  maxLine: number;
  /** Most connections at once; a new one beyond gets `ERROR too_many_connections` and is closed. */
  maxConns: number;
  /** A connection silent this long with no task outstanding is closed (after `ERROR idle_timeout`); 0 = never. */
  idleTimeoutMs: number;
  /** Most reply characters waiting for a client that does not read; beyond, the connection is closed. */
  maxOutput: number;
  /** The task of text lines (and JSON requests) that name none (`--task`); none: they must name one. */
  defaultTask?: string;
  smsDelayMs: number;
  resultTtlMs: number;
  maxResults: number;
  /** Log an activity summary at this interval when anything happened; 0 = never. */
  statsIntervalMs: number;
  /** A run longer than this ends as `timeout` (or is retried); 0 = no limit. */
  taskTimeoutMs: number;
  /** How many times a failed task runs again (permanent failures never do). */
  retries: number;
  /** The first retry's delay; each next one doubles, with jitter, up to `retryMaxDelayMs`. */
  retryBackoffMs: number;
  retryMaxDelayMs: number;
  /** URLs of extra handler modules (see `task/handlers/mod.ts`). */
  modules?: string[];
  /** The operator's tasks: the config file's `tasks` map (see `task/config.ts`). */
  tasks?: TaskSpec[];
  /** When set, a connection must `/auth` with it before anything else. Never logged. */
  token?: string;
  /** PEM certificate chain and key: serve TLS instead of plain TCP. */
  tls?: { cert: string; key: string };
  /** Keep accepted tasks in this SQLite file, so that they survive crashes and restarts. */
  journal?: { path: string; sync: JournalSync };
}

/** The defaults of {@linkcode ServeOptions}: the seed's values where it had one. */
export const DEFAULT_SERVE_OPTIONS: ServeOptions = {
  host: "127.0.0.1",
  port: 9501,
  workers: 4,
  concurrency: 64,
  dispatch: "least-busy",
  queueSize: 100_000,
  maxTasksPerWorker: 0,
  workerHeap: 512 * 1024 * 1024,
  workerNice: 10,
  maxLine: 1024 * 1024,
  maxConns: 10_000,
  idleTimeoutMs: 300_000,
  maxOutput: 8 * 1024 * 1024,
  defaultTask: "sms",
  smsDelayMs: 5000,
  resultTtlMs: 600_000,
  maxResults: 100_000,
  statsIntervalMs: 10_000,
  taskTimeoutMs: 60_000,
  retries: 0,
  retryBackoffMs: 1000,
  retryMaxDelayMs: 60_000,
};

/**
 * The delay before retry number `attempt` (1 = the first retry): `base` doubled each time, capped
 * at `max`, with "equal jitter" (between half and all of it) so that tasks that failed together do
 * not retry together.
 *
 * @example
 * ```ts
 * import { retryDelay } from "./server.ts";
 * const d = retryDelay(3, 1000, 60_000); // 2000..4000
 * console.log(d >= 2000 && d <= 4000); // true
 * ```
 */
export function retryDelay(attempt: number, base: number, max: number, random: () => number = Math.random): number {
  const full = Math.min(max, base * 2 ** Math.min(attempt - 1, 30));
  return Math.round(full / 2 + random() * (full / 2));
}

/**
 * With `--journal`, a task left unfinished when the server died runs again on restart, its count of
 * failed attempts carried on (so `--retries` still bounds it). After this many restarts that found
 * it unfinished, it is failed instead: it may be what kills the server (a poison pill).
 */
export const MAX_INTERRUPTED_RUNS = 3;

/** The settings the handler registry is built from, on the server and in every worker. */
function handlerSettings(opts: ServeOptions, modules = opts.modules): HandlerSettings {
  return { smsDelayMs: opts.smsDelayMs, modules, tasks: opts.tasks };
}

/** The per-task limits the pool enforces, from the handlers that set their own. */
function taskLimits(registry: HandlerRegistry): Map<string, TaskLimits> {
  const limits = new Map<string, TaskLimits>();
  for (const h of registry.values()) {
    if (h.timeoutMs === undefined && h.concurrency === undefined) continue;
    limits.set(h.name, {
      ...(h.timeoutMs !== undefined ? { timeoutMs: h.timeoutMs } : {}),
      ...(h.concurrency !== undefined ? { concurrency: h.concurrency } : {}),
    });
  }
  return limits;
}

/** A handler's log message with its `{name}` placeholders filled from its properties. */
function fillTemplate(message: string, properties: Record<string, unknown> | undefined): string {
  if (!properties) return message;
  return message.replace(/\{(\w+)\}/g, (m, k: string) => k in properties ? String(properties[k]) : m);
}

/**
 * A journal commit failed while the server ran (a full disk, a vanished directory): stop at once,
 * so that no `ACCEPTED` or `DONE` goes out for what is not on disk (crash-only; see README).
 */
function journalFailed(path: string, why: string): void {
  log.fatal(
    "journal {path}: {why}; stopping now so that no ACCEPTED is sent for a task that is not on disk. Fix the cause (free space, permissions) and restart: committed tasks are recovered",
    { path, why },
  );
  flushLogging();
  Deno.exit(1);
}

/** One task name's counts in `/stats`. */
export interface TaskCounts {
  accepted: number;
  done: number;
  failed: number;
  retried: number;
}

/** What `/stats` reports. */
export interface ServerStats {
  connections: number;
  connections_total: number;
  accepted: number;
  refused: number;
  queued: number;
  running: number;
  done: number;
  failed: number;
  /** Tasks waiting out a retry backoff. */
  retrying: number;
  retained_results: number;
  /** Messages between the server and its workers (batched: many tasks per message under load). */
  worker_messages: { to_workers: number; from_workers: number };
  uptime_s: number;
  tasks: string[];
  /** Counts per task name since the start: accepted, done, failed, and retries (failed attempts run again). */
  by_task: Record<string, TaskCounts>;
  workers: { id: number; running: number; done: number; failed: number; restarts: number }[];
}

/** How a graceful stop went. */
export interface ShutdownReport {
  /** Tasks that had not finished when `--shutdown-timeout` ran out (they were failed with `shutting_down`). */
  unfinished: number;
}

/** Why the server could not start: a message for a person, naming the fix. */
export class StartError extends Error {
  override name = "StartError";
}

/**
 * A running server.
 *
 * @example
 * ```ts ignore
 * const server = await TaskServer.start({ ...DEFAULT_SERVE_OPTIONS, port: 0 });
 * console.log(`listening on ${server.addr.hostname}:${server.addr.port}`);
 * await server.shutdown(30_000);
 * ```
 */
export class TaskServer {
  readonly addr: Deno.NetAddr;
  readonly #opts: ServeOptions;
  readonly #listener: Deno.Listener;
  readonly #gate: PollGate | undefined;
  readonly #token: TokenCheck | undefined;
  readonly #journal: JournalClient | undefined;
  #registry: HandlerRegistry;
  readonly #pool: WorkerPool;
  readonly #book: TaskBook;
  readonly #conns = new Set<Connection>();
  readonly #startedAt = Date.now();
  readonly #timers: ReturnType<typeof setInterval>[] = [];
  /** Per-task start and end lines are `debug`: at full speed they would cost two thirds of the throughput. */
  readonly #traceTasks = taskLog.isEnabledFor("debug");
  readonly #acceptLoop: Promise<void>;
  #nextTaskId = 0;
  #nextConnId = 0;
  #stopping = false;
  #counts = { accepted: 0, refused: 0, done: 0, failed: 0 };
  readonly #queueFullMessage: string;
  readonly #queueFullLine: string;
  readonly #retryTimers = new Set<ReturnType<typeof setTimeout>>();
  #finishedWaiters: (() => void)[] = [];

  private constructor(
    opts: ServeOptions,
    listener: Deno.Listener,
    gate: PollGate | undefined,
    registry: HandlerRegistry,
    journal: JournalClient | undefined,
    loaded: LoadedJournal | undefined,
  ) {
    this.#opts = opts;
    this.#journal = journal;
    this.#listener = listener;
    this.#gate = gate;
    this.addr = listener.addr as Deno.NetAddr;
    this.#token = opts.token ? new TokenCheck(opts.token) : undefined;
    const settings = handlerSettings(opts);
    this.#registry = registry;
    this.#queueFullMessage =
      `the queue is full (${opts.queueSize} tasks waiting); nothing was queued — retry later, or raise --queue-size or --workers`;
    this.#queueFullLine = reply.error("text", undefined, "queue_full", this.#queueFullMessage);
    this.#book = new TaskBook({ ttlMs: opts.resultTtlMs, max: opts.maxResults });
    this.#pool = new WorkerPool({ ...opts, settings, limits: taskLimits(registry) }, {
      started: (job, worker) => this.#started(job, worker),
      progress: (job, report) => {
        const rec = this.#book.get(job.id);
        if (rec?.state === "running" && rec.attempts === job.attempt) {
          rec.target?.send(reply.progress(rec.format, rec.id, rec.tag, report.percent, report.message));
        }
      },
      log: (job, record) =>
        getLogger(["asynctask", "task", job.task])[record.level]("task {id}: {message}", {
          ...record.properties,
          id: job.id,
          message: fillTemplate(record.message, record.properties),
        }),
      settled: (job, outcome, worker) => this.#settled(job, outcome, worker),
      crashed: (worker, reason, tasks) =>
        log.error("worker {worker} crashed ({reason}); {tasks} task(s) failed with worker_crashed; worker replaced", {
          worker,
          reason,
          tasks,
        }),
      recycled: (worker) =>
        log.debug("worker {worker} recycled after {max} tasks", { worker, max: opts.maxTasksPerWorker }),
      killed: (worker, reason, requeued) => {
        for (const job of requeued) this.#requeued(job);
        log.error("worker {worker} terminated and replaced: {reason}; {tasks} other task(s) on it run again", {
          worker,
          reason,
          tasks: requeued.length,
        });
      },
    });
    this.#timers.push(setInterval(() => this.#book.sweep(Date.now()), 1000));
    if (journal && loaded) {
      this.#recover(journal, loaded);
      this.#timers.push(setInterval(() => this.#sweepJournal(), 10_000));
    }
    if (opts.statsIntervalMs > 0) this.#timers.push(setInterval(() => this.#logActivity(), opts.statsIntervalMs));
    if (opts.idleTimeoutMs > 0) {
      const tick = Math.min(1000, Math.max(20, Math.round(opts.idleTimeoutMs / 4)));
      this.#timers.push(setInterval(() => this.#closeIdle(), tick));
    }
    this.#acceptLoop = this.#accept();
  }

  /**
   * Starts listening and the worker pool.
   *
   * @throws {StartError} when the address cannot be used or the options do not fit together.
   */
  static async start(options: ServeOptions): Promise<TaskServer> {
    let registry: HandlerRegistry;
    try {
      registry = await createRegistry(handlerSettings(options));
    } catch (e) {
      throw new StartError((e as Error).message);
    }
    if (
      options.tasks?.some((t) => t.kind === "command") &&
      Deno.permissions.querySync({ name: "run" }).state !== "granted"
    ) {
      throw new StartError(
        "the config declares command tasks, but this process may not run programs — start it with --allow-run (deno task serve has it)",
      );
    }
    if (options.defaultTask !== undefined && !registry.has(options.defaultTask)) {
      throw new StartError(
        `--task "${options.defaultTask}" is not a task this server knows; use one of ${
          [...registry.keys()].join(", ")
        }`,
      );
    }
    const where = `${options.host}:${options.port}`;
    let journal: JournalClient | undefined;
    let loaded: LoadedJournal | undefined;
    try {
      if (options.journal) {
        const { path } = options.journal;
        journal = await JournalClient.open(path, options.journal.sync, (why) => journalFailed(path, why));
        loaded = await journal.load(Date.now() - options.resultTtlMs);
      }
    } catch (e) {
      await journal?.close().catch(() => {});
      throw new StartError((e as Error).message);
    }
    let listener: Deno.Listener;
    try {
      listener = options.tls
        ? Deno.listenTls({ hostname: options.host, port: options.port, cert: options.tls.cert, key: options.tls.key })
        : Deno.listen({ hostname: options.host, port: options.port, transport: "tcp" });
    } catch (e) {
      await journal?.close().catch(() => {});
      if (options.tls && !(e instanceof Deno.errors.AddrInUse) && !(e instanceof Deno.errors.PermissionDenied)) {
        throw new StartError(
          `cannot serve TLS: ${
            (e as Error).message
          } — check that --tls-cert is a PEM certificate (chain) and --tls-key its PEM private key`,
        );
      }
      if (e instanceof Deno.errors.AddrInUse) {
        throw new StartError(
          `cannot listen on ${where}: the address is already in use — is another asynctask (or other server) running there? Stop it or choose another --port`,
        );
      }
      if (e instanceof Deno.errors.PermissionDenied) {
        throw new StartError(
          `cannot listen on ${where}: permission denied — ports below 1024 need privileges; choose a --port of 1024 or more`,
        );
      }
      if (e instanceof Deno.errors.AddrNotAvailable) {
        throw new StartError(`cannot listen on ${where}: no such address on this machine — check --host`);
      }
      throw new StartError(`cannot listen on ${where}: ${(e as Error).message} — check --host and --port`);
    }
    // Without its loopback socket pair (no 127.0.0.1 here, or a narrower --allow-net) the server
    // still works; a flood can then delay new connections by a second or two.
    const gate = await PollGate.open().catch((e: Error) => {
      log.warn("no poll gate ({error}): under a flood of pipelined requests, new connections may wait", {
        error: e.message,
      });
      return undefined;
    });
    const server = new TaskServer(options, listener, gate, registry, journal, loaded);
    if (!isLoopback(options.host) && !options.token) {
      log.warn(
        "listening on {host} without a token: anyone who can reach port {port} can run tasks here. Set --token (or the ASYNCTASK_TOKEN environment variable), or listen on 127.0.0.1",
        { host: options.host, port: server.addr.port },
      );
    }
    log.info(
      "listening on {address} (TLS {tls}, token {token}) — {workers} workers × {concurrency} tasks, dispatch {dispatch}, queue {queueSize}, default task {task}",
      {
        address: `${server.addr.hostname}:${server.addr.port}`,
        tls: options.tls ? "on" : "off",
        token: options.token ? "required" : "none",
        workers: options.workers,
        concurrency: options.concurrency,
        dispatch: options.dispatch,
        queueSize: options.queueSize,
        task: options.defaultTask ?? "none (requests name their task)",
        maxLine: formatSize(options.maxLine),
        resultTtl: formatDuration(options.resultTtlMs),
      },
    );
    return server;
  }

  /** The current counts, as `/stats` reports them. */
  stats(): ServerStats {
    return {
      connections: this.#conns.size,
      connections_total: this.#nextConnId,
      accepted: this.#counts.accepted,
      refused: this.#counts.refused,
      queued: this.#pool.queued,
      running: this.#pool.running,
      done: this.#counts.done,
      failed: this.#counts.failed,
      retrying: this.#retryTimers.size,
      retained_results: this.#book.retained,
      worker_messages: { to_workers: this.#pool.messages.toWorkers, from_workers: this.#pool.messages.fromWorkers },
      uptime_s: Math.round((Date.now() - this.#startedAt) / 100) / 10,
      tasks: [...this.#registry.keys()],
      by_task: Object.fromEntries(this.#byTask),
      workers: this.#pool.stats(),
    };
  }

  /**
   * Stops gracefully: no new connections or tasks (requests get `ERROR shutting_down`), waits up
   * to `timeoutMs` for queued and running tasks, delivers their final replies, then closes.
   */
  async shutdown(timeoutMs: number): Promise<ShutdownReport> {
    if (!this.#stopping) {
      this.#stopping = true;
      try {
        this.#listener.close();
      } catch {
        // already closed
      }
    }
    await this.#acceptLoop;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = await Promise.race([
      this.#allFinished().then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
    ]);
    clearTimeout(timer);
    let unfinished = 0;
    if (timedOut) {
      for (const t of this.#retryTimers) clearTimeout(t);
      this.#retryTimers.clear();
      for (const rec of this.#book.unfinished()) {
        unfinished++;
        const message = `the server stopped before the task finished (--shutdown-timeout ${formatDuration(timeoutMs)})`;
        this.#finish(rec, { code: "shutting_down", message });
      }
    }
    await this.#pool.close();
    for (const t of this.#timers) clearInterval(t);
    await Promise.all([...this.#conns].map((c) => c.closeWhenFlushed()));
    await this.#journal?.close();
    this.#gate?.close();
    return { unfinished };
  }

  /** Queues the journal's unfinished tasks again and files its recent results, on start. */
  #recover(journal: JournalClient, { unfinished, finished, maxId }: LoadedJournal): void {
    this.#nextTaskId = maxId;
    const base = (t: JournalTask) => ({ id: t.id, task: t.task, format: t.format, tag: t.tag, attempts: t.attempts });
    for (const t of finished) {
      const state = t.state === "done" ? "done" : "failed";
      const rec = this.#book.add(newRecord({ ...base(t), state, result: t.result, error: t.error }));
      this.#book.finish(rec, t.finishedAt);
    }
    for (const t of unfinished) {
      const rec = this.#book.add(newRecord({ ...base(t), state: "queued" }));
      if (!this.#registry.has(t.task)) {
        this.#finish(rec, { code: "handler_error", message: `this server has no task "${t.task}" any more` });
      } else if (t.interrupted > MAX_INTERRUPTED_RUNS) {
        // A task that was unfinished at every crash may be what crashes the server: a poison pill.
        this.#finish(rec, {
          code: "worker_crashed",
          message: `the server stopped ${t.interrupted} times before the task finished; not running it again`,
        });
      } else {
        this.#pool.submit({ id: t.id, task: t.task, data: t.data, attempt: t.attempts + 1, connId: 0 }, true);
      }
    }
    journal.commit().catch(() => {}); // a failure is fatal, and reported by journalFailed
    log.info(
      "journal {path}: {queued} unfinished task(s) queued again, {kept} result(s) kept, task ids go on after {max}",
      {
        path: journal.path,
        queued: unfinished.length,
        kept: finished.length,
        max: maxId,
      },
    );
  }

  #sweepJournal(): void {
    this.#journal?.sweep(Date.now() - this.#opts.resultTtlMs, this.#opts.maxResults).catch((e: Error) =>
      log.error("journal clean-up failed: {error}", { error: e.message })
    );
  }

  #reloads = 0;
  #reloading: Promise<boolean> | undefined;

  /**
   * Rolling reload (SIGHUP): loads the handler modules anew, then replaces the workers one at a
   * time. If the new code does not load, nothing changes and the error is logged. Resolves true
   * when the reload was done.
   */
  reload(): Promise<boolean> {
    if (this.#stopping) return Promise.resolve(false);
    this.#reloading ??= this.#reload().finally(() => (this.#reloading = undefined));
    return this.#reloading;
  }

  async #reload(): Promise<boolean> {
    const generation = ++this.#reloads;
    const modules = this.#opts.modules?.map((url) => `${url}${url.includes("?") ? "&" : "?"}reload=${generation}`);
    const settings = handlerSettings(this.#opts, modules);
    let registry: HandlerRegistry;
    try {
      registry = await createRegistry(settings);
    } catch (e) {
      log.error("reload abandoned: {error}; the workers keep the code they have", { error: (e as Error).message });
      return false;
    }
    const t0 = performance.now();
    this.#registry = registry;
    await this.#pool.reload(settings);
    log.info("reload done: {workers} workers replaced one at a time in {ms} ms; tasks: {tasks}", {
      workers: this.#opts.workers,
      ms: Math.round(performance.now() - t0),
      tasks: [...registry.keys()].join(", "),
    });
    return true;
  }

  #lastActivity = { accepted: 0, refused: 0, done: 0, failed: 0 };
  readonly #byTask = new Map<string, TaskCounts>();

  #countsOf(task: string): TaskCounts {
    let c = this.#byTask.get(task);
    if (!c) this.#byTask.set(task, c = { accepted: 0, done: 0, failed: 0, retried: 0 });
    return c;
  }

  /** The periodic `info` line: what happened since the last one (nothing is logged when nothing did). */
  #logActivity(): void {
    const now = this.#counts;
    const last = this.#lastActivity;
    if (
      now.accepted === last.accepted && now.refused === last.refused && now.done === last.done &&
      now.failed === last.failed
    ) {
      return;
    }
    log.info(
      "last {interval}: {accepted} accepted, {refused} refused, {done} done, {failed} failed — now {queued} queued, {running} running, {connections} connection(s)",
      {
        interval: formatDuration(this.#opts.statsIntervalMs),
        accepted: now.accepted - last.accepted,
        refused: now.refused - last.refused,
        done: now.done - last.done,
        failed: now.failed - last.failed,
        queued: this.#pool.queued,
        running: this.#pool.running,
        connections: this.#conns.size,
      },
    );
    this.#lastActivity = { ...now };
  }

  /** Tasks queued, running or waiting to retry now. */
  get unfinished(): number {
    return this.#book.live;
  }

  /** Resolves when every accepted task has had its final reply. */
  #allFinished(): Promise<void> {
    if (this.#book.live === 0) return Promise.resolve();
    return new Promise((resolve) => this.#finishedWaiters.push(resolve));
  }

  async #accept(): Promise<void> {
    let backoff = 10;
    while (!this.#stopping) {
      let tcp: Deno.Conn;
      try {
        tcp = await this.#listener.accept();
      } catch (e) {
        if (this.#stopping || e instanceof Deno.errors.BadResource) return;
        // Out of file descriptors (EMFILE) and the like: say so, wait a little, keep serving.
        log.error("cannot accept a connection: {error}; retrying in {ms} ms", {
          error: (e as Error).message,
          ms: backoff,
        });
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 1000);
        continue;
      }
      backoff = 10;
      if ("setNoDelay" in tcp) (tcp as Deno.TcpConn).setNoDelay(true);
      const conn = new Connection(++this.#nextConnId, tcp, this.#opts, {
        line: (c, event) => this.#onLine(c, event),
        ended: (c) => this.#onEnded(c),
        closed: (c) => this.#onClosed(c),
        ...(this.#journal ? { beforeWrite: () => this.#journal!.commit() } : {}),
        overflowed: (c) =>
          log.warn(
            "connection {conn} from {remote} closed: more than --max-output {max} of replies wait for a client that does not read; its tasks go on, their results stay available to /status",
            { conn: c.id, remote: c.remote, max: formatSize(this.#opts.maxOutput) },
          ),
      }, this.#gate);
      if (this.#conns.size >= this.#opts.maxConns) {
        this.#counts.refused++;
        log.warn("connection from {remote} refused: --max-conns {max} reached", {
          remote: conn.remote,
          max: this.#opts.maxConns,
        });
        conn.send(reply.error(
          "text",
          undefined,
          "too_many_connections",
          `the server has its maximum of ${this.#opts.maxConns} connections (--max-conns); retry later`,
        ));
        conn.closeWhenFlushed();
        continue;
      }
      this.#conns.add(conn);
      log.debug("connection {conn} from {remote} opened", { conn: conn.id, remote: conn.remote });
      conn.serve();
    }
  }

  /** Closes connections that sent nothing for `--idle-timeout` and wait for no task, saying why first. */
  #closeIdle(): void {
    const now = performance.now();
    const limit = this.#opts.idleTimeoutMs;
    for (const c of this.#conns) {
      if (c.outstanding > 0 || c.readEnded || now - c.lastActivity < limit) continue;
      c.send(
        reply.error(
          "text",
          undefined,
          "idle_timeout",
          `no request for ${formatDuration(limit)} (--idle-timeout); closing`,
        ),
      );
      c.closeWhenFlushed();
    }
  }

  #onEnded(c: Connection): void {
    // A client that half-closed (sent EOF) still gets the final replies of its tasks: the
    // connection closes itself when the last one is written (Connection.taskEnded).
    if (c.outstanding === 0 || !c.writable) c.closeWhenFlushed();
  }

  #onClosed(c: Connection): void {
    this.#conns.delete(c);
    log.debug("connection {conn} closed", { conn: c.id });
  }

  #onLine(c: Connection, event: LineEvent): void {
    if ("line" in event) {
      const req = parseRequest(event.line);
      if (req) this.#handle(c, req);
    } else if ("invalidUtf8" in event) {
      this.#refuse(
        c,
        "text",
        undefined,
        "bad_request",
        "the line is not valid UTF-8; send UTF-8 text or a JSON request",
      );
    } else {
      this.#refuse(
        c,
        "text",
        undefined,
        "line_too_long",
        `the line is longer than --max-line ${formatSize(this.#opts.maxLine)}; closing the connection`,
      );
      c.closeWhenFlushed();
    }
  }

  #refuse(c: Connection, format: Format, tag: Tag | undefined, code: ErrorCode, msg: string): void {
    this.#counts.refused++;
    c.send(reply.error(format, tag, code, msg));
  }

  #handle(c: Connection, req: Request): void {
    if (this.#token && !c.authorized) return this.#authorize(c, req);
    switch (req.kind) {
      case "submit":
        return this.#submit(c, req);
      case "invalid":
        return this.#refuse(c, req.format, req.tag, req.code, req.message);
      case "status":
        return this.#status(c, req.format, req.tag, req.taskId);
      case "stats":
        return c.send(reply.stats(req.format, req.tag, this.stats() as unknown as Record<string, unknown>));
      case "ping":
        return c.send(reply.pong(req.format, req.tag));
      case "auth":
        // Already authorized, or the server has no token: nothing to check.
        return c.send(reply.ok(req.format, req.tag));
      case "quit":
        c.send(reply.bye(req.format, req.tag));
        c.closeWhenFlushed();
        return;
    }
  }

  /** The first request of a connection to a server with a token: it must be a good `/auth`. */
  #authorize(c: Connection, req: Request): void {
    if (req.kind === "auth" && this.#token!.matches(req.token)) {
      c.authorized = true;
      return c.send(reply.ok(req.format, req.tag));
    }
    const why = req.kind === "auth"
      ? "wrong token"
      : 'this server needs a token first: send /auth <token> (or {"cmd":"auth","token":"…"})';
    this.#refuse(c, req.format, req.tag, "unauthorized", `${why}; closing`);
    log.warn("connection {conn} from {remote} refused: {why}", {
      conn: c.id,
      remote: c.remote,
      why: req.kind === "auth" ? "wrong token" : "no /auth first",
    });
    c.closeWhenFlushed();
  }

  #submit(c: Connection, req: Extract<Request, { kind: "submit" }>): void {
    const { format, tag } = req;
    if (this.#stopping) {
      return this.#refuse(
        c,
        format,
        tag,
        "shutting_down",
        "the server is shutting down and takes no new tasks; retry against another server or after the restart",
      );
    }
    const name = req.task ?? this.#opts.defaultTask;
    if (name === undefined) {
      return this.#refuse(
        c,
        format,
        tag,
        "unknown_task",
        `this server has no default task: name one, /task <name> <payload> or {"task": "<name>", …}; this server runs ${
          [...this.#registry.keys()].join(", ")
        }`,
      );
    }
    const handler = this.#registry.get(name);
    if (!handler) {
      const known = [...this.#registry.keys()].join(", ");
      return this.#refuse(
        c,
        format,
        tag,
        "unknown_task",
        `no task named "${name.slice(0, 64)}"; this server runs ${known}`,
      );
    }
    let data: unknown;
    try {
      data = handler.validate(req.data);
    } catch (e) {
      const message = e instanceof InvalidDataError ? e.message : `${name} refused the data: ${(e as Error).message}`;
      return this.#refuse(c, format, tag, "invalid_data", message);
    }
    if (!this.#pool.hasRoom) {
      // The hot refusal under overload: its text line is built once.
      if (format === "text") {
        this.#counts.refused++;
        return c.send(this.#queueFullLine);
      }
      return this.#refuse(c, format, tag, "queue_full", this.#queueFullMessage);
    }
    const id = ++this.#nextTaskId;
    // On disk before its ACCEPTED goes out: the connection commits the journal before it writes.
    this.#journal?.accept({ id, task: name, data, format, tag, attempts: 0 });
    this.#book.add(newRecord({ id, task: name, format, tag, state: "queued", attempts: 0, target: c }));
    this.#counts.accepted++;
    this.#countsOf(name).accepted++;
    c.outstanding++;
    c.send(reply.accepted(format, id, tag, handler.accepted?.(data) ?? `${name} task queued`));
    // Cannot be refused: the pool has room (checked above) and is open (not #stopping).
    this.#pool.submit({ id, task: name, data, attempt: 1, connId: c.id });
  }

  #status(c: Connection, format: Format, tag: Tag | undefined, taskId: number): void {
    if (taskId > this.#nextTaskId) {
      const last = this.#nextTaskId === 0 ? "none yet" : `the last is ${this.#nextTaskId}`;
      return this.#refuse(c, format, tag, "not_found", `no task ${taskId} has been accepted by this server (${last})`);
    }
    const rec = this.#book.get(taskId);
    if (!rec) return c.send(reply.status(format, tag, taskId, "unknown"));
    const detail = rec.state === "done"
      ? { result: rec.result, attempts: rec.attempts }
      : rec.state === "failed"
      ? { error: rec.error, attempts: rec.attempts }
      : { attempts: rec.attempts };
    c.send(reply.status(format, tag, taskId, rec.state, detail));
  }

  #started(job: Job, worker: number): void {
    const rec = this.#book.get(job.id);
    if (!rec) return;
    rec.state = "running";
    rec.worker = worker;
    rec.attempts = job.attempt;
    if (!this.#traceTasks) return;
    taskLog.debug("task {id} ({task}) started on worker {worker}, attempt {attempt}", {
      id: job.id,
      task: job.task,
      worker,
      attempt: job.attempt,
    });
  }

  #settled(job: Job, outcome: Outcome, worker: number): void {
    const rec = this.#book.get(job.id);
    if (!rec || rec.state !== "running" || rec.attempts !== job.attempt) return;
    rec.worker = worker;
    if (outcome.ok) {
      this.#finish(rec, undefined, outcome.result, outcome.ms);
    } else if (!outcome.permanent && job.attempt <= this.#retriesOf(rec.task)) {
      this.#retry(rec, job, outcome);
    } else {
      this.#finish(rec, { code: outcome.code, message: outcome.message }, undefined, outcome.ms);
    }
  }

  #retriesOf(task: string): number {
    return this.#registry.get(task)?.retries ?? this.#opts.retries;
  }

  /**
   * Runs a failed task again after a backoff (or the delay the handler asked for, up to
   * `--retry-max-delay`). It stays `queued` meanwhile, and still counts as accepted. The client
   * hears of it as a `PROGRESS` at 0% that says why and when.
   */
  #retry(rec: TaskRecord, job: Job, outcome: Extract<Outcome, { ok: false }>): void {
    this.#countsOf(rec.task).retried++;
    rec.state = "queued";
    this.#journal?.failedAttempt(rec.id, job.attempt);
    const delay = outcome.retryAfterMs !== undefined
      ? Math.min(outcome.retryAfterMs, this.#opts.retryMaxDelayMs)
      : retryDelay(job.attempt, this.#opts.retryBackoffMs, this.#opts.retryMaxDelayMs);
    const of = this.#retriesOf(rec.task) + 1;
    rec.target?.send(
      reply.progress(
        rec.format,
        rec.id,
        rec.tag,
        0,
        `attempt ${job.attempt} of ${of} failed (${outcome.code}: ${outcome.message}); retrying in ${
          formatDuration(delay)
        }`,
      ),
    );
    taskLog.warn(
      "task {id} ({task}) failed on worker {worker}, attempt {attempt} of {of}: {code} {message}; retrying in {delay} ms",
      {
        id: rec.id,
        task: rec.task,
        worker: rec.worker,
        attempt: job.attempt,
        of,
        code: outcome.code,
        message: outcome.message,
        delay,
      },
    );
    const timer = setTimeout(() => {
      this.#retryTimers.delete(timer);
      this.#pool.submit({ ...job, attempt: job.attempt + 1 }, true);
    }, delay);
    this.#retryTimers.add(timer);
  }

  /** A task that was running on a terminated worker went back to the queue (not its fault). */
  #requeued(job: Job): void {
    const rec = this.#book.get(job.id);
    if (rec) rec.state = "queued";
  }

  #clock: number | undefined;

  /** `Date.now()`, read once per batch of work (a turn's microtasks), not once per task. */
  #now(): number {
    if (this.#clock === undefined) {
      this.#clock = Date.now();
      queueMicrotask(() => (this.#clock = undefined));
    }
    return this.#clock;
  }

  /** Records a task's end, sends its final reply, and files it for `/status`. Exactly once per task. */
  #finish(rec: TaskRecord, error: { code: string; message: string } | undefined, result?: unknown, ms = 0): void {
    this.#journal?.finish(rec.id, error ? "failed" : "done", rec.attempts, result, error);
    const target = rec.target;
    rec.target = undefined;
    if (error) {
      rec.state = "failed";
      rec.error = error;
      this.#counts.failed++;
      this.#countsOf(rec.task).failed++;
      const text = rec.attempts > 1 ? `${error.message} (after ${rec.attempts} attempts)` : error.message;
      target?.send(
        reply.failed(rec.format, rec.id, rec.tag, error.code, rec.format === "text" ? text : error.message, {
          attempts: rec.attempts,
        }),
      );
      taskLog.warn("task {id} ({task}) failed on worker {worker} after {ms} ms, attempt {attempt}: {code} {message}", {
        id: rec.id,
        task: rec.task,
        worker: rec.worker,
        ms,
        attempt: rec.attempts,
        code: error.code,
        message: error.message,
      });
    } else {
      rec.state = "done";
      rec.result = result;
      this.#counts.done++;
      this.#countsOf(rec.task).done++;
      target?.send(
        reply.done(rec.format, rec.id, rec.tag, result, { worker: rec.worker, attempts: rec.attempts, ms }),
      );
      if (this.#traceTasks) {
        taskLog.debug("task {id} ({task}) done on worker {worker} in {ms} ms, attempt {attempt}", {
          id: rec.id,
          task: rec.task,
          worker: rec.worker,
          ms,
          attempt: rec.attempts,
        });
      }
    }
    this.#book.finish(rec, this.#now());
    target?.taskEnded();
    if (this.#book.live === 0 && this.#finishedWaiters.length > 0) {
      const waiters = this.#finishedWaiters;
      this.#finishedWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }
}
