/**
 * The asynctask server, assembled: start-up (handlers, the store and what it recovered, the pool,
 * the socket), then the loop runs by itself; a graceful stop; a rolling reload.
 *
 * The walk of a request: {@linkcode Listener} accepts (`listen.ts`) → a `Connection` frames lines
 * (`net/connection.ts`) → the {@linkcode Desk} answers at once (`desk.ts`: `ACCEPTED` or `ERROR`)
 * → the {@linkcode TaskLifecycle} (`lifecycle.ts`) runs the task on the pool (`task/pool.ts`) and
 * sends its final reply to the same connection; the store (`store/`) keeps what must survive.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { formatDuration, formatSize } from "../cli/units.ts";
import { createRegistry, type HandlerRegistry } from "../task/handlers/mod.ts";
import type { TaskLimits } from "../task/pool.ts";
import type { HandlerSettings, TaskSpec } from "../task/spec.ts";
import { parseRateLimits, RateLimiter } from "../task/rate.ts";
import { isLoopback } from "./auth.ts";
// Loaded with every server, a token or not: with node:crypto loaded, V8 gives back the memory of
// expired results within ~40 s of a load (measured: RSS 200 → 113 MiB, idle 105); without it, not
// in minutes (190 MiB after 2 min) — V8's heuristics, not understood here, and ~1.3 MiB well spent.
import { TokenCheck } from "./token.ts";
import { Desk } from "./desk.ts";
import { StartError } from "./errors.ts";
import type { HttpServer } from "./http/mod.ts";
import { type ReplyTarget, TaskLifecycle } from "./lifecycle.ts";
import type { Scheduler, ScheduleSpec } from "../task/schedule.ts";
import type { Metrics } from "./metrics.ts";
import { Listener, openListener } from "./listen.ts";
import { PollGate } from "./net/poll_gate.ts";
import type { SocketListener } from "./net/tls.ts";
import type { ServeOptions } from "./options.ts";
import type { ServerStats } from "./stats.ts";
import { MemoryStore } from "./store/memory.ts";
import { type SharedQueue, StoreUnavailableError, type TaskStore } from "./store/store.ts";
import { parseBrokerUrl } from "./store/redis_url.ts";

export { StartError } from "./errors.ts";
export { DEFAULT_SERVE_OPTIONS, type ServeOptions } from "./options.ts";
export type { ServerStats, TaskCounts } from "./stats.ts";

const log = getLogger(["asynctask", "server"]);

/** How a graceful stop went. */
export interface ShutdownReport {
  /** Tasks that had not finished when `--shutdown-timeout` ran out (they were failed with `shutting_down`). */
  unfinished: number;
  /** Delayed tasks not due yet, failed with `shutting_down` at once: no store keeps them. */
  delayedFailed: number;
  /** Delayed tasks not due yet that the store keeps for the next start. */
  delayedKept: number;
}

/** What the process around the server decides (`server/cli.ts`). */
export interface ServerHooks {
  /**
   * The store failed while the server ran (a full disk, a vanished directory): nothing more can be
   * promised. The default logs and throws; `asynctask serve` exits at once, so that no `ACCEPTED`
   * goes out for what is not on disk.
   */
  storeFailed?(why: string): void;
}

/** The settings the handler registry is built from, on the server and in every worker. */
function handlerSettings(opts: ServeOptions, modules: string[] = opts.modules): HandlerSettings {
  return { smsDelayMs: opts.smsDelayMs, modules, tasks: opts.tasks };
}

/**
 * How long a stopping server waits for its last replies to be written: final replies wait for the
 * store to have their tasks' ends, and a store that cannot be reached (Redis down) must not hold
 * the stop forever.
 */
const REPLY_FLUSH_MS = 5000;

/** A reply target for tasks nobody submitted over a connection (periodic runs): their end is logged and kept. */
const NOBODY: ReplyTarget = { writable: false, send() {}, sendFinal() {}, taskAccepted() {}, taskEnded() {} };

