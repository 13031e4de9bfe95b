/**
 * A client's accounting of one connection: requests still waiting for their immediate reply,
 * accepted tasks still waiting for their final reply, and how they ended. It decides when the
 * client may stop and with which exit code.
 *
 * @module
 */
import { FINAL_TYPES, IMMEDIATE_TYPES, type Reply } from "./replies.ts";

/**
 * Counts replies against requests.
 *
 * @example
 * ```ts
 * import { Session } from "./session.ts";
 * import { parseReply } from "./replies.ts";
 * const s = new Session();
 * s.sent();
 * s.received(parseReply("ACCEPTED 1 queued"));
 * s.received(parseReply("DONE 1 ok"));
 * console.log(s.settled, s.exitCode); // true 0
 * ```
 */
export class Session {
  /** Requests sent whose immediate reply has not come yet. */
  awaiting = 0;
  /** Accepted tasks whose final reply has not come yet. */
  readonly outstanding: Set<number> = new Set();
  accepted = 0;
  done = 0;
  failed = 0;
  refused = 0;
  /** The codes of the `ERROR` replies received. */
  readonly refusedCodes: Set<string> = new Set();
  #waiters: { ready: () => boolean; resolve: () => void }[] = [];

  /** A request went out. */
  sent(): void {
    this.awaiting++;
  }

  /** A reply came in. */
  received(reply: Reply): void {
    if (IMMEDIATE_TYPES.has(reply.type)) this.awaiting = Math.max(0, this.awaiting - 1);
    if (reply.type === "accepted" && reply.taskId !== undefined) {
      this.accepted++;
      this.outstanding.add(reply.taskId);
    } else if (reply.type === "error") {
      this.refused++;
      if (reply.code) this.refusedCodes.add(reply.code);
    } else if (FINAL_TYPES.has(reply.type) && reply.taskId !== undefined) {
      this.outstanding.delete(reply.taskId);
      if (reply.type === "done") this.done++;
      else this.failed++;
    }
    if (this.#waiters.length > 0) {
      const ready = this.#waiters.filter((w) => w.ready());
      this.#waiters = this.#waiters.filter((w) => !ready.includes(w));
      for (const w of ready) w.resolve();
    }
  }

  /** Requests and tasks still waiting for a reply: what `--window` bounds. */
  get inFlight(): number {
    return this.awaiting + this.outstanding.size;
  }

  /** Every request has its immediate reply and every accepted task its final one. */
  get settled(): boolean {
    return this.awaiting === 0 && this.outstanding.size === 0;
  }

  /** Resolves when {@linkcode settled}. */
  whenSettled(): Promise<void> {
    return this.#when(() => this.settled);
  }

  /** Resolves when fewer than `limit` requests and tasks are in flight. */
  whenRoom(limit: number): Promise<void> {
    return this.#when(() => this.inFlight < limit);
  }

  #when(ready: () => boolean): Promise<void> {
    if (ready()) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ ready, resolve }));
  }

  /** 0 when everything succeeded, 1 when a task failed, a request was refused, or results are missing. */
  get exitCode(): number {
    return this.failed > 0 || this.refused > 0 || !this.settled ? 1 : 0;
  }

  /** One line for people: `3 accepted, 2 done, 1 failed, 0 refused`. */
  summary(): string {
    const missing = this.outstanding.size > 0 ? `, ${this.outstanding.size} without a result` : "";
    return `${this.accepted} accepted, ${this.done} done, ${this.failed} failed, ${this.refused} refused${missing}`;
  }
}
