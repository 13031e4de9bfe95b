/**
 * The `TaskStore` interface: everything about a task that must outlive the process goes through
 * it — ids, accepts, starts, failed attempts, ends with their results, and the clean-up of old
 * ends. The lifecycle (`../lifecycle.ts`) is its only writer.
 *
 * Two stores implement it: {@linkcode MemoryStore} (`memory.ts`: nothing survives a restart, and
 * nothing waits for a disk) and `JournalStore` (`journal.ts`: a SQLite file, group-committed from
 * its own thread). One contract suite (`contract_test.ts`) runs against both.
 *
 * The rule a store keeps: what {@linkcode TaskStore.commit} resolves for is durable, and a record
 * is committed by the store's own schedule — never because a connection happens to write.
 *
 * @module
 */
import type { Format, Tag } from "../protocol.ts";

/** A task as it is accepted. */
export interface AcceptedTask {
  id: number;
  task: string;
  /** The data as the handler validated it. */
  data: unknown;
  format: Format;
  tag?: Tag;
  /** Failed attempts so far (0 for a new task). */
  attempts: number;
  /** Higher is served sooner; 0 by default. */
  priority?: number;
  /** When it may start (ms since the epoch), if it was delayed. */
  runAt?: number;
  /** Its unique key, if it has one. */
  uniqueKey?: string;
}

/** How a task ended. */
export interface TaskEnd {
  state: "done" | "failed";
  /** Attempts it took. */
  attempts: number;
  /** The result's JSON text (`done`). */
  json?: string;
  /** Why it failed (`failed`). */
  error?: { code: string; message: string };
}

/** An unfinished task found on start. */
export interface RecoveredTask {
  id: number;
  task: string;
  data: unknown;
  format: Format;
  tag?: Tag;
  attempts: number;
  /** How many stops of the server found it running. */
  interrupted: number;
  /** Whether it was running when the server stopped (else it was queued, or waiting to retry). */
  wasRunning: boolean;
  priority?: number;
  /** When it may start (ms since the epoch), if it was delayed. */
  runAt?: number;
  uniqueKey?: string;
}

/** A finished task found on start: within the result TTL, or a failure still kept (`--keep-failed`). */
export interface FinishedTask extends TaskEnd {
  id: number;
  task: string;
  format: Format;
  tag?: Tag;
  finishedAt: number;
  acceptedAt: number;
  /** Its data: kept for failures, so that they can be retried. */
  data?: unknown;
}

/** What a store holds on start. */
export interface Recovered {
  unfinished: RecoveredTask[];
  finished: FinishedTask[];
  /** The highest task id ever issued: ids go on after it. */
  maxId: number;
  /** State saved with {@linkcode TaskStore.saveState}, by key (periodic schedules' last runs, rate limits). */
  state?: Record<string, string>;
}

/** Where tasks are kept. See the module doc for the rule every store keeps. */
export interface TaskStore {
  /** For logs: `memory`, `journal /var/lib/asynctask/journal.db`. */
  readonly name: string;
  /** Whether replies must wait for {@linkcode TaskStore.commit} (false: records are never lost by a crash, because none survive it). */
  readonly durable: boolean;
  /**
   * What survived the last run: unfinished tasks, tasks finished since `since`, failed ones since
   * `failedSince` (with their data), the highest id. Called once, first.
   */
  load(since: number, failedSince?: number): Promise<Recovered>;
  /** Records an accepted task. */
  accepted(task: AcceptedTask): void;
  /** Records that attempt `attempt` of a task started on a worker. */
  started(id: number, attempt: number): void;
  /** Records that attempt `attempt` failed and the task waits to run again. */
  attemptFailed(id: number, attempt: number): void;
  /** Records a task's end. */
  ended(id: number, end: TaskEnd): void;
  /** Forgets a finished task at once (a failure discarded, or retried under a new id). */
  discarded(id: number): void;
  /** Keeps a piece of the server's own state (a JSON text) for the next start: see {@linkcode Recovered.state}. */
  saveState(key: string, json: string): void;
  /** Resolves when everything recorded before the call is durable. */
  commit(): Promise<void>;
  /**
   * Forgets tasks that ended well before `before`, and all but the newest `keep` of them; failed
   * ones are kept until `failedBefore` instead (`--keep-failed`).
   */
  sweep(before: number, keep: number, failedBefore?: number): Promise<void>;
  /** Commits what is recorded and closes. */
  close(): Promise<void>;
}
