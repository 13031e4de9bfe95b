/**
 * The `TaskStore` interface: everything about a task that must outlive the process goes through
 * it — ids, accepts, starts, failed attempts, ends with their results, and the clean-up of old
 * ends. The lifecycle (`../lifecycle.ts`) is its only writer.
 *
 * Three stores implement it: {@linkcode MemoryStore} (`memory.ts`: nothing survives a restart, and
 * nothing waits for a disk), `JournalStore` (`journal.ts`: a SQLite file, group-committed from
 * its own thread) and `RedisStore` (`redis.ts`: the broker, Redis Streams shared by several
 * servers). One contract suite (`contract_test.ts`) runs against all three.
 *
 * The broker's store is also the queue: it has a {@linkcode SharedQueue} face, through which tasks
 * accepted by any server reach whichever server has room for them.
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
  /** The shared queue, where the store is one (the broker). */
  readonly shared?: SharedQueue;
}

/** A task the shared queue hands to this server to run: accepted here or by another server. */
export interface DeliveredTask extends RecoveredTask {
  /** The server that accepted it, which holds its client. */
  origin: string;
}

/** A task's state as the shared queue knows it, for `/status` on any server. */
export interface SharedStatus {
  state: "queued" | "scheduled" | "running" | "done" | "failed";
  task: string;
  attempts: number;
  /** The result's JSON text (`done`). */
  json?: string;
  error?: { code: string; message: string };
  /** The server running it, or that ran it. */
  instance?: string;
}

/** What a server tells the shared queue about itself, and what the queue hands it. */
export interface QueueConsumer {
  /** The tasks this server runs: it reads only theirs. */
  tasks: readonly string[];
  /** Most tasks this server holds at once (queued here or running). */
  capacity: number;
  /** How many more of `task` it takes now (its concurrency, 0 while paused); `Infinity` without a limit. */
  room(task: string): number;
  /** A task to run here. */
  deliver(task: DeliveredTask): void;
  /** A task accepted here ended on another server. */
  ended(id: number, end: TaskEnd): void;
  /** A task accepted here reported progress on another server. */
  progress(id: number, percent: number, message: string): void;
  /** Tasks accepted here that no server has reported ended, and that do not run here. */
  waitingElsewhere?(): number[];
  /** Of those, tasks Redis no longer has (it restarted without keeping them): they will never run. */
  lost?(ids: number[]): void;
}

/** One server of the cluster, as it last reported itself. */
export interface ClusterMember {
  instance: string;
  /** Ms since it last reported (every 2 s). */
  seenMsAgo: number;
  workers: number;
  held: number;
}

/** The cluster as `/stats` shows it. */
export interface ClusterStats {
  instances: ClusterMember[];
  /** Per task: entries no server has read yet, and entries read and not ended. */
  queues: Record<string, { waiting: number; held: number }>;
}

/** The face of a store that is also the queue, shared by several servers (the Redis broker). */
export interface SharedQueue {
  /** This server's name in the cluster. */
  readonly instance: string;
  /** A task id unique across the cluster; throws {@linkcode StoreUnavailableError} when none can be had (Redis is unreachable). */
  nextId(): number;
  /** Resolves when the queue has taken task `id` (accepted just before); rejects when it has not. */
  taken(id: number): Promise<void> | undefined;
  /** Starts reading tasks for this server. */
  consume(consumer: QueueConsumer): void;
  /** The room changed (a pause, a resume): the next read takes it into account at once. */
  roomChanged(): void;
  /**
   * Gives tasks read here and not started back to the queue, for any server (a pause), each with
   * the attempts it has had (a retry waiting for its turn keeps its count).
   */
  handBack(tasks: { id: number; attempts: number }[]): void;
  /** Forwards a running task's progress to the server that accepted it. */
  progress(id: number, percent: number, message: string): void;
  /** A task's state, wherever it runs or ran. */
  lookup(id: number): Promise<SharedStatus | undefined>;
  /** The highest task id issued across the cluster. */
  lastId(): Promise<number>;
  /** The cluster as last seen (refreshed every 2 s while consuming). */
  readonly lastCluster?: ClusterStats;
  /** Whether Redis answers now. */
  readonly up: boolean;
}

/** The store cannot take a task now (Redis is unreachable): the client should retry. */
export class StoreUnavailableError extends Error {
  override name = "StoreUnavailableError";
}
