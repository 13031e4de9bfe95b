/**
 * The task pool: `--workers` worker threads in numbered slots, each running up to `--concurrency`
 * tasks at once, fed from a bounded queue by a dispatch mode, and recycled after
 * `--max-tasks-per-worker` tasks (Swoole's `max_request`) without losing any task.
 *
 * The walk of a task: {@linkcode WorkerPool.submit} → queue → dispatch → {@linkcode PoolWorker.run}
 * → `task/worker.ts` runs the handler → outcome → `events.settled`.
 *
 * @module
 */
import { connectionSlot, type DispatchMode, pickSlot } from "./dispatch.ts";
import {
  type FailureCode,
  type Outcome,
  type ProgressReport,
  type RunRef,
  sizeText,
  type TaskLogRecord,
} from "./messages.ts";
import { type Job, type MessageCounts, MIN_WORKER_HEAP, PoolWorker, type PoolWorkerEvents } from "./pool_worker.ts";
import { Deque, PriorityLane } from "./queue.ts";
import { MinHeap } from "./heap.ts";
import { type RateLimiter, tryStartAll } from "./rate.ts";
import { formatDuration } from "../cli/units.ts";
import type { HandlerSettings } from "./spec.ts";

export type { Job } from "./pool_worker.ts";

/** One task's own limits, from the config file; each falls back to the pool's. */
export interface TaskLimits {
  /** Rate limits (the config's `rate`): a task over one waits for its next slot, in the queue. */
  rates?: readonly RateLimiter[];
  /** A run longer than this ends as `timeout`; 0 = no limit. */
  timeoutMs?: number;
  /** Most runs of this task at once across the pool. */
  concurrency?: number;
}

/** How the pool is sized and fed. */
export interface PoolOptions {
  /** Worker slots (`--workers`). */
  workers: number;
  /** Tasks in flight per worker (`--concurrency`). */
  concurrency: number;
  dispatch: DispatchMode;
  /** Most tasks that may wait for a worker (`--queue-size`). */
  queueSize: number;
  /** Replace a worker after this many tasks; 0 = never (`--max-tasks-per-worker`). */
  maxTasksPerWorker: number;
  /**
   * Memory limit of each worker in bytes (`--worker-heap`): its heap limit, and the most heap plus
   * external memory (ArrayBuffers) it may use before it is replaced. A handler that exhausts it
   * stalls or loses only its worker.
   */
  workerHeap: number;
  /** Most bytes of a task's result as JSON text; a larger one fails its task (`--max-result`, default 8 MiB). */
  maxResultBytes?: number;
  /**
   * CPU niceness of the worker threads (`--worker-nice`, Linux only): handlers that burn CPU yield
   * to the main thread, which accepts connections and answers requests.
   */
  workerNice?: number;
  /** A run longer than this ends as `timeout`; 0 = no limit (`--task-timeout`). */
  taskTimeoutMs: number;
  /** Per-task limits by task name (the config file's `timeout` and `concurrency`). */
  limits?: ReadonlyMap<string, TaskLimits>;
  settings: HandlerSettings;
}

/** What the pool tells its owner. `worker` is the slot id, 1-based. */
export interface PoolEvents {
  /** A task was handed to a worker. */
  started?(job: Job, worker: number): void;
  /** A task's run ended: exactly once per run. */
  settled(job: Job, outcome: Outcome, worker: number): void;
  /**
   * A worker died (or was replaced for using too much memory) and was replaced. `failed`: the
   * tasks held responsible (see {@linkcode WorkerPool}), already settled as `worker_crashed` before
   * this call. `requeued`: the other tasks that were on it, as they run again — they go back to
   * the queue right after this call, without spending a retry (but as a new `attempt`, with
   * `requeues` counted): the owner marks them queued again.
   */
  crashed?(worker: number, reason: string, failed: Job[], requeued: Job[]): void;
  /** A worker was replaced after `--max-tasks-per-worker` tasks. */
  recycled?(worker: number): void;
  /** A running task reported progress. */
  progress?(job: Job, report: ProgressReport): void;
  /** A running task's handler logged a line. */
  log?(job: Job, record: TaskLogRecord): void;
  /**
   * A worker whose event loop stayed blocked after a timeout was terminated and replaced. The other
   * tasks running on it were not at fault: they went back to the queue to run again (`requeued`).
   */
  killed?(worker: number, reason: string, requeued: Job[]): void;
}

