/**
 * A harness for the hardening tests: a real {@linkcode WorkerPool} (real worker threads running
 * `task/worker.ts`) with module tasks, recording every event the pool sends its owner.
 *
 * @module
 */
import type { Outcome } from "../task/messages.ts";
import { type Job, type PoolOptions, WorkerPool } from "../task/pool.ts";
import type { TaskSpec } from "../task/spec.ts";

/** A fixture's module URL. */
export function fixture(name: string): string {
  return new URL(`./fixtures/${name}`, import.meta.url).href;
}

/** The `crashed` and `killed` events the pool sent. */
export interface WorkerEvent {
  kind: "crashed" | "killed";
  worker: number;
  reason: string;
  failed: number[];
  requeued: number[];
}

/** A running pool and what it reported. */
export interface PoolRun {
  pool: WorkerPool;
  /** Each task's outcomes, in order (one is expected: the pool settles each run once). */
  outcomes: Map<number, Outcome[]>;
  events: WorkerEvent[];
  /** Tasks handed to a worker, in order (a task run again appears again). */
  started: number[];
  /** Queues a task; returns its id. */
  submit(task: string, data: unknown, connId?: number): number;
  /** Waits until every one of `ids` has settled. */
  settled(ids: number[], timeoutMs?: number): Promise<void>;
}

/**
 * Starts a pool with `tasks` (module and built-in tasks), handler `modules` and `opts`, runs `fn`,
 * and closes it.
 */
export async function withPool(
  opts: Partial<PoolOptions> & { tasks: TaskSpec[]; modules?: string[] },
  fn: (run: PoolRun) => Promise<void>,
): Promise<void> {
  const outcomes = new Map<number, Outcome[]>();
  const events: WorkerEvent[] = [];
  const started: number[] = [];
  const ids = (jobs: Job[]) => jobs.map((j) => j.id);
  const { tasks, modules, ...rest } = opts;
  const pool = new WorkerPool(
    {
      workers: 1,
      concurrency: 64,
      dispatch: "least-busy",
      queueSize: 1000,
      maxTasksPerWorker: 0,
      workerHeap: 512 * 1024 * 1024,
      taskTimeoutMs: 0,
      settings: { smsDelayMs: 50, tasks, modules },
      ...rest,
    },
    {
      started: (job) => started.push(job.id),
      settled: (job, outcome) => outcomes.set(job.id, [...(outcomes.get(job.id) ?? []), outcome]),
      crashed: (worker, reason, failed, requeued) =>
        events.push({ kind: "crashed", worker, reason, failed: ids(failed), requeued: ids(requeued) }),
      killed: (worker, reason, requeued) =>
        events.push({ kind: "killed", worker, reason, failed: [], requeued: ids(requeued) }),
    },
  );
  let nextId = 0;
  const run: PoolRun = {
    pool,
    outcomes,
    events,
    started,
    submit(task, data, connId = 1) {
      const id = ++nextId;
      if (!pool.submit({ id, task, data, attempt: 1, connId })) throw new Error(`task ${id} was refused`);
      return id;
    },
    async settled(wanted, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (!wanted.every((id) => outcomes.has(id))) {
        if (Date.now() > deadline) {
          const missing = wanted.filter((id) => !outcomes.has(id));
          throw new Error(
            `timed out after ${timeoutMs} ms waiting for tasks ${missing.join(", ")}; events: ${
              JSON.stringify(events)
            }`,
          );
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
  try {
    await fn(run);
  } finally {
    await pool.close(100);
  }
}

/** The built-in `sleep` task, declared for a pool with a `tasks` list. */
export const SLEEP: TaskSpec = { kind: "builtin", name: "sleep" };
/** The built-in `echo` task, declared for a pool with a `tasks` list. */
export const ECHO: TaskSpec = { kind: "builtin", name: "echo" };

/** A `module` task of a fixture file. */
export function moduleTask(name: string, file: string): TaskSpec {
  return { kind: "module", name, module: fixture(file) };
}
