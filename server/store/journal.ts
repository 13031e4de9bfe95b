/**
 * `serve --journal FILE`: accepted means durable. Every accepted task is on disk before its
 * `ACCEPTED` is sent, every start before the next group commit, and every end before its `DONE` or
 * `FAILED` — and within the same group-commit window whether or not a client waits for it. On
 * start, the tasks that were queued are queued again as they were, the ones that were running count
 * an interruption, and finished ones stay queryable.
 *
 * The file and its SQL are `journal/file.ts`; it runs in its own thread (`journal/thread.ts`),
 * fed by `journal/client.ts`.
 *
 * @module
 */
import { JournalClient } from "./journal/client.ts";
import type { JournalSync } from "./journal/file.ts";
import type { AcceptedTask, Recovered, TaskEnd, TaskStore } from "./store.ts";

export { JournalDamagedError, JournalError, type JournalSync } from "./journal/file.ts";

/**
 * A SQLite journal as a {@linkcode TaskStore}.
 *
 * @example
 * ```ts
 * import { JournalStore } from "./journal.ts";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * const store = await JournalStore.open(`${dir}/j.db`, { onFatal: (why) => console.error(why) });
 * await store.load(0);
 * store.accepted({ id: 1, task: "echo", data: "hi", format: "text", attempts: 0 });
 * await store.commit(); // on disk now
 * await store.close();
 * const again = await JournalStore.open(`${dir}/j.db`, { onFatal: () => {} });
 * assert.equal((await again.load(0)).unfinished.length, 1);
 * await again.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class JournalStore implements TaskStore {
  readonly durable = true;
  readonly name: string;

  private constructor(readonly path: string, readonly client: JournalClient) {
    this.name = `journal ${path}`;
  }

  /** What the checks on opening found worth saying, short of refusing the journal. */
  get warnings(): string[] {
    return this.client.warnings;
  }

  /**
   * Opens (or creates) the journal at `path`.
   *
   * @throws {import("./journal/file.ts").JournalError} naming the file, what is wrong and the fix.
   */
  static async open(
    path: string,
    opts: {
      sync?: JournalSync;
      /** Set a damaged journal aside and start empty (`--journal-reset`). */
      reset?: boolean;
      /** A commit failed while the server ran: nothing more can be promised. */
      onFatal: (why: string) => void;
    },
  ): Promise<JournalStore> {
    const client = await JournalClient.open(path, opts.sync ?? "full", opts.reset ?? false, opts.onFatal);
    return new JournalStore(path, client);
  }

  async load(since: number, failedSince: number = since): Promise<Recovered> {
    const { unfinished, finished, maxId, state } = await this.client.load(since, failedSince);
    return {
      maxId,
      ...(Object.keys(state).length > 0 ? { state } : {}),
      unfinished: unfinished.map((t) => ({
        id: t.id,
        task: t.task,
        data: t.data,
        format: t.format,
        ...(t.tag !== undefined ? { tag: t.tag } : {}),
        attempts: t.attempts,
        interrupted: t.interrupted,
        wasRunning: t.wasRunning,
        ...(t.priority !== 0 ? { priority: t.priority } : {}),
        ...(t.runAt !== undefined ? { runAt: t.runAt } : {}),
        ...(t.uniqueKey !== undefined ? { uniqueKey: t.uniqueKey } : {}),
      })),
      finished: finished.map((t) => ({
        id: t.id,
        task: t.task,
        format: t.format,
        ...(t.tag !== undefined ? { tag: t.tag } : {}),
        state: t.state === "done" ? "done" : "failed",
        attempts: t.attempts,
        ...(t.json !== undefined ? { json: t.json } : {}),
        ...(t.error !== undefined ? { error: t.error } : {}),
        ...(t.state === "failed" ? { data: t.data } : {}),
        finishedAt: t.finishedAt,
        acceptedAt: t.acceptedAt,
      })),
    };
  }

  accepted(task: AcceptedTask): void {
    this.client.accept(task);
  }
  started(id: number, attempt: number): void {
    this.client.started(id, attempt);
  }
  attemptFailed(id: number, attempt: number): void {
    this.client.failedAttempt(id, attempt);
  }
  ended(id: number, end: TaskEnd): void {
    this.client.finish(id, end.state, end.attempts, end.json, end.error);
  }
  discarded(id: number): void {
    this.client.discard(id);
  }
  saveState(key: string, json: string): void {
    this.client.saveState(key, json);
  }
  commit(): Promise<void> {
    return this.client.commit();
  }
  sweep(before: number, keep: number, failedBefore: number = before): Promise<void> {
    return this.client.sweep(before, keep, failedBefore);
  }
  close(): Promise<void> {
    return this.client.close();
  }
}
