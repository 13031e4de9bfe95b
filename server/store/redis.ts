/**
 * The broker: a {@linkcode TaskStore} on Redis that is also the queue, so that several servers
 * share their tasks. Each task name has a stream (`<prefix>:q:<task>`) read by one consumer group;
 * a server reads as many entries as it has room for, runs them, and records each end with the
 * result (`<prefix>:t:<id>`, kept for the result TTL) — and, when another server accepted the
 * task, on that server's results stream (`<prefix>:r:<instance>`), which it reads to send the
 * final reply to its client.
 *
 * - **Ids** come from `INCRBY <prefix>:ids`, a block of 10,000 at a time, so they are unique across
 *   servers without a round trip per task.
 * - **ACCEPTED** goes out only once Redis has answered the task's `XADD` (the server waits for
 *   {@linkcode RedisStore.commit}); a task Redis did not take is answered
 *   `ERROR store_unavailable` instead ({@linkcode RedisStore.taken}).
 * - **At least once**: an entry stays pending on its server until its end is recorded. A server
 *   renews its pending entries every third of `visibilityMs`; entries nobody renewed for
 *   `visibilityMs` (their server died) are claimed by another server (`XAUTOCLAIM`) and run again,
 *   counting an interruption; past {@linkcode MAX_INTERRUPTED_RUNS} they fail as `worker_crashed`.
 * - **Redis unreachable**: commands fail at once (no offline queue), the connections reconnect
 *   with a backoff, ends wait in memory and are written when Redis is back.
 *
 * @module
 */
import { createClient } from "redis";
import { getLogger } from "@logtape/logtape";
import type { Format, Tag } from "../protocol.ts";
import type { BrokerAddress } from "./redis_url.ts";
import {
  ACCEPT_SCRIPT,
  ATTEMPT_SCRIPT,
  CLAIM_SCRIPT,
  END_SCRIPT,
  HAND_BACK_SCRIPT,
  IDS_SCRIPT,
  MISSING_SCRIPT,
  MOVE_DUE_SCRIPT,
  START_SCRIPT,
  TRIM_SCRIPT,
} from "./redis_scripts.ts";
import {
  type AcceptedTask,
  type ClusterStats,
  type QueueConsumer,
  type Recovered,
  type SharedQueue,
  type SharedStatus,
  StoreUnavailableError,
  type TaskEnd,
  type TaskStore,
} from "./store.ts";

const log = getLogger(["asynctask", "broker"]);

/** The consumer group every server reads the task streams in. */
const GROUP = "workers";
/** Ids taken from Redis at a time: the next block is fetched when half of one is left, ahead of a burst. */
const ID_BLOCK = 10_000;
/** Most ends recorded by one script call. */
const END_BATCH = 1000;
/**
 * The length at which a script call's packed argument is sent, and the next record starts another
 * call: one argument holding a turn's every record would, with large data or results (a backlog
 * of ends after an outage), pass Redis's longest argument (512 MB) or V8's longest string. At
 * most 3 bytes a UTF-16 unit, 8M units stay under 24 MB.
 */
const PACKED_CHARS = 8 * 1024 * 1024;
/** How long a closing store waits for Redis to take the ends it still holds. */
const CLOSE_WAIT_MS = 5000;
/**
 * How long after Redis comes back every server has reconnected (its backoff is at most 2 s) and
 * restored what it knows: the id counter, the tasks it holds.
 */
const RESTORE_MS = 2500;

/** How the broker connects and behaves. */
export interface RedisStoreOptions {
  address: BrokerAddress;
  /** Prefix of every key: servers with the same prefix share tasks (`--broker-prefix`). @default "asynctask" */
  prefix?: string;
  /** How long an entry's server may stay silent before another server claims it, ms (`--broker-visibility`). @default 30000 */
  visibilityMs?: number;
  /** How long a done task's record is kept for `/status`, ms (`--result-ttl`). @default 3600000 */
  resultTtlMs?: number;
  /** How long a failed task's record is kept, ms (`--keep-failed`). @default 86400000 */
  failedTtlMs?: number;
  /** PEM of the CA that signed Redis's certificate (`rediss://` with a private CA). */
  caCert?: string;
  /** What this server says of itself to the cluster (`/stats`). */
  describe?: () => { workers: number };
}

/** Why Redis could not be used at start: the server stops with this message. */
export class BrokerError extends Error {
  override name = "BrokerError";
}

interface Held {
  task: string;
  stream: string;
  entry: string;
  origin: string;
  /** The attempt running here, once started. */
  attempt?: number;
  /** The entry's `t` field, to hand the task back (a pause) even where Redis lost the entry. */
  payload: string;
}

interface PendingEnd {
  id: number;
  task: string;
  stream: string;
  entry: string;
  end: TaskEnd;
  origin: string;
}

type Client = ReturnType<typeof createClient>;

/** A stream entry's `t` field: data, format, tag, failed attempts, priority, the accepting server. */
type EntryPayload = [unknown, Format, Tag | null, number, number, string];