/**
 * Starts the `schedules` map: each run is an ordinary task (an id, the logs, `/status`, `/stats`),
 * submitted as if by a client that went away. The last runs are kept by the store, so that after
 * a restart a missed run follows its schedule's `missed` policy.
 */
function startSchedules(
  schedule: typeof import("../task/schedule.ts"),
  specs: ScheduleSpec[],
  lifecycle: TaskLifecycle,
  store: TaskStore,
  state: Record<string, string> | undefined,
): Scheduler {
  let lastRuns: Record<string, number> = {};
  try {
    lastRuns = JSON.parse(state?.schedules ?? "{}");
  } catch {
    log.warn("the schedules' last runs kept by {store} cannot be read; every schedule starts from now", {
      store: store.name,
    });
  }
  const scheduler: Scheduler = new schedule.Scheduler(specs, (spec, dueAt, run) => {
    const data = spec.data;
    let id: number;
    try {
      id = lifecycle.submit({
        task: spec.task,
        data,
        format: "json",
        connId: 0,
        size: JSON.stringify(data)?.length ?? 4,
        summary: `schedule ${spec.name}${run.catchUp ? " (a missed run, caught up)" : ""}`,
        priority: spec.priority,
      }, NOBODY);
    } catch (e) {
      if (!(e instanceof StoreUnavailableError)) throw e;
      log.error("schedule {name}: its run due {due} was not submitted: {why}", {
        name: spec.name,
        due: new Date(dueAt).toISOString(),
        why: e.message,
      });
      return;
    }
    log.info("schedule {name}: task {id} ({task}), due {due}", {
      name: spec.name,
      id,
      task: spec.task,
      due: new Date(dueAt).toISOString(),
    });
    store.saveState("schedules", JSON.stringify(scheduler.lastRuns()));
  });
  scheduler.start(lastRuns);
  return scheduler;
}

/** The per-task limits the pool enforces: from the handlers that set their own, and the tasks map's rates. */
function taskLimits(registry: HandlerRegistry, specs: TaskSpec[] = []): Map<string, TaskLimits> {
  const limits = new Map<string, TaskLimits>();
  for (const h of registry.values()) {
    if (h.timeoutMs === undefined && h.concurrency === undefined) continue;
    limits.set(h.name, {
      ...(h.timeoutMs !== undefined ? { timeoutMs: h.timeoutMs } : {}),
      ...(h.concurrency !== undefined ? { concurrency: h.concurrency } : {}),
    });
  }
  for (const spec of specs) {
    if (!spec.rate) continue;
    const parsed = parseRateLimits(spec.rate, `tasks.${spec.name}.rate`);
    if (!parsed.ok) throw new StartError(parsed.message); // checked when the config was read
    const rates = parsed.value.map((r) => new RateLimiter(r, { name: spec.name }));
    limits.set(spec.name, { ...limits.get(spec.name), rates });
  }
  return limits;
}

/** Each rate limiter with the key its state is kept under: `rate.<task>.<n>`. */
function rateLimiters(limits: Map<string, TaskLimits>): [string, RateLimiter][] {
  return [...limits].flatMap(([task, l]) =>
    (l.rates ?? []).map((r, i): [string, RateLimiter] => [`rate.${task}.${i}`, r])
  );
}

/**
 * The journal's module, once `--journal` has loaded it: loaded only then, because it brings
 * node:sqlite and the journal's thread along. Without it no store is a journal, and no error a
 * journal error.
 */
let journal: typeof import("./store/journal.ts") | undefined;

async function openStore(options: ServeOptions, hooks: ServerHooks): Promise<TaskStore> {
  if (options.broker) return await openBroker(options, options.broker);
  if (!options.journal) return new MemoryStore();
  const path = options.journal;
  journal ??= await import("./store/journal.ts");
  const { JournalError, JournalStore } = journal;
  try {
    const store = await JournalStore.open(path, {
      sync: options.journalSync,
      reset: options.journalReset,
      onFatal: (why) => {
        const message =
          `journal ${path}: ${why}; stopping now so that no ACCEPTED is sent for a task that is not on disk. Fix the cause (free space, permissions) and restart: committed tasks are recovered`;
        if (hooks.storeFailed) hooks.storeFailed(message);
        else log.fatal(message);
      },
    });
    for (const warning of store.warnings) log.warn("{warning}", { warning });
    return store;
  } catch (e) {
    if (e instanceof JournalError) throw new StartError(e.message);
    throw e;
  }
}