/** When a job entered the queue: its place among jobs of its priority. */
const queuedAt = (job: Job): number => job.queuedAt ?? 0;

/** How long a worker may leave an `abort` unacknowledged before it is terminated. */
export const ABORT_GRACE_MS = 1000;
/** An abort not acknowledged within this many ms means the worker's event loop is blocked. */
export const ABORT_ACK_MS = 50;
/** How often one task may go back to the queue because its worker was stopped under it. */
export const MAX_REQUEUES = 3;
/**
 * How long a handler may go on running after its task timed out and its signal was aborted,
 * before its worker is replaced: a command's program has 2 s between SIGTERM and SIGKILL, and
 * then some to be reaped.
 */
export const ABANDON_GRACE_MS = 5000;

/** Per-worker counts for `/stats`. */
export interface WorkerStats {
  id: number;
  running: number;
  done: number;
  failed: number;
  /** How many times this slot's worker was replaced (recycled or crashed). */
  restarts: number;
  /** Its worker's memory, heap and external (ArrayBuffers), at its last report (every 2 s). */
  memory_bytes: number;
  /** `starting` (loading its handlers), `idle` or `busy`. */
  state: "starting" | "idle" | "busy";
}

interface Slot {
  readonly id: number;
  worker: PoolWorker;
  /** Replaced workers of this slot that still finish their tasks. */
  readonly retiring: Set<PoolWorker>;
  /** This slot's own queue in `connection` mode. */
  readonly lane: PriorityLane<Job>;
  /** Tasks in flight on the slot's workers, the retiring ones included. */
  readonly busy: number;
  done: number;
  failed: number;
  restarts: number;
}

/**
 * A pool of worker threads.
 *
 * When a worker dies, the tasks that were on it are of two kinds: the suspects — the tasks that may
 * have killed it — and the others, which were not at fault and run again at once without
 * spending a retry (up to {@linkcode MAX_REQUEUES} times each). The suspects are picked so:
 *
 * 1. the worker named the run whose code threw the error that escaped, or that closed it (the
 *    operator's code — module tasks, `--module` handlers — runs in an async context that names
 *    its run): that run alone — and nobody, if it is no longer in flight (it had timed out, or
 *    returned and left a timer behind);
 * 2. otherwise (it exited without a word, ran out of memory, went over `--worker-heap`, or the
 *    error came from code outside any such context), the task on probation on it, if one was:
 *    it was on board at two crashes;
 * 3. otherwise, every task that was in flight on it.
 *
 * A lone suspect fails with `worker_crashed`. Several suspects (case 3) cannot be told apart by
 * anything the pool sees: each runs again on probation, at most one per worker at a time, so
 * that the next crash with it on board names it (case 2) — a task that is a suspect in two
 * crashes fails. An innocent one on probation just finishes.
 *
 * @example
 * ```ts ignore
 * const pool = new WorkerPool(
 *   { workers: 4, concurrency: 64, dispatch: "least-busy", queueSize: 1000, maxTasksPerWorker: 0, workerHeap: 512 << 20, settings: { smsDelayMs: 5000 } },
 *   { settled: (job, outcome) => console.log(job.id, outcome.ok) },
 * );
 * pool.submit({ id: 1, task: "echo", data: "hi", attempt: 1, connId: 1 });
 * pool.close();
 * ```
 */
