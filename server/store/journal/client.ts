/**
 * The main thread's side of a journal file: it buffers what is recorded (accepted tasks, starts,
 * attempt counts, ends) and hands it to the journal's thread (`thread.ts`) in group commits.
 *
 * Whatever is recorded is committed by itself, within one turn of the event loop: a commit never
 * waits for somebody to need it. {@linkcode JournalClient.commit} resolves once everything recorded
 * before the call is on disk; connections await it before they write the replies that announce
 * those records. One commit is in flight at a time: what is recorded meanwhile waits and goes as
 * the next batch, so the busier the server, the bigger the batches and the fewer the fsyncs — and
 * the main thread never waits for the disk.
 *
 * @module
 */
import { Worker } from "node:worker_threads";
import { setImmediate } from "node:timers";
import { JournalDamagedError, JournalError, type JournalSync, type LoadedJournal } from "./file.ts";
import { BatchWriter, type PackedBatch } from "./batch.ts";
import type { AcceptedTask } from "../store.ts";

/** Main → journal thread. */
export type JournalRequest =
  & { id: number }
  & (
    | { type: "open"; path: string; sync: JournalSync; reset: boolean }
    | { type: "load"; since: number; failedSince: number }
    | { type: "write"; batch: PackedBatch }
    | { type: "sweep"; before: number; keep: number; failedBefore: number }
    | { type: "close" }
  );

/** Journal thread → main: one per request. */
export type JournalReply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; message: string; error: "damaged" | "journal" | "other" };

type Distributive<T> = T extends unknown ? Omit<T, "id"> : never;

/**
 * A journal file, written from its own thread.
 *
 * @example
 * ```ts ignore
 * const journal = await JournalClient.open("/var/lib/asynctask/journal.db", "full", false, (why) => console.error(why));
 * journal.accept({ id: 1, task: "sms", data: "13800138000", format: "text", attempts: 0 });
 * await journal.commit(); // now ACCEPTED 1 may be sent
 * await journal.close();
 * ```
 */
export class JournalClient {
  readonly #worker: Worker;
  readonly #waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  #nextId = 0;
  /** What is recorded for the next batch; the clock is read once per batch (see `batch.ts`). */
  readonly #buffer = new BatchWriter();
  #inflight: Promise<void> | undefined;
  #next: PromiseWithResolvers<void> | undefined;
  #closed = false;
  /** A commit is scheduled for the end of this turn. */
  #scheduled = false;
  /** What the checks on opening found worth saying, short of refusing the journal. */
  warnings: string[] = [];
  /** Told how long each group commit took, from hand-off to fsync, in seconds (for /metrics). */
  onCommit: ((seconds: number) => void) | undefined;