/** The cluster as `/stats` shows it (with the broker). */
function clusterStats(shared: SharedQueue): NonNullable<ServerStats["cluster"]> {
  const c = shared.lastCluster;
  return {
    instance: shared.instance,
    redis: shared.up ? "up" : "down",
    instances: (c?.instances ?? []).map((m) => ({
      instance: m.instance,
      workers: m.workers,
      held: m.held,
      seen_ms_ago: m.seenMsAgo,
    })),
    queues: c?.queues ?? {},
  };
}

/** Connects to the broker's Redis (`--broker`); the Redis client is loaded only then. */
async function openBroker(opts: ServeOptions, url: string): Promise<TaskStore> {
  const parsed = parseBrokerUrl(url, opts.brokerPassword);
  if (!parsed.ok) throw new StartError(parsed.message);
  let caCert: string | undefined;
  if (opts.brokerCa) {
    try {
      caCert = await Deno.readTextFile(opts.brokerCa);
    } catch (e) {
      throw new StartError(`--broker-ca ${opts.brokerCa}: ${e instanceof Error ? e.message : e}`);
    }
  }
  const { RedisStore, BrokerError } = await import("./store/redis.ts");
  try {
    return await RedisStore.open({
      address: parsed.value,
      prefix: opts.brokerPrefix,
      visibilityMs: opts.brokerVisibilityMs,
      resultTtlMs: opts.resultTtlMs,
      failedTtlMs: Math.max(opts.keepFailedMs, opts.resultTtlMs),
      caCert,
      describe: () => ({ workers: opts.workers }),
    });
  } catch (e) {
    if (e instanceof BrokerError) throw new StartError(`--broker: ${e.message}`);
    throw e;
  }
}

/**
 * A running server.
 *
 * @example
 * ```ts
 * import { DEFAULT_SERVE_OPTIONS, TaskServer } from "./server.ts";
 * import assert from "node:assert/strict";
 * const server = await TaskServer.start({ ...DEFAULT_SERVE_OPTIONS, port: 0, workers: 1 });
 * assert.ok(server.addr.port > 0);
 * assert.deepEqual(await server.shutdown(1000), { unfinished: 0, delayedFailed: 0, delayedKept: 0 });
 * ```
 */
export class TaskServer {
  readonly addr: Deno.NetAddr;
  readonly #opts: ServeOptions;
  readonly #store: TaskStore;
  readonly #lifecycle: TaskLifecycle;
  readonly #listener: Listener;
  readonly #gate: PollGate | undefined;
  readonly #startedAt = Date.now();
  readonly #timers: ReturnType<typeof setInterval>[] = [];
  #registry: HandlerRegistry;
  #stopping = false;
  /** The `schedules` map's timer, when there is one. */
  #periodic: Scheduler | undefined;
  /** The rate limiters, by the key their state is kept under. */
  #limiters: [string, RateLimiter][] = [];

  /** Keeps every rate limiter's state in the store (every 10 s, and on a stop). */
  #saveRates(): void {
    for (const [key, limiter] of this.#limiters) this.#store.saveState(key, JSON.stringify(limiter.export()));
  }
  #reloads = 0;
  #reloading: Promise<boolean> | undefined;
  /** The HTTP side (`--http`): dashboard, /metrics, probes. */
  #http: HttpServer | undefined;

