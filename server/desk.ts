/**
 * The request desk: one request line in, one immediate reply out. It checks the token, validates
 * a task's data with its handler and hands it to the lifecycle (`ACCEPTED`), or refuses it with a
 * reason (`ERROR <code> …`); it answers `/status`, `/stats`, `/ping`, `/auth` and `/quit`. A task's
 * later replies come from the lifecycle.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { formatSize } from "../cli/units.ts";
import type { HandlerRegistry } from "../task/handlers/mod.ts";
import { InvalidDataError } from "../task/types.ts";
import { compileTemplate, parseTiming, type Template } from "../task/timing.ts";
import type { TaskSpec } from "../task/spec.ts";
import { AuthThrottle } from "./auth.ts";
import type { TokenCheck } from "./token.ts";
import { isFinished } from "./book.ts";
import type { TaskLifecycle } from "./lifecycle.ts";
import type { Connection } from "./net/connection.ts";
import type { LineEvent } from "./net/lines.ts";
import { type SharedQueue, StoreUnavailableError } from "./store/store.ts";
import { type ErrorCode, type Format, parseRequest, reply, type Request, type Tag } from "./protocol.ts";
import type { ServerStats } from "./stats.ts";

const log = getLogger(["asynctask", "server"]);

/** A size for a message: `942 bytes`, `1.5MiB`. */
function bytes(n: number): string {
  const text = formatSize(n);
  return /^\d+$/.test(text) ? `${text} bytes` : text;
}

/** What the desk answers from. */
export interface DeskParts {
  lifecycle: TaskLifecycle;
  /** The handlers of the moment (a reload replaces them). */
  registry(): HandlerRegistry;
  /** The task of requests that name none (`--task`). */
  defaultTask?: string;
  token?: TokenCheck;
  queueSize: number;
  maxQueueBytes: number;
  /** How far ahead a task may be put (`--max-delay`). */
  maxDelayMs: number;
  /** The tasks map's entries by name: their default priority, unique key template and window. */
  specs: ReadonlyMap<string, TaskSpec>;
  maxLine: number;
  stats(): ServerStats;
  /** Whether the server is stopping (new tasks are refused). */
  stopping(): boolean;
}

/**
 * Answers the requests of every connection.
 *
 * @example
 * ```ts ignore
 * const desk = new Desk(parts);
 * connectionEvents.line = (conn, event) => desk.line(conn, event);
 * ```
 */
export class Desk {
  readonly #p: DeskParts;
  readonly #queueFullMessage: string;
  /** The hot refusal under overload: its text line is built once. */
  readonly #queueFullLine: string;
  readonly #throttle = new AuthThrottle();
  /** The tasks' `unique` templates, compiled once. */
  readonly #templates = new Map<string, Template>();

  constructor(parts: DeskParts) {
    this.#p = parts;
    this.#queueFullMessage =
      `the queue is full (${parts.queueSize} tasks waiting); nothing was queued — retry later, or raise --queue-size or --workers`;
    this.#queueFullLine = reply.error("text", undefined, "queue_full", this.#queueFullMessage);
  }

