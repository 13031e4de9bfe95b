/**
 * A client's accounting of one connection: requests still waiting for their immediate reply,
 * accepted tasks still waiting for their final reply, and how they ended. It decides when the
 * client may stop and with which exit code.
 *
 * @module
 */
import { type ClientMessages, MESSAGES } from "./messages.ts";
import { FINAL_TYPES, IMMEDIATE_TYPES, type Reply } from "./replies.ts";
import type { RequestKind } from "./requests.ts";

/** Error codes after which the server closes the connection: the session ended badly, whatever was asked. */
const CLOSING_CODES: ReadonlySet<string> = new Set([
  "unauthorized",
  "too_many_connections",
  "line_too_long",
  "idle_timeout",
]);

/**
 * Counts replies against requests. Immediate replies come in request order, so each `ERROR` is
 * matched to what it refused: a task (counted in {@linkcode refused}) or a command (counted in
 * {@linkcode commandsRefused}, which fails the exit code only where `strict`: the scripted client).
 *
 * @example
 * ```ts
 * import { Session } from "./session.ts";
 * import { parseReply } from "./replies.ts";
 * import assert from "node:assert/strict";
 * const s = new Session();
 * s.sent();
 * s.received(parseReply("ACCEPTED 1 queued"));
 * s.received(parseReply("DONE 1 ok"));
 * assert.ok(s.settled);
 * assert.equal(s.exitCode, 0);
 * ```
 *
 * @example A person's `/status` of an unknown id is not a refused task
 * ```ts
 * import { Session } from "./session.ts";
 * import { parseReply } from "./replies.ts";
 * import assert from "node:assert/strict";
 * const s = new Session({ strict: false });
 * s.sent("command");
 * s.received(parseReply("ERROR not_found no task 99 on this server"));
 * assert.equal(s.summary(), "0 accepted, 0 done, 0 failed, 0 refused");
 * assert.equal(s.exitCode, 0);
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
  /** Tasks the server refused. */
  refused = 0;
  /** Commands the server refused (and `ERROR`s that answered no request). */
  commandsRefused = 0;
  /** The codes of the `ERROR` replies received. */
  readonly refusedCodes: Set<string> = new Set();
  readonly #strict: boolean;
  /** The kinds of the requests awaiting their immediate reply, oldest first from `#head`. */
  #kinds: RequestKind[] = [];
  #head = 0;
  #waiters: { ready: () => boolean; resolve: () => void }[] = [];

  /** `strict`: refused commands fail the exit code too (the scripted client, the default). */
  constructor({ strict = true }: { strict?: boolean } = {}) {
    this.#strict = strict;
  }

  /** A request went out. */
  sent(kind: RequestKind = "task"): void {
    this.awaiting++;
    this.#kinds.push(kind);
  }

  /** A reply came in. */
  received(reply: Reply): void {
    let kind: RequestKind | undefined;
    if (IMMEDIATE_TYPES.has(reply.type)) {
      this.awaiting = Math.max(0, this.awaiting - 1);
      kind = this.#kinds[this.#head++];
      if (this.#head >= this.#kinds.length) [this.#kinds, this.#head] = [[], 0];
      else if (this.#head > 1024 && this.#head * 2 > this.#kinds.length) {
        [this.#kinds, this.#head] = [this.#kinds.slice(this.#head), 0];
      }
    }
    if (reply.type === "accepted" && reply.taskId !== undefined) {
      this.accepted++;
      this.outstanding.add(reply.taskId);
    } else if (reply.type === "error") {
      if (kind === "task") this.refused++;
      else this.commandsRefused++;
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

  /**
   * 0 when everything succeeded; 1 when a task failed or was refused, results are missing, the
   * server closed the connection with an error, or (when `strict`) a command was refused.
   */
  get exitCode(): number {
    const commands = this.#strict ? this.commandsRefused > 0 : [...this.refusedCodes].some((c) => CLOSING_CODES.has(c));
    return this.failed > 0 || this.refused > 0 || !this.settled || commands ? 1 : 0;
  }

  /** One line for people: `3 accepted, 2 done, 1 failed, 0 refused`, in the words of `msgs`. */
  summary(msgs: ClientMessages = MESSAGES.en): string {
    return msgs.summary({
      accepted: this.accepted,
      done: this.done,
      failed: this.failed,
      refused: this.refused,
      commandsRefused: this.#strict ? this.commandsRefused : 0,
      missing: this.outstanding.size,
    });
  }
}