  private constructor(
    opts: ServeOptions,
    registry: HandlerRegistry,
    store: TaskStore,
    lifecycle: TaskLifecycle,
    listener: Listener,
    gate: PollGate | undefined,
  ) {
    this.#opts = opts;
    this.#registry = registry;
    this.#store = store;
    this.#lifecycle = lifecycle;
    this.#listener = listener;
    this.#gate = gate;
    this.addr = listener.addr;
    this.#timers.push(setInterval(() => lifecycle.sweep(), 1000));
    if (opts.statsIntervalMs > 0) {
      this.#timers.push(setInterval(() =>
        lifecycle.counts.logActivity(opts.statsIntervalMs, {
          queued: lifecycle.pool.queued,
          running: lifecycle.pool.running,
          connections: listener.connections,
        }), opts.statsIntervalMs));
    }
  }

  /**
   * Starts: loads the handlers, opens the store and takes back what it kept, starts the pool, and
   * listens.
   *
   * @throws {StartError} when the options do not fit together, the store cannot be used, or the
   * address cannot be listened on — each with the fix.
   */
  static async start(options: ServeOptions, hooks: ServerHooks = {}): Promise<TaskServer> {
    // Every result must fit a connection's replies: --max-result is at most --max-output (the
    // command line refuses the two given the other way round; here the smaller one wins).
    const opts = { ...options, maxResultBytes: Math.min(options.maxResultBytes, options.maxOutput) };
    let registry: HandlerRegistry;
    try {
      registry = await createRegistry(handlerSettings(opts));
    } catch (e) {
      throw new StartError(e instanceof Error ? e.message : String(e));
    }
    if (
      opts.tasks?.some((t) => t.kind === "command") &&
      Deno.permissions.querySync({ name: "run" }).state !== "granted"
    ) {
      throw new StartError(
        "the config declares command tasks, but this process may not run programs — start it with --allow-run (deno task serve has it)",
      );
    }
    for (const s of opts.schedules ?? []) {
      const handler = registry.get(s.task);
      if (!handler) {
        throw new StartError(
          `schedules.${s.name}.task: no task named "${s.task}"; this server runs ${[...registry.keys()].join(", ")}`,
        );
      }
      try {
        s.data = handler.validate(s.data); // as a client's would be, once: every run sends the same
      } catch (e) {
        throw new StartError(`schedules.${s.name}.data: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    if (opts.defaultTask !== undefined && !registry.has(opts.defaultTask)) {
      throw new StartError(
        `--task "${opts.defaultTask}" is not a task this server knows; use one of ${[...registry.keys()].join(", ")}`,
      );
    }
    // Loaded only when used, and before anything starts: the cron parser (croner) with a schedules
    // map. A server without one does not carry its code and heap.
    const schedule = opts.schedules?.length ? await import("../task/schedule.ts") : undefined;
    const token = opts.token ? new TokenCheck(opts.token) : undefined;
    const store = await openStore(opts, hooks);
    const broker = store.shared !== undefined;
    let socket: SocketListener;
    let recovered;
    try {
      recovered = await store.load(Date.now() - opts.resultTtlMs, Date.now() - opts.keepFailedMs);
      socket = await openListener(opts);
    } catch (e) {
      await store.close().catch(() => {});
      if (journal && e instanceof journal.JournalError) throw new StartError(e.message);
      throw e;
    }
    // Without its loopback socket pair (no 127.0.0.1 here, or a narrower --allow-net) the server
    // still works; a flood can then delay new connections by a second or two.
    const gate = await PollGate.open().catch((e: Error) => {
      log.warn("no poll gate ({error}): under a flood of pipelined requests, new connections may wait", {
        error: e.message,
      });
      return undefined;
    });
    // The server is made last, from the parts below; until then, the handlers are the first ones.
    const made: { server?: TaskServer } = {};
    // The handlers of the moment: a reload replaces them.
    const current = () => made.server ? made.server.#registry : registry;
    const limits = taskLimits(registry, opts.tasks);
    // Rate limits hold across a restart where the store keeps state: each limiter's next slots.
    const limiters = rateLimiters(limits);
    for (const [key, limiter] of limiters) {
      const saved = recovered.state?.[key];
      if (saved === undefined) continue;
      try {
        limiter.import(JSON.parse(saved));
      } catch {
        log.warn("the state of rate limit {key} kept by {store} cannot be read; it starts afresh", {
          key,
          store: store.name,
        });
      }
    }
    const lifecycle = new TaskLifecycle(
      store,
      { ...opts, settings: handlerSettings(opts), limits },
      {
        has: (task) => current().has(task),
        retriesOf: (task) => current().get(task)?.retries,
        names: () => [...current().keys()],
      },
      opts,
    );
    lifecycle.timed = opts.http !== undefined;
    lifecycle.recover(recovered);
    // With the broker: take as many tasks as the workers run at once, and as many again waiting.
    lifecycle.consume(2 * opts.workers * opts.concurrency, (task) => limits.get(task)?.concurrency);
    const periodic = schedule && opts.schedules?.length
      ? startSchedules(schedule, opts.schedules, lifecycle, store, recovered.state)
      : undefined;
    if (journal && store instanceof journal.JournalStore) {
      store.client.onCommit = (s) => lifecycle.metrics.journalCommit(s);
    }
    const desk = new Desk({
      lifecycle,
      registry: current,
      defaultTask: opts.defaultTask,
      token,
      queueSize: opts.queueSize,
      maxQueueBytes: opts.maxQueueBytes,
      maxDelayMs: opts.maxDelayMs,
      specs: new Map((opts.tasks ?? []).map((t) => [t.name, t])),
      maxLine: opts.maxLine,
      stats: () => made.server!.stats(),
      stopping: () => made.server ? made.server.#stopping : false,
    });
    const listener = new Listener(socket, { ...opts, tokenRequired: token !== undefined }, {
      line: (c, event) => desk.line(c, event),
      refused: () => lifecycle.counts.refused++,
      // The journal: a connection writes nothing that its group commit does not cover yet (a few ms).
      // The broker: each reply that needs Redis waits for its own answer (ACCEPTED, a final reply).
      ...(store.durable && !broker ? { beforeWrite: () => store.commit() } : {}),
    }, gate);
    const server = made.server = new TaskServer(opts, registry, store, lifecycle, listener, gate);
    server.#periodic = periodic;
    server.#limiters = limiters;
    if (limiters.length > 0) server.#timers.push(setInterval(() => server.#saveRates(), 10_000));
    if (!isLoopback(opts.host) && !opts.token) {
      log.warn(
        "listening on {host} without a token: anyone who can reach port {port} can run tasks here. Set --token (or the ASYNCTASK_TOKEN environment variable), or listen on 127.0.0.1",
        { host: opts.host, port: server.addr.port },
      );
    }
    log.info(
      "listening on {address} (TLS {tls}, token {token}, store {store}) — {workers} workers × {concurrency} tasks, dispatch {dispatch}, queue {queueSize}, default task {task}",
      {
        address: `${server.addr.hostname}:${server.addr.port}`,
        tls: opts.tls ? "on" : "off",
        token: opts.token ? "required" : "none",
        store: store.name,
        workers: opts.workers,
        concurrency: opts.concurrency,
        dispatch: opts.dispatch,
        queueSize: opts.queueSize,
        task: opts.defaultTask ?? "none (requests name their task)",
        maxLine: formatSize(opts.maxLine),
        resultTtl: formatDuration(opts.resultTtlMs),
      },
    );
    if (opts.http !== undefined) {
      // Loaded only with --http: the HTTP side brings node:net and node:tls along.
      const { startHttp } = await import("./http/wire.ts");
      server.#http = await startHttp({ ...opts, http: opts.http }, {
        stats: () => server.stats(),
        metrics: () => server.metrics,
        registry: () => server.#registry,
        storeWritable: () =>
          store.shared && !store.shared.up
            ? Promise.reject(new Error(`Redis is unreachable (${store.name}); reconnecting`))
            : store.commit(),
        workersReady: () => lifecycle.pool.workersReady,
        stopping: () => server.#stopping,
        lineAddr: server.addr,
      }).catch(async (e: unknown) => {
        await server.shutdown(0);
        throw e;
      });
    }
    return server;
  }

  /** What is measured beyond the counts: run and wait times, worker restarts, journal commits (`metrics.ts`). */
  get metrics(): Metrics {
    return this.#lifecycle.metrics;
  }

  /** Where the HTTP side listens (`--http`); undefined without it. */
  get httpAddr(): Deno.NetAddr | undefined {
    return this.#http?.addr;
  }

  /** Tasks queued, running or waiting to retry now. */
  get unfinished(): number {
    return this.#lifecycle.unfinished;
  }

  /** Unfinished tasks a graceful stop waits for: delayed ones not due yet are not among them. */
  get stopWaitsFor(): number {
    return this.#lifecycle.stopWaitsFor;
  }

  /** The current counts, as `/stats` reports them. */
  stats(): ServerStats {
    const l = this.#lifecycle;
    return {
      connections: this.#listener.connections,
      connections_total: this.#listener.accepted,
      accepted: l.counts.accepted,
      refused: l.counts.refused,
      queued: l.pool.queued,
      running: l.pool.running,
      done: l.counts.done,
      failed: l.counts.failed,
      retrying: l.retrying,
      retained_results: l.retained,
      worker_messages: { to_workers: l.pool.messages.toWorkers, from_workers: l.pool.messages.fromWorkers },
      uptime_s: Math.round((Date.now() - this.#startedAt) / 100) / 10,
      tasks: [...this.#registry.keys()],
      by_task: l.counts.byTask(),
      workers: l.pool.stats(),
      ...(l.shared ? { cluster: clusterStats(l.shared) } : {}),
    };
  }

  /**
   * Stops gracefully: no new connections or tasks (requests get `ERROR shutting_down`), waits up
   * to `timeoutMs` for queued and running tasks, delivers their final replies, then closes.
   */
  async shutdown(timeoutMs: number): Promise<ShutdownReport> {
    this.#stopping = true;
    this.#periodic?.stop();
    // /readyz answers 503 from now on, while the tasks drain; the HTTP side closes before anything else does.
    this.#http?.drain();
    await this.#listener.stopAccepting();
    this.#lifecycle.drain();
    const delayedFailed = this.#lifecycle.failScheduled(
      "shutting_down",
      "the server stopped before the task's time, and nothing keeps delayed tasks across a restart without --journal; submit it again",
    );
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = await Promise.race([
      this.#lifecycle.allFinished().then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
    ]);
    clearTimeout(timer);
    const unfinished = timedOut
      ? this.#lifecycle.failUnfinished(
        "shutting_down",
        `the server stopped before the task finished (--shutdown-timeout ${formatDuration(timeoutMs)})`,
      )
      : 0;
    await this.#http?.close();
    await this.#lifecycle.pool.close();
    this.#lifecycle.flushLog();
    this.#saveRates();
    for (const t of this.#timers) clearInterval(t);
    const cut = await this.#listener.close(REPLY_FLUSH_MS);
    if (cut > 0) {
      log.warn(
        "{n} connection(s) closed with final replies unwritten: the store did not confirm their tasks' ends within {wait} (with the broker, an end Redis did not take is not recorded: another server runs that task again)",
        { n: cut, wait: formatDuration(REPLY_FLUSH_MS) },
      );
    }
    await this.#store.close();
    this.#gate?.close();
    return { unfinished, delayedFailed, delayedKept: this.#lifecycle.keptScheduled };
  }

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
    const modules = this.#opts.modules.map((url) => `${url}${url.includes("?") ? "&" : "?"}reload=${generation}`);
    const settings = handlerSettings(this.#opts, modules);
    let registry: HandlerRegistry;
    try {
      registry = await createRegistry(settings);
    } catch (e) {
      log.error("reload abandoned: {error}; the workers keep the code they have", {
        error: e instanceof Error ? e.message : String(e),
      });
      return false;
    }
    const t0 = performance.now();
    this.#registry = registry;
    await this.#lifecycle.pool.reload(settings);
    log.info("reload done: {workers} workers replaced one at a time in {ms} ms; tasks: {tasks}", {
      workers: this.#opts.workers,
      ms: Math.round(performance.now() - t0),
      tasks: [...registry.keys()].join(", "),
    });
    return true;
  }
}