  private constructor(readonly path: string, private onFatal: (message: string) => void) {
    this.#worker = new Worker(new URL("./thread.ts", import.meta.url), { name: "asynctask-journal" });
    this.#worker.on("message", (r: JournalReply) => {
      const w = this.#waiting.get(r.id);
      this.#waiting.delete(r.id);
      if (r.ok) w?.resolve(r.value);
      else {
        w?.reject(
          r.error === "damaged"
            ? new JournalDamagedError(r.message)
            : r.error === "journal"
            ? new JournalError(r.message)
            : new Error(r.message),
        );
      }
    });
    this.#worker.on("error", (e: Error) => this.#die(`the journal thread failed: ${e.message}`));
    this.#worker.on("exit", () => this.#die("the journal thread ended"));
  }

  /**
   * Opens (or creates) the journal in its thread and takes its lock.
   *
   * @param reset with a damaged journal, set it aside and start an empty one (`--journal-reset`).
   * @param onFatal called when a commit fails while the server runs: nothing more can be promised.
   * @throws {JournalError} for the cases of `Journal.open` (damaged, not a journal, newer schema, locked, unwritable).
   */
  static async open(
    path: string,
    sync: JournalSync,
    reset: boolean,
    onFatal: (message: string) => void,
  ): Promise<JournalClient> {
    const client = new JournalClient(path, onFatal);
    try {
      const warnings = await client.#request({ type: "open", path, sync, reset });
      if (Array.isArray(warnings)) client.warnings = warnings.map(String);
    } catch (e) {
      client.#closed = true;
      client.#worker.terminate();
      throw e;
    }
    return client;
  }

  /** Unfinished tasks (the running ones counted as interrupted once more), finished ones since `since`, the highest id. */
  load(since: number, failedSince: number = since): Promise<LoadedJournal> {
    return this.#request({ type: "load", since, failedSince }) as Promise<LoadedJournal>;
  }

  /** Records an accepted task: durable once a later {@linkcode commit} resolves. */
  accept(t: AcceptedTask): void {
    this.#buffer.accept(t);
    this.#schedule();
  }

  /** Records that attempt `attempt` of a task started on a worker. */
  started(id: number, attempt: number): void {
    this.#buffer.started(id, attempt);
    this.#schedule();
  }

  /** Records that a task failed attempt `attempt` and waits for a retry (a crash keeps the count). */
  failedAttempt(id: number, attempt: number): void {
    this.#buffer.failedAttempt(id, attempt);
    this.#schedule();
  }

  /** Records a task's end: durable once a later {@linkcode commit} resolves. */
  finish(
    id: number,
    state: "done" | "failed",
    attempts: number,
    json: string | undefined,
    error: { code: string; message: string } | undefined,
  ): void {
    this.#buffer.ended(id, state, attempts, json, error);
    this.#schedule();
  }

  /** Records a piece of the server's state (`state.<key>` in the meta table). */
  saveState(key: string, json: string): void {
    this.#buffer.saveState(key, json);
    this.#schedule();
  }

  /** Records that a finished task is to be forgotten now. */
  discard(id: number): void {
    this.#buffer.discard(id);
    this.#schedule();
  }

  /** Commits what was recorded at the end of this turn, whether or not anyone waits for it. */
  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      // A failure is fatal, and reported through onFatal.
      if (!this.#closed) this.commit().catch(() => {});
    });
  }

  /** Resolves when everything recorded before this call is on disk. */
  commit(): Promise<void> {
    if (this.#buffer.empty) return this.#inflight ?? Promise.resolve();
    if (!this.#inflight) {
      try {
        return this.#post();
      } catch (e) {
        // Never a throw at the caller (a timer's callback, a reply's write): fatal, and said so.
        const error = e instanceof Error ? e : new Error(String(e));
        this.#die(`commit failed (${error.message})`);
        return Promise.reject(error);
      }
    }
    this.#next ??= Promise.withResolvers<void>();
    return this.#next.promise;
  }

  /** Forgets finished tasks that ended before `before`, and all but the newest `keep`. */
  async sweep(before: number, keep: number, failedBefore: number = before): Promise<void> {
    await this.#request({ type: "sweep", before, keep, failedBefore });
  }

  /** Commits what is recorded, closes the file and ends the thread. */
  async close(): Promise<void> {
    await this.commit();
    this.#closed = true; // the thread's end that follows is expected
    await this.#request({ type: "close" });
  }

  #post(): Promise<void> {
    const batch = this.#buffer.take()!;
    const t0 = performance.now();
    const done = this.#request({ type: "write", batch }).then(
      () => {
        this.onCommit?.((performance.now() - t0) / 1000);
        this.#inflight = undefined;
        const next = this.#next;
        this.#next = undefined;
        if (next) this.commit().then(next.resolve, next.reject);
      },
      (e: Error) => {
        this.#die(`commit failed (${e.message})`);
        throw e;
      },
    );
    this.#inflight = done;
    return done;
  }

  #request(req: Distributive<JournalRequest>): Promise<unknown> {
    const id = ++this.#nextId;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#worker.postMessage({ ...req, id });
    });
  }

  #die(message: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.onFatal(message);
  }
}