export class WorkerPool {
  #opts: PoolOptions;
  readonly #events: PoolEvents;
  readonly #slots: Slot[];
  readonly #shared = new PriorityLane<Job>(queuedAt);
  readonly #cursor = { next: 0 };
  readonly #workerEvents: PoolWorkerEvents;
  /** Messages to and from the workers, for `/stats`. */
  readonly messages: MessageCounts = { toWorkers: 0, fromWorkers: 0 };
  #queued = 0;
  #closed = false;
  readonly #timeoutTimer: ReturnType<typeof setInterval> | undefined;
  /** Runs in flight of each task that has a `concurrency` limit. */
  readonly #runs = new Map<string, number>();
  /**
   * Tasks taken off the queue while their task was at its `concurrency` limit: they wait here, in
   * order, so that they do not block the tasks of other names behind them.
   */
  readonly #parked = new Map<string, Deque<Job>>();
  /** Task names whose tasks are not started (`/pause`), or all of them. */
  readonly #paused = new Set<string>();
  #pausedAll = false;
  #parkedCount = 0;
  /** Tasks on probation (suspects of a crash) waiting for a worker that has none on board, in order. */
  readonly #probation = new Deque<Job>();

  constructor(opts: PoolOptions, events: PoolEvents) {
    this.#opts = opts;
    this.#events = events;
    this.#workerEvents = {
      settled: (w, job, outcome) => this.#onSettled(w, job, outcome),
      crashed: (w, reason, blame) => this.#onCrashed(w, reason, blame),
      overMemory: (w, bytes) => this.#onOverMemory(w, bytes),
      progress: (_w, job, report) => events.progress?.(job, report),
      log: (_w, job, record) => events.log?.(job, record),
    };
    this.#slots = Array.from({ length: opts.workers }, (_, i) => ({
      id: i + 1,
      worker: this.#spawn(i + 1),
      retiring: new Set<PoolWorker>(),
      lane: new PriorityLane<Job>(queuedAt),
      get busy() {
        let n = this.worker.inflight.size;
        if (this.retiring.size > 0) { for (const w of this.retiring) n += w.inflight.size; }
        return n;
      },
      done: 0,
      failed: 0,
      restarts: 0,
    }));
    const timeouts = [opts.taskTimeoutMs, ...[...(opts.limits?.values() ?? [])].map((l) => l.timeoutMs ?? 0)]
      .filter((t) => t > 0);
    if (timeouts.length > 0) {
      const tick = Math.min(250, Math.max(10, Math.round(Math.min(...timeouts) / 10)));
      this.#timeoutTimer = setInterval(() => this.#checkTimeouts(), tick);
    }
  }

  /** Tasks waiting for a worker. */
  get queued(): number {
    return this.#queued;
  }

  /** Tasks in flight on workers (including workers being recycled). */
  get running(): number {
    let n = 0;
    for (const s of this.#slots) n += s.busy;
    return n;
  }

  /** Whether a task submitted now would be queued rather than refused. */
  get hasRoom(): boolean {
    return this.#queued < this.#opts.queueSize;
  }

  /**
   * Queues a task and dispatches what it can. Returns false, queuing nothing, when the queue is
   * full (the server then answers `queue_full`) — unless `force`: a retry of an accepted task
   * always gets back in.
   */
  submit(job: Job, force = false): boolean {
    if (this.#closed || (!force && !this.hasRoom)) return false;
    job.queuedAt = this.#turnNow();
    const lane = this.#opts.dispatch === "connection"
      ? this.#slots[connectionSlot(job.connId, this.#slots.length)].lane
      : this.#shared;
    lane.push(job, job.priority ?? 0);
    this.#queued++;
    this.#drain();
    return true;
  }

  /**
   * Stops starting tasks of `task` (of every task, without one). Accepting goes on: they wait in
   * the queue (and count against `--queue-size`); running ones finish.
   */
  pause(task?: string): void {
    if (task === undefined) this.#pausedAll = true;
    else this.#paused.add(task);
  }

  /** Starts tasks of `task` (of every task, without one) again. */
  resume(task?: string): void {
    if (task === undefined) {
      this.#pausedAll = false;
      this.#paused.clear();
    } else this.#paused.delete(task);
    this.#drain();
  }

  /** What is paused: `"*"` for everything, else task names. */
  get paused(): string[] {
    return this.#pausedAll ? ["*"] : [...this.#paused];
  }

  /** Whether `task` is paused (by its own pause or a pause of every task). */
  isPaused(task: string): boolean {
    return this.#pausedAll || this.#paused.has(task);
  }

  #now: number | undefined;

  /** `performance.now()`, read once per turn of the event loop: every task queued in it queued at once. */
  #turnNow(): number {
    if (this.#now === undefined) {
      this.#now = performance.now();
      queueMicrotask(() => (this.#now = undefined));
    }
    return this.#now;
  }

  /** Workers that have loaded their handlers and take tasks. */
  get workersReady(): number {
    let n = 0;
    for (const s of this.#slots) if (s.worker.ready) n++;
    return n;
  }

  /** Per-slot counts. */
  stats(): WorkerStats[] {
    return this.#slots.map((s) => ({
      id: s.id,
      running: s.busy,
      done: s.done,
      failed: s.failed,
      restarts: s.restarts,
      memory_bytes: s.worker.memoryBytes,
      state: !s.worker.ready ? "starting" : s.busy > 0 ? "busy" : "idle",
    }));
  }

  /**
   * Rolling reload: replaces the workers one slot at a time with workers built from `settings`
   * (new handler code, fresh memory). Each new worker takes new tasks at once; the old one
   * finishes what it runs, then ends, before the next slot is replaced. Nothing is dropped or
   * refused because of it.
   */
  async reload(settings: HandlerSettings): Promise<void> {
    this.#opts = { ...this.#opts, settings };
    for (const slot of this.#slots) {
      if (this.#closed) return;
      const old = slot.worker;
      this.#recycle(slot);
      await old.ended;
    }
  }

  /**
   * Stops every worker. Tasks still queued or running are dropped: the server waits for its tasks
   * first. Handlers still running get their signal aborted and up to `graceMs` to act on it (a
   * command's process group is sent SIGKILL), then their workers are terminated. Every program a
   * command task started and that is still alive — those of timed-out tasks in their SIGTERM
   * grace too — is SIGKILLed with its process group before this resolves.
   */
  async close(graceMs = 500): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timeoutTimer);
    clearTimeout(this.#rateTimer);
    const busy = this.#slots.flatMap((s) => [s.worker, ...s.retiring]).filter((w) => w.inflight.size > 0);
    for (const w of busy) w.abort([...w.inflight.keys()], "shutdown");
    const until = performance.now() + graceMs;
    while (busy.some((w) => w.unresponsiveFor(performance.now()) > 0) && performance.now() < until) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const all: PoolWorker[] = [];
    for (const s of this.#slots) {
      all.push(s.worker, ...s.retiring);
      s.worker.terminate();
      for (const w of s.retiring) w.terminate();
      s.retiring.clear();
    }
    // terminate() SIGKILLed the programs; a thread that started one more before it stopped has it
    // killed when it has ended. Bounded: a thread that does not end is not waited for.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(all.map((w) => w.exited)),
      new Promise((r) => (timer = setTimeout(r, 2000))),
    ]);
    clearTimeout(timer);
    for (const w of all) w.killChildren();
  }

  #spawn(slot: number): PoolWorker {
    return new PoolWorker(slot, this.#opts, this.#workerEvents, this.messages);
  }

  #drain(): void {
    if (this.#queued === 0 || this.#closed) return;
    if (this.#probation.length > 0) this.#placeProbation();
    if (this.#parkedCount > 0) this.#unpark();
    const { concurrency, dispatch } = this.#opts;
    if (dispatch === "connection") {
      for (const slot of this.#slots) {
        while (slot.lane.length > 0 && slot.busy < concurrency) this.#dispatch(slot, slot.lane.shift()!);
      }
      return;
    }
    // Each slot counted once per drain, not once per task: a dispatch changes only its own slot's count.
    const busy = this.#countBusy();
    while (this.#shared.length > 0) {
      const i = pickSlot(dispatch, busy, concurrency, this.#cursor);
      if (i < 0) return;
      this.#dispatch(this.#slots[i], this.#shared.shift()!);
      busy[i] = this.#slots[i].busy;
    }
  }

  /** The slots' counts of tasks in flight, `[i]` for slot `i`, counted now (one array, reused). */
  #countBusy(): number[] {
    const busy = this.#busy;
    for (let i = 0; i < this.#slots.length; i++) busy[i] = this.#slots[i].busy;
    return busy;
  }
  readonly #busy: number[] = [];

  /** Starts `job` on `slot`, unless its task is at its limit (parked) or it is on probation and the slot's worker has one. */
  #dispatch(slot: Slot, job: Job): void {
    if (this.#atLimit(job.task)) this.#park(job);
    else if (!this.#rateAdmits(job)) return; // it waits for its slot (#rateWaiting)
    else if (job.suspected && this.#hasProbation(slot.worker)) this.#probation.push(job);
    else this.#start(slot, job);
  }

  /** Whether a task on probation runs on `w`. */
  #hasProbation(w: PoolWorker): boolean {
    for (const job of w.inflight.values()) if (job.suspected) return true;
    return false;
  }

  /** Starts the waiting tasks on probation that a worker can take (one on probation per worker), in order. */
  #placeProbation(): void {
    const { concurrency, dispatch } = this.#opts;
    const fits = (s: Slot) => s.busy < concurrency && !this.#hasProbation(s.worker);
    for (let n = this.#probation.length; n > 0; n--) {
      const job = this.#probation.shift()!;
      let slot: Slot | undefined;
      if (dispatch === "connection") {
        const own = this.#slots[connectionSlot(job.connId, this.#slots.length)];
        if (fits(own)) slot = own;
      } else {
        for (const s of this.#slots) if (fits(s) && (slot === undefined || s.busy < slot.busy)) slot = s;
      }
      if (slot === undefined) this.#probation.push(job);
      else if (this.#atLimit(job.task)) this.#park(job);
      else this.#start(slot, job);
    }
  }

  /** A free slot for `job`, by the dispatch mode; -1 when none. */
  #slotFor(job: Job): number {
    const { concurrency, dispatch } = this.#opts;
    if (dispatch !== "connection") return pickSlot(dispatch, this.#countBusy(), concurrency, this.#cursor);
    const i = connectionSlot(job.connId, this.#slots.length);
    return this.#slots[i].busy < concurrency ? i : -1;
  }

  /**
   * Tasks that wait for a rate limit's next slot, by when it comes; one timer, for the first. They
   * count as queued; each says why it waits ({@linkcode waitReason}).
   */
  readonly #rateWaiting = new MinHeap<Job>();
  readonly #waitReasons = new Map<number, string>();
  #rateTimer: ReturnType<typeof setTimeout> | undefined;
  #rateTimerAt = Infinity;

  /** Why a queued task waits, if a rate limit holds it: `rate limit sms: 1/min per key "…": next slot at …`. */
  waitReason(id: number): string | undefined {
    return this.#waitReasons.get(id);
  }

  /** Takes a slot of every rate limit of the job's task, or parks it until the next one; true when it may start. */
  #rateAdmits(job: Job): boolean {
    const rates = this.#opts.limits?.get(job.task)?.rates;
    if (!rates || rates.length === 0) return true;
    const entries: [RateLimiter, string][] = [];
    for (const limiter of rates) {
      const key = limiter.keyFor(job.data);
      // A key the data cannot fill (checked at the desk too): the task is limited as one key.
      entries.push([limiter, key.ok ? key.value : ""]);
    }
    const got = tryStartAll(entries);
    if (got.ok) {
      this.#waitReasons.delete(job.id);
      return true;
    }
    this.#waitReasons.set(job.id, got.message);
    this.#rateWaiting.push(job, got.until);
    if (got.until < this.#rateTimerAt) {
      clearTimeout(this.#rateTimer);
      this.#rateTimerAt = got.until;
      this.#rateTimer = setTimeout(() => {
        this.#rateTimer = undefined;
        this.#rateTimerAt = Infinity;
        this.#rateDue();
      }, Math.max(0, Math.min(got.until - Date.now(), 3_600_000)));
    }
    return false;
  }

  /** Gives the tasks whose next slot has come back to the dispatcher (they take it, or wait again). */
  #rateDue(): void {
    const now = Date.now();
    const due: Job[] = [];
    for (let at = this.#rateWaiting.peekKey(); at !== undefined && at <= now; at = this.#rateWaiting.peekKey()) {
      due.push(this.#rateWaiting.shift()!);
    }
    for (const job of due) this.#park(job);
    if (this.#rateWaiting.length > 0) {
      const next = this.#rateWaiting.peekKey()!;
      this.#rateTimerAt = next;
      this.#rateTimer = setTimeout(() => {
        this.#rateTimer = undefined;
        this.#rateTimerAt = Infinity;
        this.#rateDue();
      }, Math.max(0, Math.min(next - now, 3_600_000)));
    }
    this.#drain();
  }

  #atLimit(task: string): boolean {
    if (this.isPaused(task)) return true;
    const max = this.#opts.limits?.get(task)?.concurrency;
    return max !== undefined && (this.#runs.get(task) ?? 0) >= max;
  }

  #park(job: Job): void {
    let waiting = this.#parked.get(job.task);
    if (!waiting) this.#parked.set(job.task, waiting = new Deque<Job>());
    waiting.push(job);
    this.#parkedCount++;
  }

  /** Starts parked tasks whose task has room again, oldest first. */
  #unpark(): void {
    for (const [task, waiting] of this.#parked) {
      while (waiting.length > 0 && !this.#atLimit(task)) {
        const i = this.#slotFor(waiting.peek()!);
        if (i < 0) break;
        this.#parkedCount--;
        const job = waiting.shift()!;
        if (!this.#rateAdmits(job)) continue; // it waits for its slot (#rateWaiting)
        if (job.suspected && this.#hasProbation(this.#slots[i].worker)) this.#probation.push(job);
        else this.#start(this.#slots[i], job);
      }
    }
  }

  /** A run of `job` ended (settled, timed out, crashed or killed): its task has room for one more. */
  #release(job: Job): void {
    const n = this.#runs.get(job.task);
    if (n !== undefined) this.#runs.set(job.task, n - 1);
  }

  #start(slot: Slot, job: Job): void {
    this.#queued--;
    if (this.#opts.limits?.get(job.task)?.concurrency !== undefined) {
      this.#runs.set(job.task, (this.#runs.get(job.task) ?? 0) + 1);
    }
    slot.worker.run(job);
    this.#events.started?.(job, slot.id);
    const max = this.#opts.maxTasksPerWorker;
    if (max > 0 && slot.worker.dispatched >= max) this.#recycle(slot);
  }

  #recycle(slot: Slot): void {
    const old = slot.worker;
    old.retiring = true;
    slot.retiring.add(old);
    slot.worker = this.#spawn(slot.id);
    slot.restarts++;
    this.#events.recycled?.(slot.id);
    this.#endIfDone(old);
  }

  #endIfDone(w: PoolWorker): void {
    if (w.retiring && w.inflight.size === 0) {
      w.terminate();
      this.#slots[w.slot - 1].retiring.delete(w);
    }
  }

  #onSettled(w: PoolWorker, job: Job, outcome: Outcome): void {
    this.#release(job);
    const slot = this.#slots[w.slot - 1];
    if (outcome.ok) slot.done++;
    else slot.failed++;
    this.#events.settled(job, outcome, w.slot);
    this.#endIfDone(w);
    this.#drain();
  }

  /** Ends tasks that ran past `--task-timeout`, and terminates workers that do not acknowledge the abort. */
  #checkTimeouts(): void {
    const now = performance.now();
    for (const slot of this.#slots) {
      for (const w of [slot.worker, ...slot.retiring]) {
        const unresponsive = w.unresponsiveFor(now);
        if (unresponsive > ABORT_GRACE_MS) {
          this.#kill(w, `its event loop stayed blocked for ${ABORT_GRACE_MS} ms after a task's timeout`);
          continue;
        }
        // Its event loop turns, but a handler aborted at its timeout has not returned: it ignores
        // its signal, and would go on using the worker's CPU and memory for as long as the worker lives.
        if (w.abandonedFor(now) > ABANDON_GRACE_MS) {
          this.#kill(
            w,
            `a task's handler went on running ${formatDuration(ABANDON_GRACE_MS)} after its timeout aborted its signal`,
          );
          continue;
        }
        // While an abort is unanswered the worker may be blocked by one handler: the others on it
        // cannot finish, and are not timed out for that. They run again if the worker is killed.
        // Until then its thread gets the lowest CPU priority: a spinning handler must not slow the
        // thread that accepts and answers.
        if (unresponsive > 0) {
          if (unresponsive >= ABORT_ACK_MS) w.deprioritize();
          continue;
        }
        if (!w.ready) continue;
        const expired: Job[] = [];
        for (const job of w.inflight.values()) {
          const limit = this.#timeoutOf(job.task);
          if (limit > 0 && now - job.startedAt! >= limit) expired.push(job);
        }
        if (expired.length === 0) continue;
        w.abort(expired.map((j) => j.id));
        for (const job of expired) {
          this.#release(job);
          const limit = this.#timeoutOf(job.task);
          const own = this.#opts.limits?.get(job.task)?.timeoutMs !== undefined;
          const message = `the task ran longer than ${own ? `its timeout` : "--task-timeout"} ${formatDuration(limit)}`;
          this.#fail(slot, job, "timeout", message, Math.round(now - job.startedAt!));
        }
        this.#endIfDone(w);
      }
    }
    this.#drain();
  }

  #timeoutOf(task: string): number {
    return this.#opts.limits?.get(task)?.timeoutMs ?? this.#opts.taskTimeoutMs;
  }

  /**
   * Terminates a blocked worker. Its other tasks were not at fault (the one that timed out is
   * already settled): they run again, up to {@linkcode MAX_REQUEUES} times each, then end
   * `worker_crashed` — a bound, in case the culprit is among them.
   */
  #kill(w: PoolWorker, reason: string): void {
    const slot = this.#replace(w);
    const requeued: Job[] = [];
    const exhausted: Job[] = [];
    for (const job of w.inflight.values()) {
      this.#release(job);
      ((job.requeues ?? 0) < MAX_REQUEUES ? requeued : exhausted).push(job);
    }
    w.inflight.clear();
    const message = `worker ${slot.id} was terminated (${reason}) ${MAX_REQUEUES} times under this task`;
    for (const job of exhausted) this.#fail(slot, job, "worker_crashed", message);
    const again = requeued.map((job) => this.#again(job));
    this.#events.killed?.(slot.id, reason, again);
    for (const job of again) this.submit(job, true);
  }

  /** The next run of a task whose worker was stopped under it: a new attempt, one more requeue. */
  #again(job: Job, suspected = job.suspected): Job {
    const next: Job = { ...job, attempt: job.attempt + 1, requeues: (job.requeues ?? 0) + 1 };
    if (suspected) next.suspected = true;
    else delete next.suspected;
    delete next.startedAt;
    return next;
  }

  /** Ends one run of a task as a failure decided by the pool (not reported by the worker). */
  #fail(slot: Slot, job: Job, code: FailureCode, message: string, ms = 0, permanent = false): void {
    slot.failed++;
    this.#events.settled(
      job,
      { id: job.id, ok: false, code, message, ms, ...(permanent ? { permanent } : {}) },
      slot.id,
    );
  }

  /**
   * Cancels task `id`. Waiting: it leaves the queue (`"queued"`; the caller ends it). Running: its
   * handler's signal is aborted (a command gets SIGTERM, then SIGKILL), and the run is settled at
   * once as `cancelled`, a failure that is never retried (`"running"`); a handler that ignores the
   * abort has its worker replaced, as after a timeout. Unknown to the pool: `undefined`.
   */
  cancel(id: number, message: string): "queued" | "running" | undefined {
    const match = (job: Job) => job.id === id;
    for (const q of [this.#shared, this.#probation, ...this.#slots.map((s) => s.lane)]) {
      if (q.remove(match)) {
        this.#queued--;
        return "queued";
      }
    }
    if (this.#rateWaiting.remove(match)) {
      this.#queued--;
      this.#waitReasons.delete(id);
      return "queued";
    }
    for (const waiting of this.#parked.values()) {
      if (waiting.remove(match)) {
        this.#queued--;
        this.#parkedCount--;
        return "queued";
      }
    }
    for (const slot of this.#slots) {
      for (const w of [slot.worker, ...slot.retiring]) {
        const job = w.inflight.get(id);
        if (!job) continue;
        w.abort([id]);
        this.#release(job);
        this.#fail(slot, job, "cancelled", message, Math.round(performance.now() - (job.startedAt ?? 0)), true);
        this.#endIfDone(w);
        this.#drain();
        return "running";
      }
    }
    return undefined;
  }

  /** Terminates `w` and, if it still served its slot, puts a fresh worker there. */
  #replace(w: PoolWorker): Slot {
    w.terminate();
    const slot = this.#slots[w.slot - 1];
    slot.retiring.delete(w);
    if (slot.worker === w && !this.#closed) {
      slot.worker = this.#spawn(slot.id);
      slot.restarts++;
    }
    return slot;
  }

  /**
   * A worker died (or is being replaced for its memory): the suspects fail, the others run again
   * (see {@linkcode WorkerPool} for how the suspects are picked). `message` is a failed task's.
   */
  #onCrashed(w: PoolWorker, reason: string, blame?: RunRef, message?: string): void {
    if (w.terminated) return;
    const slot = this.#replace(w);
    const lost = [...w.inflight.values()];
    w.inflight.clear();
    let suspects: Job[];
    if (blame) suspects = lost.filter((j) => j.id === blame.id && j.attempt === blame.attempt);
    else {
      const onProbation = lost.filter((j) => j.suspected);
      suspects = onProbation.length > 0 ? onProbation : lost;
    }
    const base = message ?? `worker ${slot.id} crashed: ${reason}`;
    const failed: Job[] = [];
    const requeued: Job[] = [];
    for (const job of lost) {
      this.#release(job);
      const suspect = suspects.includes(job);
      if (suspect && (suspects.length === 1 || job.suspected)) {
        failed.push(job);
        const why = job.suspected ? `${base} (it was on board at an earlier crash too)` : base;
        this.#fail(slot, job, "worker_crashed", why);
      } else if ((job.requeues ?? 0) >= MAX_REQUEUES) {
        failed.push(job);
        this.#fail(
          slot,
          job,
          "worker_crashed",
          `${base} (a worker stopped under this task ${MAX_REQUEUES + 1} times)`,
        );
      } else {
        requeued.push(this.#again(job, suspect || job.suspected));
      }
    }
    this.#events.crashed?.(slot.id, reason, failed, requeued);
    for (const job of requeued) this.submit(job, true);
    this.#drain();
  }

  /** A worker went over its memory limit: it is replaced as if it had crashed. */
  #onOverMemory(w: PoolWorker, bytes: number): void {
    if (w.terminated) return;
    const limit = sizeText(Math.max(MIN_WORKER_HEAP, this.#opts.workerHeap));
    const used = sizeText(bytes);
    this.#onCrashed(
      w,
      `it used ${used} (heap and ArrayBuffers), over --worker-heap ${limit}`,
      undefined,
      `worker ${w.slot} used ${used}, over --worker-heap ${limit}; replaced`,
    );
  }
}