  /** One event of a connection's line framing. */
  line(c: Connection, event: LineEvent): void {
    if ("line" in event) {
      const req = parseRequest(event.line);
      if (req) this.#handle(c, req, event.line.length);
    } else if ("invalidUtf8" in event) {
      if (this.#p.token && !c.authorized) {
        return this.#unauthorized(c, "text", undefined, "the first line is not valid UTF-8", "not UTF-8");
      }
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
        `the line is longer than --max-line ${formatSize(this.#p.maxLine)}; closing the connection`,
      );
      c.closeWhenFlushed();
    }
  }

  #refuse(c: Connection, format: Format, tag: Tag | undefined, code: ErrorCode, msg: string): void {
    this.#p.lifecycle.counts.refused++;
    c.send(reply.error(format, tag, code, msg));
  }

  #handle(c: Connection, req: Request, size: number): void {
    if (this.#p.token && !c.authorized) return this.#authorize(c, req);
    switch (req.kind) {
      case "submit":
        return this.#submit(c, req, size);
      case "invalid":
        return this.#refuse(c, req.format, req.tag, req.code, req.message);
      case "status":
        return this.#status(c, req.format, req.tag, req.taskId);
      case "stats":
        return c.send(reply.stats(req.format, req.tag, this.#p.stats()));
      case "ping":
        return c.send(reply.pong(req.format, req.tag));
      case "auth":
        // Already authorized, or the server has no token: nothing to check.
        return c.send(reply.ok(req.format, req.tag));
      case "quit":
        c.send(reply.bye(req.format, req.tag));
        c.closeWhenFlushed();
        return;
      case "cancel":
      case "discard": {
        const l = this.#p.lifecycle;
        // The answer first: a cancelled task's own FAILED may go to this same connection.
        const refused = req.kind === "cancel" ? l.cancellable(req.taskId) : l.discard(req.taskId);
        if (refused) return this.#refuse(c, req.format, req.tag, refused.code, refused.message);
        c.send(reply.opDone(req.format, req.tag, req.taskId, req.kind === "cancel" ? "cancelled" : "discarded"));
        if (req.kind === "cancel") l.cancel(req.taskId, `${c.remote} (connection ${c.id})`);
        log.info("task {id} {what} by connection {conn} from {remote}", {
          id: req.taskId,
          what: req.kind === "cancel" ? "cancelled" : "discarded",
          conn: c.id,
          remote: c.remote,
        });
        return;
      }
      case "retry":
        return this.#retry(c, req.format, req.tag, req.taskId, size);
      case "pause":
      case "resume": {
        const l = this.#p.lifecycle;
        if (req.task !== undefined && !this.#p.registry().has(req.task)) {
          return this.#refuse(
            c,
            req.format,
            req.tag,
            "unknown_task",
            `no task named "${req.task.slice(0, 64)}"; this server runs ${this.#known()}`,
          );
        }
        const paused = req.kind === "pause" ? l.pause(req.task) : l.resume(req.task);
        log.info("{what} {task} by connection {conn} from {remote}; paused now: {paused}", {
          what: req.kind === "pause" ? "paused" : "resumed",
          task: req.task ?? "every task",
          conn: c.id,
          remote: c.remote,
          paused: paused.length ? paused.join(", ") : "nothing",
        });
        return c.send(reply.paused(req.format, req.tag, req.kind, req.task, paused));
      }
      case "tasks":
        return c.send(reply.tasks(req.format, req.tag, req.state, this.#p.lifecycle.list(req.state, req.limit)));
    }
  }

  /** The first request of a connection to a server with a token: it must be a good `/auth`. */
  #authorize(c: Connection, req: Request): void {
    if (req.kind === "auth" && this.#p.token!.matches(req.token)) {
      c.authorize();
      return c.send(reply.ok(req.format, req.tag));
    }
    const why = req.kind === "auth"
      ? "wrong token"
      : 'this server needs a token first: send /auth <token> (or {"cmd":"auth","token":"…"})';
    this.#unauthorized(c, req.format, req.tag, why, req.kind === "auth" ? "wrong token" : "no /auth first");
  }

  /**
   * Refuses a connection that did not authenticate, and closes it — later each time its address
   * fails again (see {@linkcode AuthThrottle}), reading nothing more from it meanwhile.
   */
  #unauthorized(c: Connection, format: Format, tag: Tag | undefined, why: string, short: string): void {
    c.pause();
    const { delayMs, log: logIt, failures } = this.#throttle.failed(c.remoteHost);
    if (logIt) {
      log.warn(
        "connection {conn} from {remote} refused: {why} ({failures} failed attempt(s) from {host} in the last minute; each answered later, up to 5 s; one line per address a minute)",
        { conn: c.id, remote: c.remote, why: short, failures, host: c.remoteHost },
      );
    }
    setTimeout(() => {
      this.#refuse(c, format, tag, "unauthorized", `${why}; closing`);
      c.closeWhenFlushed();
    }, delayMs);
  }

  #template(task: string, source: string): Template {
    let t = this.#templates.get(task);
    if (!t) {
      const compiled = compileTemplate(source, `tasks.${task}.unique`);
      // The config was checked when it was read: a template that does not compile never gets here.
      if (!compiled.ok) throw new Error(compiled.message);
      this.#templates.set(task, t = compiled.value);
    }
    return t;
  }

  #known(): string {
    return [...this.#p.registry().keys()].join(", ");
  }

  #submit(c: Connection, req: Extract<Request, { kind: "submit" }>, size: number): void {
    const { format, tag } = req;
    if (this.#p.stopping()) {
      return this.#refuse(
        c,
        format,
        tag,
        "shutting_down",
        "the server is shutting down and takes no new tasks; retry against another server or after the restart",
      );
    }
    const name = req.task ?? this.#p.defaultTask;
    if (name === undefined) {
      return this.#refuse(
        c,
        format,
        tag,
        "unknown_task",
        `this server has no default task: name one, /task <name> <payload> or {"task": "<name>", …}; this server runs ${this.#known()}`,
      );
    }
    const handler = this.#p.registry().get(name);
    if (!handler) {
      return this.#refuse(
        c,
        format,
        tag,
        "unknown_task",
        `no task named "${name.slice(0, 64)}"; this server runs ${this.#known()}`,
      );
    }
    let data: unknown;
    try {
      data = handler.validate(req.data);
    } catch (e) {
      const message = e instanceof InvalidDataError
        ? e.message
        : `${name} refused the data: ${e instanceof Error ? e.message : String(e)}`;
      return this.#refuse(c, format, tag, "invalid_data", message);
    }
    const lifecycle = this.#p.lifecycle;
    const full = lifecycle.full(size);
    if (full === "tasks") {
      if (format === "text") {
        lifecycle.counts.refused++;
        return c.send(this.#queueFullLine);
      }
      return this.#refuse(c, format, tag, "queue_full", this.#queueFullMessage);
    }
    if (full === "bytes") {
      return this.#refuse(
        c,
        format,
        tag,
        "queue_full",
        `unfinished tasks hold ${bytes(lifecycle.queuedBytes)} of request data (--max-queue-bytes ${
          bytes(this.#p.maxQueueBytes)
        }); nothing was queued — retry later, or send smaller data`,
      );
    }
    // On disk before its ACCEPTED goes out: the connection waits for the store's commit before it writes.
    const spec = this.#p.specs.size > 0 ? this.#p.specs.get(name) : undefined;
    let priority = spec?.priority ?? 0;
    let runAt: number | undefined;
    let uniqueKey: string | undefined;
    if (req.timing) {
      const now = Date.now();
      const timing = parseTiming(req.timing, { now, maxDelayMs: this.#p.maxDelayMs });
      if (!timing.ok) return this.#refuse(c, format, tag, "invalid_data", timing.message);
      if (req.timing.priority !== undefined) priority = timing.value.priority;
      if (timing.value.delayed) runAt = timing.value.dueAt;
      uniqueKey = timing.value.uniqueKey;
    }
    if (uniqueKey === undefined && spec?.unique !== undefined) {
      const key = this.#template(name, spec.unique).render(data);
      if (!key.ok) return this.#refuse(c, format, tag, "invalid_data", `${name}'s unique key: ${key.message}`);
      uniqueKey = key.value;
    }
    if (uniqueKey !== undefined) {
      const existing = lifecycle.duplicateOf(name, uniqueKey, spec?.uniqueForMs ?? 0);
      if (existing) {
        lifecycle.counts.of(name).duplicates = (lifecycle.counts.of(name).duplicates ?? 0) + 1;
        c.send(reply.accepted(
          format,
          existing.id,
          tag,
          `duplicate of task ${existing.id} (unique key ${
            JSON.stringify(uniqueKey)
          }), which is ${existing.state}; its final reply comes here too`,
        ));
        lifecycle.join(existing, c, format, tag);
        return;
      }
    }
    let summary = handler.accepted?.(data) ?? `${name} task queued`;
    if (runAt !== undefined) summary += `; it runs at ${new Date(runAt).toISOString()}`;
    let id: number;
    try {
      id = lifecycle.submit(
        { task: name, data, format, tag, connId: c.id, size, summary, priority, runAt, uniqueKey },
        c,
      );
    } catch (e) {
      if (!(e instanceof StoreUnavailableError)) throw e;
      return this.#refuse(c, format, tag, "store_unavailable", `${e.message}; send the task again in a moment`);
    }
    this.#accepted(c, format, tag, id, summary);
  }

  /** `ACCEPTED`: at once, or, with the broker, once Redis has the task (else `ERROR store_unavailable`). */
  #accepted(c: Connection, format: Format, tag: Tag | undefined, id: number, summary: string): void {
    const line = reply.accepted(format, id, tag, summary);
    const taken = this.#p.lifecycle.taken(id);
    if (!taken) return c.sendAccepted(line);
    c.sendLater(taken.then(
      () => line,
      (e: Error) =>
        reply.error(
          format,
          tag,
          "store_unavailable",
          `${e.message}; the task was not accepted — send it again in a moment`,
        ),
    ));
  }

  /** `/retry <id>`: the failed task runs again under a new id; its replies come to this connection. */
  #retry(c: Connection, format: Format, tag: Tag | undefined, taskId: number, size: number): void {
    const l = this.#p.lifecycle;
    if (this.#p.stopping()) {
      return this.#refuse(c, format, tag, "shutting_down", "the server is shutting down and takes no new tasks");
    }
    if (l.full(size) !== undefined) return this.#refuse(c, format, tag, "queue_full", this.#queueFullMessage);
    const id = l.retry(taskId, { format, tag, connId: c.id }, c);
    if (typeof id !== "number") return this.#refuse(c, format, tag, id.code, id.message);
    log.info("task {old} retried as task {id} by connection {conn} from {remote}", {
      old: taskId,
      id,
      conn: c.id,
      remote: c.remote,
    });
    this.#accepted(c, format, tag, id, `retry of task ${taskId}`);
  }

  /** Why a queued task waits, if anything holds it: a rate limit, or a pause. */
  #waiting(id: number, task: string, state: string): { waiting?: string } {
    if (state !== "queued") return {};
    const pool = this.#p.lifecycle.pool;
    const rate = pool.waitReason(id);
    if (rate) return { waiting: rate };
    const paused = pool.paused;
    if (paused.includes("*") || paused.includes(task)) {
      return { waiting: `paused: ${paused.includes("*") ? "every task" : `task ${task}`} (/resume to go on)` };
    }
    return {};
  }

  #status(c: Connection, format: Format, tag: Tag | undefined, taskId: number): void {
    const shared = this.#p.lifecycle.shared;
    const known = this.#p.lifecycle.get(taskId);
    // With the broker, a task not run here may be running, or have ended, on another server: Redis knows.
    if (shared && (!known || (!known.here && !isFinished(known)))) {
      return c.sendLater(this.#sharedStatus(shared, format, tag, taskId));
    }
    const rec = known;
    if (!rec) {
      const last = this.#p.lifecycle.lastId;
      if (taskId > last) {
        const issued = last === 0 ? "none yet" : `the last is ${last}`;
        return this.#refuse(
          c,
          format,
          tag,
          "not_found",
          `no task ${taskId} has been accepted by this server (${issued})`,
        );
      }
      return c.send(reply.status(format, tag, taskId, "unknown"));
    }
    const detail = rec.state === "scheduled"
      ? { attempts: rec.attempts, run_at: new Date(rec.runAt).toISOString() }
      : rec.state === "done"
      ? { result: JSON.parse(rec.json ?? "null"), attempts: rec.attempts }
      : rec.state === "failed"
      ? { error: rec.error, attempts: rec.attempts, ...(rec.retriedAs ? { retried_as: rec.retriedAs } : {}) }
      : { attempts: rec.attempts, ...this.#waiting(rec.id, rec.task, rec.state) };
    // With the broker, a task that ran here says so, as one that ran elsewhere does.
    const where = shared && rec.here ? { instance: shared.instance } : {};
    c.send(reply.status(format, tag, taskId, rec.state, { ...detail, ...where }));
  }

  /** `/status` from Redis: where the task is, wherever it runs or ran. */
  async #sharedStatus(shared: SharedQueue, format: Format, tag: Tag | undefined, taskId: number): Promise<string> {
    let s;
    try {
      s = await shared.lookup(taskId);
    } catch (e) {
      return reply.error(
        format,
        tag,
        "store_unavailable",
        `Redis cannot be reached (${e instanceof Error ? e.message : e}); ask again in a moment`,
      );
    }
    if (!s) {
      const last = await shared.lastId().catch(() => Infinity);
      if (taskId > last) {
        return reply.error(format, tag, "not_found", `no task ${taskId} has been accepted (the last is ${last})`);
      }
      const rec = this.#p.lifecycle.get(taskId);
      return rec
        ? reply.status(format, tag, taskId, rec.state, { attempts: rec.attempts })
        : reply.status(format, tag, taskId, "unknown");
    }
    const where = s.instance ? { instance: s.instance } : {};
    const detail = s.state === "done"
      ? { result: JSON.parse(s.json ?? "null"), attempts: s.attempts, ...where }
      : s.state === "failed"
      ? { error: s.error, attempts: s.attempts, ...where }
      : { attempts: s.attempts, ...where };
    return reply.status(format, tag, taskId, s.state, detail);
  }
}