/** What a failed Redis call says, for a log line or an error reply. */
function why(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * A free text (an error's code and message, a task name) fit to pack for a script: U+0000 ends a
 * packed field (SPLIT in redis_scripts.ts) and U+0001 separates the parts of a recorded end, so
 * either inside is replaced (JSON texts never hold one).
 */
function packable(s: string): string {
  return SEPARATORS.test(s) ? s.replace(SEPARATORS_ALL, "\uFFFD") : s;
}
// The two separators, on purpose.
// deno-lint-ignore no-control-regex
const SEPARATORS = /[\0\x01]/;
// deno-lint-ignore no-control-regex
const SEPARATORS_ALL = /[\0\x01]/g;

/** A recorded end (a record's `e`, a results stream entry's `e`; see END_SCRIPT): its parts. */
function parseEnd(
  e: string,
): { state: "done" | "failed"; attempts: number; instance: string; task: string; end: TaskEnd } {
  const [state, attempts, , instance, task, json, code, message] = e.split("\x01");
  const n = Number(attempts);
  return {
    state: state === "done" ? "done" : "failed",
    attempts: n,
    instance,
    task,
    end: state === "done"
      ? { state: "done", attempts: n, json }
      : { state: "failed", attempts: n, error: { code, message } },
  };
}

/** An entry's fields (`[f1, v1, f2, v2, …]`) as a record. */
function fieldsOf(list: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!Array.isArray(list)) return out;
  for (let i = 0; i + 1 < list.length; i += 2) out[String(list[i])] = String(list[i + 1]);
  return out;
}

/**
 * The broker's store.
 *
 * @example
 * ```ts ignore
 * const store = await RedisStore.open({ address: parseBrokerUrl("redis://127.0.0.1:6379/0").value });
 * store.shared.consume({ tasks: ["echo"], capacity: 64, room: () => Infinity, deliver, ended, progress });
 * ```
 */
export class RedisStore implements TaskStore {
  readonly name: string;
  readonly durable = true;
  readonly shared: SharedQueue;
  readonly instance: string;
  readonly #redis: Client;
  readonly #reader: Client;
  readonly #results: Client;
  readonly #prefix: string;
  readonly #visibilityMs: number;
  readonly #resultTtlMs: number;
  readonly #failedTtlMs: number;
  readonly #describe?: RedisStoreOptions["describe"];
  #shas = new Map<string, string>();
  #closed = false;
  #up = true;
  #consumer?: QueueConsumer;
  /** Entries this server has read and not ended, by task id. */
  readonly #held = new Map<number, Held>();
  /** Of those, per task name. */
  readonly #heldOf = new Map<string, number>();
  /** Ends not yet written (Redis was down, or the batch is being built). */
  #ends: PendingEnd[] = [];
  #endsRunning = false;
  /**
   * Ends recorded, and ends written, since the start (in the order recorded): {@linkcode commit}
   * waits until what was recorded before it is written.
   */
  #endsRecorded = 0;
  #endsWritten = 0;
  #endWaiters: { upTo: number; resolve: () => void }[] = [];
  #endsTimer?: ReturnType<typeof setTimeout>;
  /** Entries of tasks accepted here that no server has read yet (to drop them if the task ends first). */
  readonly #entries = new Map<number, { stream: string; entry: string }>();
  /** Accepted tasks whose XADD Redis has not answered yet. */
  readonly #taking = new Map<number, Promise<void>>();
  /** The last command sent: Redis answers in order, so when it is answered, all before it are. */
  #last: Promise<unknown> = Promise.resolve();
  #ids = { next: 0, last: -1 };
  #nextBlock?: Promise<void>;
  #wakeReader?: () => void;
  readonly #timers: ReturnType<typeof setInterval>[] = [];

  private constructor(opts: RedisStoreOptions, conns: [Client, Client, Client], instance: string) {
    [this.#redis, this.#reader, this.#results] = conns;
    this.instance = instance;
    this.#prefix = opts.prefix ?? "asynctask";
    this.#visibilityMs = opts.visibilityMs ?? 30_000;
    this.#resultTtlMs = opts.resultTtlMs ?? 3_600_000;
    this.#failedTtlMs = opts.failedTtlMs ?? 86_400_000;
    this.#describe = opts.describe;
    this.name = `redis ${opts.address.display} (instance ${instance})`;
    const isUp = () => this.#up;
    const lastCluster = () => this.#lastCluster;
    this.shared = {
      instance,
      nextId: () => this.#nextId(),
      taken: (id) => this.#taking.get(id),
      consume: (c) => this.#consume(c),
      handBack: (tasks) => this.#handBack(tasks),
      roomChanged: () => this.#roomChanged(),
      progress: (id, percent, message) => this.#forwardProgress(id, percent, message),
      lookup: (id) => this.#lookup(id),
      lastId: async () => Number(await this.#cmd(["GET", this.#key("ids")]) ?? 0),
      get up() {
        return isUp();
      },
      get lastCluster() {
        return lastCluster();
      },
    };
    this.#redis.on("ready", () => this.#setUp(true, "connected"));
    // A reconnected reader is a new client to Redis: `CLIENT UNBLOCK` (a pause) needs its new id.
    this.#reader.on("ready", () => {
      if (this.#readerId === undefined) return; // not reading yet: #readTasks asks
      this.#reader.sendCommand(["CLIENT", "ID"]).then((id) => (this.#readerId = String(id))).catch(() => {});
    });
    this.#redis.on("error", (e: Error) => this.#setUp(false, e.message || e.name));
  }

  /**
   * Connects (three connections: commands, the blocking read of tasks, the blocking read of
   * results), checks that Redis answers and speaks streams, and loads the scripts.
   *
   * @throws {BrokerError} when Redis cannot be reached or refuses the password, with what to do.
   */
  static async open(opts: RedisStoreOptions): Promise<RedisStore> {
    const a = opts.address;
    let started = false;
    const socket = {
      host: a.host,
      port: a.port,
      connectTimeout: 5000,
      // At start, one failure is the answer; later, reconnect with a backoff up to 2 s.
      reconnectStrategy: (retries: number, cause: Error) =>
        started ? Math.min(50 * 2 ** Math.min(retries, 6), 2000) : cause,
    };
    const options = {
      socket: a.tls
        ? {
          ...socket,
          tls: true as const,
          // SNI takes a host name only; an IP address is checked against the certificate all the same.
          ...(/^[\d.]+$|:/.test(a.host) ? {} : { servername: a.host }),
          ...(opts.caCert ? { ca: opts.caCert } : {}),
        }
        : socket,
      username: a.username,
      password: a.password,
      database: a.db,
      // While Redis is unreachable a command fails at once: a task is refused rather than left waiting.
      disableOfflineQueue: true,
    };
    const conns: [Client, Client, Client] = [createClient(options), createClient(options), createClient(options)];
    for (const c of conns) c.on("error", () => {});
    try {
      await Promise.all(conns.map((c) => c.connect()));
      // A Redis with a password accepts the connection, and refuses the first command.
      const info = String(await conns[0].sendCommand(["INFO", "server"]));
      const version = /redis_version:(\d+)\.(\d+)/.exec(info);
      if (version && Number(version[1]) < 7) {
        throw new BrokerError(
          `${a.display} runs Redis ${version[1]}.${
            version[2]
          }; the broker needs Redis 7 or later (XAUTOCLAIM with deleted entries)`,
        );
      }
    } catch (e) {
      for (const c of conns) if (c.isOpen) c.destroy();
      if (e instanceof BrokerError) throw e;
      throw new BrokerError(explain(a, why(e)));
    }
    started = true;
    const instance = `${Deno.pid}-${crypto.randomUUID().slice(0, 6)}`;
    const store = new RedisStore(opts, conns, instance);
    await store.#loadScripts();
    await store.#waitForIdReports();
    await store.#takeIds();
    return store;
  }

  #key(...parts: (string | number)[]): string {
    return [this.#prefix, ...parts].join(":");
  }

  #streamOf(task: string): string {
    return this.#key("q", task);
  }

  #setUp(up: boolean, reason: string): void {
    if (this.#closed || up === this.#up) return;
    this.#up = up;
    if (up) {
      log.info("redis: connected again; accepting tasks", {});
      // What this server holds is renewed first, and nothing is claimed for a visibility time: after a
      // long outage every entry looks idle, and the servers holding them are alive.
      this.#claimAfter = Date.now() + this.#visibilityMs;
      this.#restoredAt = Date.now() + RESTORE_MS;
      // A Redis that restarted empty lost the id counter, the queued index and the streams: the
      // counter is set back above every id this server took, and the tasks it holds are put back in
      // the index, first — before a new server takes ids, or another one looks for lost tasks.
      this.#restore().catch(() => {});
      this.#renew().catch(() => {});
      this.#flushEnds();
      this.#flushHandBacks();
      // Once every server has reconnected (within its 2 s backoff) and restored what it holds:
      // the tasks accepted here and held nowhere are lost; a new block of ids is taken.
      setTimeout(() => {
        this.#checkLost().catch(() => {});
        this.#prefetchIds(true);
      }, RESTORE_MS);
    } else log.error("redis: {reason}; refusing new tasks (store_unavailable) and reconnecting", { reason });
  }

  async #loadScripts(): Promise<void> {
    const scripts = [
      ["accept", ACCEPT_SCRIPT],
      ["start", START_SCRIPT],
      ["end", END_SCRIPT],
      ["claim", CLAIM_SCRIPT],
      ["move", MOVE_DUE_SCRIPT],
      ["trim", TRIM_SCRIPT],
      ["ids", IDS_SCRIPT],
      ["attempt", ATTEMPT_SCRIPT],
      ["handBack", HAND_BACK_SCRIPT],
      ["missing", MISSING_SCRIPT],
    ];
    for (const [name, lua] of scripts) {
      this.#shas.set(name, String(await this.#redis.sendCommand(["SCRIPT", "LOAD", lua])));
    }
  }

  /** Runs a script by its SHA, loading the scripts again if Redis lost them (a restart). */
  async #script(name: string, args: (string | number)[]): Promise<unknown> {
    const argv = ["0", ...args.map(String)];
    try {
      return await this.#cmd(["EVALSHA", this.#shas.get(name)!, ...argv]);
    } catch (e) {
      if (!why(e).startsWith("NOSCRIPT")) throw e;
      await this.#loadScripts();
      return await this.#cmd(["EVALSHA", this.#shas.get(name)!, ...argv]);
    }
  }

  /** Sends a command on the main connection (commands of one turn go out in one write). */
  #cmd(args: string[]): Promise<unknown> {
    const p = this.#redis.sendCommand(args);
    this.#last = p.catch(() => {});
    return p;
  }

  // ---- ids

  /** The highest id this server has taken from Redis. */
  get #idsTaken(): number {
    return Math.max(this.#ids.last, this.#spare?.last ?? 0);
  }

  /** Ms since the epoch before which no entry is claimed (right after a reconnection). */
  #claimAfter = 0;

  /** Takes the next block of ids in the background, unless that is under way already. */
  #prefetchIds(now = false): void {
    // Right after a reconnection, not before every server has set the counter back (see #setUp).
    if (!now && Date.now() < this.#restoredAt) return;
    this.#nextBlock ??= this.#takeIds().catch(() => {}).finally(() => (this.#nextBlock = undefined));
  }

  /**
   * Ms since the epoch when every server has restored the id counter after Redis restarted: until
   * then no new block is taken (a server that uses up its block meanwhile refuses tasks
   * `store_unavailable`, for at most that long).
   */
  #restoredAt = 0;

  async #takeIds(): Promise<void> {
    const last = Number(await this.#script("ids", [this.#prefix, ID_BLOCK, this.#idsTaken]));
    if (this.#ids.next > this.#ids.last) this.#ids = { next: last - ID_BLOCK + 1, last };
    else this.#spare = { next: last - ID_BLOCK + 1, last };
  }

  #spare?: { next: number; last: number };

  /**
   * At start: when Redis started less than {@linkcode RESTORE_MS} ago, it may have restarted
   * empty, with servers still holding ids from before that have not all reconnected yet to set the
   * counter back ({@linkcode #restore}; one that has may have set it below another's ids): their
   * ids must not be taken again, so this server waits for them. A Redis that has no counter and is
   * older than that has had every server that was connected back already.
   */
  async #waitForIdReports(): Promise<void> {
    const uptime = await this.#uptime();
    const waitMs = RESTORE_MS - uptime * 1000;
    if (waitMs <= 0) return;
    log.info(
      "redis started {uptime} s ago: waiting {ms} ms for servers that were connected to it before to say which task ids they took",
      { uptime, ms: waitMs },
    );
    await new Promise((r) => setTimeout(r, waitMs));
  }

  /** How long Redis has been up, in whole seconds (`u` means up to `u + 1` s). */
  async #uptime(): Promise<number> {
    const info = await this.#cmd(["INFO", "server"]);
    return Number(/uptime_in_seconds:(\d+)/.exec(String(info))?.[1] ?? 0);
  }

  /** A task's value in the queued index: its name, then, once started here, U+0001, its attempt and this server. */
  #indexed(task: string, attempt?: number): string {
    return attempt === undefined ? packable(task) : `${packable(task)}\x01${attempt} ${this.instance}`;
  }

  /** After a reconnection: the id counter set back above this server's ids, its held tasks back in the queued index, its report. */
  async #restore(): Promise<void> {
    // A Redis that did not restart (the connection dropped) kept its counter: ids may be taken at once.
    if ((await this.#uptime()) * 1000 > RESTORE_MS) this.#restoredAt = 0;
    await this.#script("ids", [this.#prefix, 0, this.#idsTaken]);
    let packed = "";
    for (const [id, h] of this.#held) {
      packed += `${id}\0${this.#indexed(h.task, h.attempt)}\0`;
      if (packed.length >= PACKED_CHARS) {
        await this.#script("start", [this.#prefix, packed]);
        packed = "";
      }
    }
    if (packed !== "") await this.#script("start", [this.#prefix, packed]);
    await this.#report();
  }

  #nextId(): number {
    if (!this.#up) {
      throw new StoreUnavailableError(`Redis cannot be reached (${this.name}); the server is reconnecting`);
    }
    if (this.#ids.next > this.#ids.last && this.#spare) {
      this.#ids = this.#spare;
      this.#spare = undefined;
    }
    if (this.#ids.next > this.#ids.last) {
      this.#prefetchIds();
      throw new StoreUnavailableError("no task id could be had from Redis");
    }
    const id = this.#ids.next++;
    if (!this.#spare && this.#ids.last - this.#ids.next < ID_BLOCK / 2 && this.#up) {
      this.#prefetchIds();
    }
    return id;
  }

  // ---- TaskStore

  load(_since: number, _failedSince?: number): Promise<Recovered> {
    // Unfinished tasks are in the streams: they come back through consume(), to whichever server has room.
    return Promise.resolve({ unfinished: [], finished: [], maxId: this.#ids.next - 1 });
  }

  /** Accepts of this turn, written by one script call at its end; `taken` settles for all of them. */
  #accepts?: { packed: string; ids: number[]; streams: string[]; taken: PromiseWithResolvers<void> };
  /** Starts of this turn, packed (see START_SCRIPT), written by one script call at its end. */
  #starts = "";

  accepted(task: AcceptedTask): void {
    const stream = this.#streamOf(task.task);
    // Two fields: the id (the claim script reads it) and the rest as one JSON text — fewer arguments
    // to encode here and to store and decode in Redis than a field each.
    const payload: EntryPayload = [
      task.data ?? null,
      task.format,
      task.tag ?? null,
      task.attempts,
      task.priority ?? 0,
      this.instance,
    ];
    if (!this.#accepts) {
      const batch = { packed: "", ids: [], streams: [], taken: Promise.withResolvers<void>() };
      // Nobody may be waiting for a batch (a schedule's run): its failure is handled by the caller's catch.
      batch.taken.promise.catch(() => {});
      this.#accepts = batch;
      queueMicrotask(() => this.#writeAccepts());
    }
    const b = this.#accepts;
    // The entry's fields are `i` (the id: the claim script reads it) and `t`, the rest as one JSON
    // text — fewer to encode here and to store and decode in Redis than a field each.
    b.packed += `${stream}\0${task.id}\0${packable(task.task)}\0${task.runAt ?? ""}\0${JSON.stringify(payload)}\0`;
    b.ids.push(task.id);
    b.streams.push(stream);
    this.#taking.set(task.id, b.taken.promise);
    if (b.packed.length >= PACKED_CHARS) this.#writeAccepts(); // the next accept starts another batch
  }

  #writeAccepts(): void {
    const b = this.#accepts;
    if (!b) return; // written already, by commit()
    this.#accepts = undefined;
    const written = this.#script("accept", [this.#prefix, b.packed]);
    written.then(
      (entries) => {
        const list = typeof entries === "string" ? entries.split(" ") : [];
        b.ids.forEach((id, i) => {
          const entry = list[i];
          if (typeof entry === "string" && entry !== "") this.#entries.set(id, { stream: b.streams[i], entry });
          this.#taking.delete(id);
        });
        b.taken.resolve();
      },
      (e) => {
        for (const id of b.ids) this.#taking.delete(id);
        b.taken.reject(new StoreUnavailableError(`Redis did not take the task: ${why(e)}`));
      },
    );
  }

  started(id: number, attempt: number): void {
    if (this.#starts === "") queueMicrotask(() => this.#writeStarts());
    const h = this.#held.get(id);
    if (h) h.attempt = attempt;
    this.#starts += `${id}\0${this.#indexed(h?.task ?? "", attempt)}\0`;
  }

  #writeStarts(): void {
    if (this.#starts === "") return;
    const starts = this.#starts;
    this.#starts = "";
    this.#script("start", [this.#prefix, starts]).catch(() => {});
  }

  attemptFailed(id: number, attempt: number): void {
    const h = this.#held.get(id);
    if (h) h.attempt = undefined; // not running: waiting out its backoff
    this.#writeStarts(); // its start first
    this.#script("attempt", [this.#prefix, id, attempt]).catch(() => {});
  }

  ended(id: number, end: TaskEnd): void {
    const h = this.#held.get(id);
    if (h) this.#release(id, h);
    // An entry no server has read is deleted with the end (marked "!"); one that was read is acknowledged, and trimmed later.
    const unread = h ? undefined : this.#entries.get(id);
    this.#entries.delete(id);
    const stream = h?.stream ?? unread?.stream ?? "";
    const entry = h ? h.entry : unread ? `!${unread.entry}` : "";
    const task = h?.task ?? (unread ? stream.slice(this.#key("q").length + 1) : "");
    this.#ends.push({ id, task, stream, entry, end, origin: h?.origin ?? "" });
    this.#endsRecorded++;
    if (this.#ends.length === 1) queueMicrotask(() => this.#flushEnds());
  }

  discarded(id: number): void {
    this.#cmd(["DEL", this.#key("t", id)]).catch(() => {});
    this.#cmd(["HDEL", this.#key("queued"), String(id)]).catch(() => {});
  }

  saveState(key: string, json: string): void {
    this.#cmd(["HSET", this.#key("state", this.instance), key, json]).catch(() => {});
  }

  /**
   * Resolves when the ends recorded before the call are written, and every other command sent
   * before it has been answered (whatever the answer: a refused accept is told by its own reply).
   * A final reply waits for this, so a client is never told `DONE` for an end Redis does not have;
   * while Redis cannot be reached, the ends wait in memory, and so do their replies.
   */
  async commit(): Promise<void> {
    if (this.#accepts) this.#writeAccepts();
    const upTo = this.#endsRecorded;
    if (this.#endsWritten < upTo) {
      // Now rather than at the end of the turn; a batch being written takes these next.
      void this.#flushEnds();
      await new Promise<void>((resolve) => this.#endWaiters.push({ upTo, resolve }));
    }
    await this.#last;
  }

  /** Resolves the commits whose ends are all written. */
  #endsDone(): void {
    const written = this.#endsWritten;
    if (this.#endWaiters.length === 0 || this.#endWaiters[0].upTo > written) return;
    const waiting = this.#endWaiters;
    this.#endWaiters = waiting.filter((w) => w.upTo > written);
    for (const w of waiting) if (w.upTo <= written) w.resolve();
  }

  sweep(_before: number, _keep: number, _failedBefore?: number): Promise<void> {
    return Promise.resolve(); // Redis expires the records itself
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    // The ends wait for Redis a while; what is still unwritten then, another server runs again.
    const written = this.commit();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), CLOSE_WAIT_MS)));
    if (await Promise.race([written, late]) === "late") {
      log.warn("redis: {ends} task end(s) not written at close; another server will run those tasks again", {
        ends: this.#ends.length,
      });
    }
    clearTimeout(timer);
    this.#closed = true;
    for (const w of this.#endWaiters) w.resolve();
    this.#endWaiters = [];
    for (const t of this.#timers) clearInterval(t);
    clearTimeout(this.#endsTimer);
    clearTimeout(this.#handBackTimer);
    this.#wakeReader?.();
    await this.#cmd(["HDEL", this.#key("instances"), this.instance]).catch(() => {});
    for (const c of [this.#reader, this.#results]) c.destroy();
    await this.#redis.close().catch(() => this.#redis.destroy());
  }

  // ---- ends

  #release(id: number, h: Held): void {
    this.#held.delete(id);
    this.#heldOf.set(h.task, (this.#heldOf.get(h.task) ?? 1) - 1);
    this.#wakeReader?.();
  }

  /** Writes the waiting ends, a batch per script call; on a failure, tries again in 500 ms. */
  async #flushEnds(): Promise<void> {
    if (this.#endsRunning || this.#ends.length === 0 || this.#closed) return;
    // The starts of this turn go first (one connection: Redis runs them in order), so that no end
    // is followed by its own start in the queued index.
    this.#writeStarts();
    this.#endsRunning = true;
    try {
      while (this.#ends.length > 0) {
        let packed = "";
        let n = 0;
        // The end's parts, after its state and attempts: finish time, this instance, task name (parseEnd reads them).
        const here = `\x01${Date.now()}\x01${this.instance}\x01`;
        for (const e of this.#ends) {
          if (n === END_BATCH || (n > 0 && packed.length >= PACKED_CHARS)) break;
          n++;
          const error = e.end.error;
          packed += `${e.id}\0${e.stream}\0${e.entry}\0${e.origin}\0${e.end.state}\x01${e.end.attempts}${here}${
            packable(e.task)
          }\x01${e.end.json ?? ""}\x01${error ? packable(error.code) : ""}\x01${
            error ? packable(error.message) : ""
          }\0`;
        }
        await this.#script("end", [this.#prefix, GROUP, this.instance, this.#resultTtlMs, this.#failedTtlMs, packed]);
        this.#ends.splice(0, n);
        this.#endsWritten += n;
        this.#endsDone();
      }
    } catch (e) {
      log.warn("redis: {ends} task end(s) not written yet ({error}); trying again", {
        ends: this.#ends.length,
        error: why(e),
      });
      clearTimeout(this.#endsTimer);
      this.#endsTimer = setTimeout(() => this.#flushEnds(), 500);
    } finally {
      this.#endsRunning = false;
    }
  }

  // ---- consuming

  #consume(c: QueueConsumer): void {
    this.#consumer = c;
    const every = (ms: number, fn: () => unknown) => {
      this.#timers.push(setInterval(() => {
        if (this.#up && !this.#closed) Promise.resolve(fn()).catch((e) => log.debug("redis: {e}", { e: why(e) }));
      }, ms));
    };
    const ready = Promise.all(
      c.tasks.map((t) => this.#cmd(["XGROUP", "CREATE", this.#streamOf(t), GROUP, "0", "MKSTREAM"]).catch(() => {})),
    );
    ready.then(() => {
      this.#readTasks();
      this.#readResults();
    });
    every(Math.max(100, Math.floor(this.#visibilityMs / 3)), () => this.#renew());
    every(Math.max(200, Math.floor(this.#visibilityMs / 2)), () => this.#claim());
    every(250, () => this.#moveDue());
    every(1000, () => this.#script("trim", [GROUP, ...c.tasks.map((t) => this.#streamOf(t))]));
    every(2000, () => this.#report());
    this.#report().catch(() => {});
  }

  /** The reader connection's id, for `CLIENT UNBLOCK`. */
  #readerId?: string;
  #reading = false;

  /** A pause or resume: a read blocked with the old room returns now, and the next one uses the new room. */
  #roomChanged(): void {
    this.#wakeReader?.();
    if (this.#reading && this.#readerId) this.#cmd(["CLIENT", "UNBLOCK", this.#readerId]).catch(() => {});
  }

  async #readTasks(): Promise<void> {
    const c = this.#consumer!;
    this.#readerId = String(await this.#reader.sendCommand(["CLIENT", "ID"]).catch(() => ""));
    while (!this.#closed) {
      const room = c.capacity - this.#held.size;
      const streams: string[] = [];
      let count = room;
      for (const t of c.tasks) {
        const r = c.room(t) - (this.#heldOf.get(t) ?? 0);
        if (r <= 0) continue;
        streams.push(this.#streamOf(t));
        count = Math.min(count, r);
      }
      if (room <= 0 || streams.length === 0 || !this.#up) {
        await new Promise<void>((resolve) => {
          this.#wakeReader = resolve;
          setTimeout(resolve, 200);
        });
        this.#wakeReader = undefined;
        continue;
      }
      let res: unknown;
      try {
        this.#reading = true;
        res = await this.#reader.sendCommand([
          "XREADGROUP",
          "GROUP",
          GROUP,
          this.instance,
          "COUNT",
          String(count),
          "BLOCK",
          "1000",
          "STREAMS",
          ...streams,
          ...streams.map(() => ">"),
        ]).finally(() => (this.#reading = false));
      } catch (e) {
        if (this.#closed) return;
        if (why(e).startsWith("NOGROUP")) {
          await Promise.all(
            c.tasks.map((t) =>
              this.#cmd(["XGROUP", "CREATE", this.#streamOf(t), GROUP, "0", "MKSTREAM"]).catch(() => {})
            ),
          );
        } else await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      if (!Array.isArray(res)) continue;
      const q = this.#prefix.length + 3; // "<prefix>:q:"
      for (const [stream, entries] of res as [string, [string, string[]][]][]) {
        const task = stream.slice(q);
        for (const [entry, list] of entries) this.#deliver(task, stream, entry, list);
      }
    }
  }

  #deliver(
    task: string,
    stream: string,
    entry: string,
    list: string[],
    attempts?: number,
    interrupted = 0,
    wasRunning = false,
  ): void {
    // The fields are `i` and `t`, in that order, as every XADD of a task writes them: read in
    // place, without a record of them per entry.
    let i: string | undefined = list[1];
    let t: string | undefined = list[3];
    // A task handed back (a pause) carries its attempts so far in `a` (see HAND_BACK_SCRIPT).
    let handedBack = 0;
    if (list[0] !== "i" || list[2] !== "t" || list.length > 4) {
      const f = fieldsOf(list);
      [i, t] = [f.i, f.t];
      handedBack = Number(f.a ?? 0) || 0;
    }
    const id = Number(i);
    if (!Number.isSafeInteger(id) || this.#held.has(id)) return;
    this.#entries.delete(id);
    let p: EntryPayload;
    try {
      p = JSON.parse(t ?? "") as EntryPayload;
    } catch {
      log.error("redis: entry {entry} of {stream} cannot be read; dropping it", { entry, stream });
      this.#cmd(["XACK", stream, GROUP, entry]).catch(() => {});
      return;
    }
    const [data, format, tag, firstAttempts, priority, origin] = p;
    this.#held.set(id, { task, stream, entry, origin, payload: t ?? "" });
    this.#heldOf.set(task, (this.#heldOf.get(task) ?? 0) + 1);
    this.#consumer!.deliver({
      id,
      task,
      data,
      format,
      tag: tag ?? undefined,
      // Attempts only grow: the most of the record's (a claim), the entry's (a hand-back) and the first count.
      attempts: Math.max(attempts ?? 0, handedBack, firstAttempts),
      interrupted,
      wasRunning,
      priority: priority || undefined,
      origin,
    });
  }

  async #readResults(): Promise<void> {
    const c = this.#consumer!;
    const key = this.#key("r", this.instance);
    let last = "0-0";
    while (!this.#closed) {
      let res: unknown;
      try {
        res = await this.#results.sendCommand(["XREAD", "COUNT", "1000", "BLOCK", "1000", "STREAMS", key, last]);
      } catch {
        if (this.#closed) return;
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      if (!Array.isArray(res)) continue;
      for (const [, entries] of res as [string, [string, string[]][]][]) {
        for (const [entry, list] of entries) {
          last = entry;
          const f = fieldsOf(list);
          const id = Number(f.i);
          if (f.k !== "p") this.#entries.delete(id);
          if (f.k === "p") c.progress(id, Number(f.pc ?? 0), f.m ?? "");
          else c.ended(id, parseEnd(f.e ?? "").end);
        }
      }
      this.#cmd(["XTRIM", key, "MINID", last]).catch(() => {});
    }
  }

  #forwardProgress(id: number, percent: number, message: string): void {
    const h = this.#held.get(id);
    if (!h || h.origin === "" || h.origin === this.instance) return;
    const key = this.#key("r", h.origin);
    this.#cmd([
      "XADD",
      key,
      "MAXLEN",
      "~",
      "100000",
      "*",
      "k",
      "p",
      "i",
      String(id),
      "pc",
      String(percent),
      "m",
      message,
    ])
      .catch(() => {});
  }

  /** Renews this server's pending entries, so that nobody claims them while they run. */
  async #renew(): Promise<void> {
    const byStream = new Map<string, string[]>();
    for (const h of this.#held.values()) {
      const list = byStream.get(h.stream);
      if (list) list.push(h.entry);
      else byStream.set(h.stream, [h.entry]);
    }
    const sent: Promise<unknown>[] = [];
    for (const [stream, entries] of byStream) {
      for (let i = 0; i < entries.length; i += 1000) {
        sent.push(this.#cmd(["XCLAIM", stream, GROUP, this.instance, "0", ...entries.slice(i, i + 1000), "JUSTID"]));
      }
    }
    await Promise.all(sent);
  }

  /** Claims entries of servers that stopped renewing them (they died), as room allows. */
  async #claim(): Promise<void> {
    if (Date.now() < this.#claimAfter) return;
    const c = this.#consumer!;
    for (const task of c.tasks) {
      const room = Math.min(c.capacity - this.#held.size, c.room(task) - (this.#heldOf.get(task) ?? 0));
      if (room <= 0) continue;
      const stream = this.#streamOf(task);
      const claimed = await this.#script("claim", [
        stream,
        GROUP,
        this.instance,
        this.#visibilityMs,
        Math.min(room, 100),
        this.#prefix,
      ]) as [string, string[], string, number, number][];
      if (claimed.length > 0) {
        log.warn("redis: claimed {n} task(s) of {task} whose server stopped renewing them; running them again", {
          n: claimed.length,
          task,
        });
      }
      for (const [entry, list, attempts, interrupted, wasRunning] of claimed) {
        this.#deliver(task, stream, entry, list, Number(attempts), Number(interrupted), wasRunning === 1);
      }
    }
  }

  /** Moves scheduled tasks whose time has come into their streams (any server may: the script is atomic). */
  async #moveDue(): Promise<void> {
    for (let moved = 100; moved === 100;) {
      moved = Number(await this.#script("move", [this.#prefix, Date.now(), 100]));
    }
  }

  /**
   * Gives entries this server read and has not started back to the queue (a pause): they go to the
   * end of their streams, for any server to read.
   */
  #handBack(tasks: { id: number; attempts: number }[]): void {
    const args: string[] = [this.#prefix, GROUP, this.instance];
    for (const { id, attempts } of tasks) {
      const h = this.#held.get(id);
      if (!h) continue;
      this.#release(id, h);
      args.push(h.stream, h.entry, String(id), h.payload, String(attempts), this.#indexed(h.task));
    }
    if (args.length === 3) return;
    this.#handBacks.push(args);
    this.#flushHandBacks();
  }

  /** Hand-backs not written yet: Redis did not take them (it was down); tried again every 500 ms. */
  #handBacks: string[][] = [];
  #handBackTimer?: ReturnType<typeof setTimeout>;

  #handingBack = false;

  async #flushHandBacks(): Promise<void> {
    // One at a time: a hand-back written twice would queue its tasks twice.
    if (this.#handingBack) return;
    this.#handingBack = true;
    clearTimeout(this.#handBackTimer);
    try {
      while (this.#handBacks.length > 0 && !this.#closed) {
        await this.#script("handBack", this.#handBacks[0]);
        this.#handBacks.shift();
      }
    } catch (e) {
      // Until Redis takes them, these tasks are with no server: they must not be dropped.
      log.warn("redis: {n} task(s) not handed back yet ({error}); trying again", {
        n: (this.#handBacks[0].length - 3) / 6,
        error: why(e),
      });
      this.#handBackTimer = setTimeout(() => this.#flushHandBacks(), 500);
    } finally {
      this.#handingBack = false;
    }
  }

  /**
   * After a reconnection: the tasks accepted here that wait for an end from another server, and
   * whose record Redis no longer has (it restarted without keeping them), are reported lost.
   */
  async #checkLost(): Promise<void> {
    const c = this.#consumer;
    const waiting = c?.waitingElsewhere?.() ?? [];
    for (let i = 0; i < waiting.length; i += 1000) {
      const ids = waiting.slice(i, i + 1000);
      const missing = await this.#script("missing", [this.#prefix, ...ids]) as number[];
      if (missing.length === 0) continue;
      const lost = missing.map((k) => ids[k - 1]);
      for (const id of lost) this.#entries.delete(id);
      c!.lost?.(lost);
    }
  }

  #lastCluster?: ClusterStats;

  async #report(): Promise<void> {
    const me = this.#describe?.() ?? { workers: 0 };
    await this.#cmd([
      "HSET",
      this.#key("instances"),
      this.instance,
      JSON.stringify({ ...me, held: this.#held.size, ids: this.#idsTaken, seen: Date.now() }),
    ]);
    this.#lastCluster = await this.#cluster();
  }

  async #cluster(): Promise<ClusterStats> {
    const now = Date.now();
    const raw = fieldsOf(await this.#cmd(["HGETALL", this.#key("instances")]));
    const instances = Object.entries(raw).map(([instance, json]) => {
      const m = JSON.parse(json) as { workers: number; held: number; seen: number };
      return { instance, seenMsAgo: now - m.seen, workers: m.workers, held: m.held };
    }).filter((m) => m.seenMsAgo < 10_000).sort((a, b) => a.instance.localeCompare(b.instance));
    const queues: ClusterStats["queues"] = {};
    for (const task of this.#consumer?.tasks ?? []) {
      const groups = await this.#cmd(["XINFO", "GROUPS", this.#streamOf(task)]).catch(() => []) as unknown[][];
      for (const g of groups) {
        const f = fieldsOf(g);
        if (f.name !== GROUP) continue;
        queues[task] = { waiting: Number(f.lag === "null" ? 0 : f.lag ?? 0), held: Number(f.pending ?? 0) };
      }
    }
    return { instances, queues };
  }

  /**
   * A task's state from its record and the queued index: its end (`e`) first, then its start (in
   * the queued index after the task name and U+0001: attempt and instance), then `s` (scheduled,
   * or queued again); a task with no record yet is queued if the queued index names it.
   */
  async #lookup(id: number): Promise<SharedStatus | undefined> {
    // The index first: an end written between the two reads (it sets the record's end, then
    // takes the task out of the index) is then seen in the record; the other way round it could be in neither.
    const [index, record] = await Promise.all([
      this.#cmd(["HGET", this.#key("queued"), String(id)]),
      this.#cmd(["HGETALL", this.#key("t", id)]),
    ]);
    const h = fieldsOf(record);
    const [queued, started] = typeof index === "string" ? index.split("\x01") : [];
    const task = h.n ?? queued ?? "";
    if (h.e !== undefined) {
      const e = parseEnd(h.e);
      return {
        state: e.state,
        task: e.task || task,
        attempts: e.attempts,
        ...(e.end.state === "done" ? { json: e.end.json } : { error: e.end.error }),
        ...(e.instance ? { instance: e.instance } : {}),
      };
    }
    if (started !== undefined) {
      const space = started.indexOf(" ");
      return { state: "running", task, attempts: Number(started.slice(0, space)), instance: started.slice(space + 1) };
    }
    if (h.s) return { state: h.s as SharedStatus["state"], task, attempts: Number(h.a ?? 0) };
    return queued !== undefined ? { state: "queued", task, attempts: Number(h.a ?? 0) } : undefined;
  }
}

/** A start-up failure, said with what to do. */
function explain(a: BrokerAddress, message: string): string {
  const all = message;
  if (/WRONGPASS|invalid password|invalid username-password/i.test(all)) {
    return `${a.display} refused the password (${message}); give the right one in the URL (redis://user:password@host:port/db) or in ASYNCTASK_BROKER_PASSWORD`;
  }
  if (/NOAUTH/i.test(all)) {
    return `${a.display} asks for a password (${message}); give it in the URL (redis://:password@host:port/db) or in ASYNCTASK_BROKER_PASSWORD`;
  }
  if (/ECONNREFUSED|refused/i.test(all)) {
    return `cannot reach Redis at ${a.display}: connection refused; is redis-server running there, and is the port right?`;
  }
  if (/ETIMEDOUT|timed? ?out/i.test(all)) {
    return `cannot reach Redis at ${a.display}: no answer within 5 s; check the address and any firewall between`;
  }
  return `cannot use Redis at ${a.display}: ${all}`;
}
